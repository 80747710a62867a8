"""The published tree: every file of a run folder outside `private/`, hashed in the signed log.

A run folder is what a holder publishes (less `private/`), so an auditor must be able to tell
that nothing was added to it, changed or removed since penumbra wrote it: a second "clean
votes" file in `candidates/`, a private image copied into `renders/`, the exact N written into
`report.html`. `files` entries list each file's SHA-256 and size: one at every DP release (what
existed when the release was logged), one before `run_end` and one whenever penumbra writes
into a finished run (the report, an evaluation). Each entry lists only what changed since the
entries before it; the folded entries are the tree that `verify` compares with the folder.

Not part of the tree: `private/` (never published), `ledger/` (the log checks itself) and the
empty lock file. A symlink, or anything that is not a regular file or a folder, is never part
of a published tree: penumbra writes none, and a link could point at private data, so recording
refuses one and `verify` fails on one.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from penumbra.errors import PenumbraError
from penumbra.ledger.witness_client import WitnessEndpoint, endpoints

UNPUBLISHED = frozenset({"private", "ledger"})  # top-level folders outside the tree
LOCK_FILE = ".penumbra.lock"  # durable.run_lock: empty, present while or after a run held it
CHUNK = 1000  # files per log entry
_READ = 1 << 20


class TreeError(PenumbraError):
    """The run folder holds something a published tree may not (a symlink, a device file)."""


@dataclass(frozen=True)
class Scan:
    """A run folder's published files (POSIX relative path → path) and what may not be there."""

    files: dict[str, Path]
    links: list[str]  # symlinks (to files or folders), relative paths
    odd: list[str]  # neither a regular file nor a folder (fifo, socket, device)


