"""Stable fingerprints of model weights, so a ledger can name the exact model used."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

_CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf", ".onnx", ".ckpt", ".msgpack")
CONFIG_SUFFIXES = (".json", ".txt", ".model", ".yaml", ".yml")


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) because weights are large."""
    st = path.stat()
    return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def fingerprint_files(paths: Iterable[Path], *, root: Path | None = None) -> str:
    """Digest of (relative name, content digest) pairs; order-independent."""
    h = hashlib.sha256()
    entries = []
    for p in paths:
        name = str(p.relative_to(root)) if root is not None else p.name
        entries.append((name, file_sha256(p)))
    for name, digest in sorted(entries):
        h.update(name.encode("utf-8") + b"\0" + digest.encode("ascii") + b"\n")
    return h.hexdigest()


def fingerprint_dir(root: Path) -> str:
    """Fingerprint a model folder by its weight and config files (not READMEs or caches)."""
    suffixes = WEIGHT_SUFFIXES + CONFIG_SUFFIXES
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix in suffixes
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.name.lower() != "readme.md"
    ]
    return fingerprint_files(files, root=root)


def fingerprint_text(*parts: str) -> str:
    """Fingerprint of an identity that has no weights we can see (remote APIs)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
