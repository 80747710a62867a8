"""Crash-safe file writes shared by every module that writes run state."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from penumbra.errors import PenumbraError


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-fsync-rename: after a crash the file is either absent/old or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder: two processes resuming one run would each draw
    noise for the same iteration. The OS drops the lock when the holder dies (kill -9 too)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".penumbra.lock", "a+b")  # noqa: SIM115 - held for the whole block
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PenumbraError(
            f"{folder}: another penumbra process is working on this run; wait for it to "
            "finish or stop it, then resume"
        ) from None
    try:
        yield
    finally:
        handle.close()