def scan_tree(run_dir: Path) -> Scan:
    """Walk the run folder without following links: the tree as a reader of it would see it."""
    files: dict[str, Path] = {}
    links: list[str] = []
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False):
        here = Path(dirpath)
        top = here == run_dir
        kept = []
        for name in sorted(dirnames):
            path = here / name
            rel = path.relative_to(run_dir).as_posix()
            if top and name in UNPUBLISHED:
                continue
            if path.is_symlink():
                links.append(rel)
            else:
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(run_dir).as_posix()
            if top and name in UNPUBLISHED and path.is_symlink():
                continue  # a link named private/ledger is not published either way
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                links.append(rel)
            elif not stat.S_ISREG(mode):
                odd.append(rel)
            elif not (top and name == LOCK_FILE and os.lstat(path).st_size == 0):
                files[rel] = path
    return Scan(files, sorted(links), sorted(odd))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def logged_tree(entries: Iterable[dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """The tree the `files` entries describe, folded in log order: path → {sha256, size,
    entry} (`entry`: the index of the entry that listed it last)."""
    tree: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not entry or entry.get("type") != "files":
            continue
        for row in entry.get("files") or []:
            if isinstance(row, dict) and isinstance(row.get("file"), str):
                tree[row["file"]] = {"sha256": row.get("sha256"), "size": row.get("size"),
                                     "entry": index}  # fmt: skip
        for name in entry.get("removed") or []:
            if isinstance(name, str):
                tree.pop(name, None)
    return tree


@dataclass
class PublishedTree:
    """Records a run folder's published tree in its ledger. Keeps a hash per file for as long as
    the file's size, inode and change time stay the same, so a run re-hashes only what it
    wrote since the last record (renders and outputs can be large)."""

    run_dir: Path
    _hashes: dict[str, tuple[tuple[int, int, int, int], str]] = field(default_factory=dict)

    def current(self) -> dict[str, dict[str, Any]]:
        """Every published file now: path → {sha256, size}. TreeError on a link or odd file."""
        scan = scan_tree(self.run_dir)
        if scan.links or scan.odd:
            name = (scan.links or scan.odd)[0]
            what = "a symlink" if scan.links else "not a regular file"
            raise TreeError(
                f"{self.run_dir / name}: {what} in the run folder; penumbra writes none and "
                "a published run may not hold one (it could reach private data): remove it"
            )
        tree = {}
        for rel, path in scan.files.items():
            st = os.lstat(path)
            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            known = self._hashes.get(rel)
            digest = known[1] if known is not None and known[0] == key else sha256_file(path)
            self._hashes[rel] = (key, digest)
            tree[rel] = {"sha256": digest, "size": st.st_size}
        return tree

    def record(self, ledger: Any, stage: str) -> list[int]:
        """Append `files` entries for what changed since the log's tree (none if nothing did);
        returns their indices."""
        logged = logged_tree(ledger.entries())
        now = self.current()
        changed = [
            {"file": rel, **meta}
            for rel, meta in now.items()
            if rel not in logged
            or (logged[rel]["sha256"], logged[rel]["size"]) != (meta["sha256"], meta["size"])
        ]
        removed = sorted(set(logged) - set(now))
        indices = []
        for start in range(0, max(len(changed), 1), CHUNK):
            part = changed[start : start + CHUNK]
            gone = removed if start == 0 else []
            if part or gone:
                indices.append(
                    ledger.append("files", {"stage": stage, "files": part, "removed": gone})
                )
        return indices


def unlogged_files(
    run_dir: Path, entries: Iterable[dict[str, Any] | None], tree: PublishedTree | None = None
) -> list[str]:
    """Published files the logged tree does not list with their current hash and size."""
    logged = logged_tree(entries)
    now = (tree or PublishedTree(run_dir)).current()
    return sorted(
        rel for rel, meta in now.items()
        if (logged.get(rel, {}).get("sha256"), logged.get(rel, {}).get("size"))
        != (meta["sha256"], meta["size"])
    )  # fmt: skip


def run_config_section(run: Path, name: str) -> dict[str, Any]:
    """A section of the run's run.yaml ({} when there is none, or no readable run.yaml:
    verify's hash checks name a damaged one)."""
    import yaml

    try:
        data = yaml.safe_load((run / "run.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    section = data.get(name) if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


def _ledger_section(run: Path) -> dict[str, Any]:
    return run_config_section(run, "ledger")


def configured_signer(run: Path) -> str | None:
    """The run's `ledger.signer` (a PKCS#11 URI) from its run.yaml, if it names one."""
    signer = _ledger_section(run).get("signer")
    return signer if isinstance(signer, str) else None


def configured_witnesses(run: Path) -> list[WitnessEndpoint]:
    """The run's `ledger.witnesses`: what penumbra writes into a finished run is witnessed
    like every checkpoint before it (else its newest checkpoint would lack a cosignature)."""
    section = _ledger_section(run)
    rows = section.get("witnesses") or []
    pairs = [(str(w.get("url", "")), str(w.get("key", ""))) for w in rows if isinstance(w, dict)]
    return endpoints(pairs, float(section.get("witness_timeout_s") or 10.0))


def record_published(
    run_dir: Path | str,
    stage: str,
    *,
    signing_key: Path | str | None = None,
    written: Iterable[str] = ("report.html", "evaluation.json", "evaluation/"),
) -> list[int]:
    """Log what penumbra just wrote into a run (`written`: a report, an evaluation, names or
    folders ending in "/") in the
    run's ledger, signed with the run's key. Refuses a run whose key is not at hand rather
    than making one, and a run holding any other file the ledger does not list as it is:
    signing now would publish whatever was put there since the run ended."""
    from penumbra.ledger.log import Ledger, ledger_dir

    run = Path(run_dir)
    if not (ledger_dir(run) / "entries.jsonl").is_file():
        raise PenumbraError(f"{run}: not a penumbra run (no ledger/entries.jsonl)")
    if signing_key is None:
        signing_key = configured_signer(run)
    if signing_key is None and not (run / "private" / "ledger.key").is_file():
        raise PenumbraError(
            f"{run}: the run was signed with a key kept outside it; pass the same "
            "--signing-key so the files written now can be listed in its ledger"
        )
    ledger = Ledger.open(run, signing_key=signing_key, witnesses=configured_witnesses(run))
    tree = PublishedTree(run)
    mine = tuple(written)  # a name, or a folder ending in "/"
    strangers = [
        f for f in unlogged_files(run, ledger.entries(), tree)
        if not any(f == w or (w.endswith("/") and f.startswith(w)) for w in mine)
    ]  # fmt: skip
    if strangers:
        more = f" (and {len(strangers) - 1} more)" if len(strangers) > 1 else ""
        raise TreeError(
            f"{run / strangers[0]}{more}: added or changed since the run logged its files; "
            "penumbra will not sign it into the published tree: remove it or restore the run "
            "folder (penumbra verify names every such file)"
        )
    return tree.record(ledger, stage)
