"""The append-only run log: canonical JSON lines, a signed checkpoint after every append.

Layout in a run directory:
    ledger/entries.jsonl          one canonical JSON object per line (sorted keys, no spaces)
    ledger/checkpoints/NNNNNNNN   signed note for the tree of the first N entries
    ledger/pubkey                 the verifier key (public)
    ledger/origin                 the log's name in its checkpoints (penumbra.run/<random>)
    private/ledger.key            the Ed25519 signing key, mode 0600 (unless --signing-key)

A checkpoint after every entry lets a verifier name the exact entry that changed. Appends are
fsynced; a torn last line (the process died mid-write) is reported, never dropped or accepted.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.ledger.merkle import leaf_hash, root_from_hashes
from penumbra.ledger.note import (
    Checkpoint,
    NoteError,
    Signer,
    generate_signer,
    load_private_key,
    parse_vkey,
    save_private_key,
    sign_checkpoint,
    verify_signed_note,
)
from penumbra.ledger.schema import entry_problem
from penumbra.ledger.witness_client import WitnessEndpoint, witness_checkpoint

SCHEMA_VERSION = 1
KEY_NAME = "penumbra-run"


class LedgerError(PenumbraError):
    """The log on disk is not what penumbra wrote (torn, corrupt, or not a log)."""


def canonical(entry: dict[str, Any]) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: the bytes that are hashed."""
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    return text.encode("utf-8")


def ledger_dir(run_dir: Path) -> Path:
    return run_dir / "ledger"


def read_entry_lines(path: Path) -> list[bytes]:
    """Raw entry lines; LedgerError naming the line if the last one is torn."""
    data = path.read_bytes() if path.exists() else b""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise LedgerError(
            f"{path}: entry {len(lines) - 1} (the last line) is torn: the run stopped while "
            "writing it; the log cannot be trusted past entry "
            f"{len(lines) - 2}"
        )
    return lines[:-1]


def parse_entries(lines: list[bytes], path: Path) -> list[dict[str, Any]]:
    entries = []
    for index, line in enumerate(lines):
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LedgerError(f"{path}: entry {index} is not valid JSON ({e})") from e
        if not isinstance(entry, dict) or canonical(entry) != line:
            raise LedgerError(f"{path}: entry {index} is not in canonical JSON form")
        entries.append(entry)
    return entries


class Ledger:
    """Writer for one run's log. Not thread-safe: one process writes a run."""

    def __init__(
        self,
        run_dir: Path,
        signer: Signer,
        origin: str,
        witnesses: list[WitnessEndpoint] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.witnesses = list(witnesses or [])
        self.dir = ledger_dir(run_dir)
        self.signer = signer
        self.origin = origin
        self.entries_path = self.dir / "entries.jsonl"
        lines = read_entry_lines(self.entries_path)
        self._entries = parse_entries(lines, self.entries_path)
        self._hashes = [leaf_hash(line) for line in lines]

    @classmethod
    def open(
        cls,
        run_dir: Path | str,
        *,
        signing_key: Path | str | None = None,
        witnesses: list[WitnessEndpoint] | None = None,
    ) -> Ledger:
        """Create the run's ledger, or reopen it to resume (same key, same origin).

        With witnesses, the newest checkpoint is cosigned by each before this returns: a
        folder rolled back or copied behind a witness's back stops here, before any draw."""
        run = Path(run_dir)
        folder = ledger_dir(run)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints").mkdir(exist_ok=True)
        origin_file = folder / "origin"
        if origin_file.exists():
            origin = origin_file.read_text(encoding="utf-8").strip()
        else:
            origin = f"penumbra.run/{secrets.token_hex(8)}"
            _atomic_text(origin_file, origin + "\n")
        signer = _signer(run, signing_key)
        pubkey = folder / "pubkey"
        if pubkey.exists() and pubkey.read_text(encoding="utf-8").strip() != signer.vkey:
            raise LedgerError(
                f"{pubkey}: this run was signed with another key; resume with the same "
                "--signing-key"
            )
        if not pubkey.exists():
            _atomic_text(pubkey, signer.vkey + "\n")
        ledger = cls(run, signer, origin, witnesses)
        before = ledger.newest_checkpoint()
        ledger.check_against_checkpoint()
        if ledger.witnesses and before is not None and ledger.newest_checkpoint() == before:
            witness_checkpoint(before, ledger._hashes, ledger.witnesses)
        return ledger

    def add_witnesses(self, witnesses: list[WitnessEndpoint]) -> None:
        """Witness this log from now on, starting with its newest checkpoint (a ledger opened
        by another route than `open`: the multi-holder coordinator's)."""
        self.witnesses = list(witnesses)
        newest = self.newest_checkpoint()
        if self.witnesses and newest is not None:
            witness_checkpoint(newest, self._hashes, self.witnesses)

    def newest_checkpoint(self) -> Path | None:
        files = sorted(p for p in (self.dir / "checkpoints").glob("*") if is_checkpoint_name(p))
        return files[-1] if files else None

    def check_against_checkpoint(self) -> None:
        """Refuse to continue a log that lost or changed entries since its newest signed
        checkpoint: a resumed run decides from the log whether noise was already drawn.
        One trailing entry without a checkpoint (a crash between the two writes) is signed now."""
        newest = self.newest_checkpoint()
        if newest is None:
            if self.size == 1:  # died between the first append and its checkpoint
                self._sign_trailing(0)
            elif self.size:
                raise LedgerError(
                    f"{self.entries_path}: {self.size} entries but no signed checkpoint; the "
                    "checkpoints were removed (run penumbra verify)"
                )
            return
        try:
            verifier = parse_vkey(self.signer.vkey)
            cp = verify_signed_note(newest.read_text(encoding="utf-8"), verifier)
        except (NoteError, UnicodeDecodeError) as e:
            raise LedgerError(f"{newest}: not a valid checkpoint of this run ({e})") from None
        if cp.size != int(newest.name):
            raise LedgerError(
                f"{newest}: signs a log of {cp.size} entries under the name of another size; "
                "the checkpoints were tampered with (run penumbra verify)"
            )
        if cp.size > self.size or root_from_hashes(self._hashes[: cp.size]) != cp.root:
            raise LedgerError(
                f"{self.entries_path}: entries were removed or changed after checkpoint "
                f"{newest.name} was signed; the run cannot be resumed safely (run penumbra verify)"
            )
        if cp.size < self.size:
            self._sign_trailing(cp.size)

    def _sign_trailing(self, signed: int) -> None:
        """Sign the one entry a crash can leave after the newest checkpoint, if it is one
        penumbra writes. More than one, or one with fields penumbra never writes, was appended
        by hand: signing it would publish whatever it holds under the run's key."""
        if self.size - signed > 1:
            raise LedgerError(
                f"{self.entries_path}: {self.size - signed} entries after the newest signed "
                f"checkpoint ({signed}); a crash leaves at most one, so they were appended by "
                "hand: restore the log (run penumbra verify) or start a new run"
            )
        problem = entry_problem(self._entries[signed])
        if problem is not None:
            raise LedgerError(
                f"{self.entries_path}: entry {signed} (not yet signed) is {problem}: it was "
                "appended by hand; restore the log (run penumbra verify) or start a new run"
            )
        self.checkpoint()

    @property
    def size(self) -> int:
        return len(self._hashes)

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def find(self, kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
        return ((i, e) for i, e in enumerate(self._entries) if e.get("type") == kind)

    def append(self, kind: str, fields: dict[str, Any]) -> int:
        """Append one entry (durably), then sign a checkpoint over the whole log."""
        entry = {"schema": SCHEMA_VERSION, "type": kind, "index": self.size, **fields}
        line = canonical(entry)
        with open(self.entries_path, "ab") as f:
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self._hashes.append(leaf_hash(line))
        self._entries.append(entry)
        self.checkpoint()
        return self.size - 1

    def checkpoint(self) -> Path:
        """Sign the whole log; then each witness cosigns it (WitnessRefused stops the run)."""
        cp = Checkpoint(self.origin, self.size, root_from_hashes(self._hashes))
        path = self.dir / "checkpoints" / f"{self.size:08d}"
        _atomic_text(path, sign_checkpoint(cp, [self.signer]))
        if self.witnesses:
            witness_checkpoint(path, self._hashes, self.witnesses)
        return path


def is_checkpoint_name(path: Path) -> bool:
    """A checkpoint file's name: ASCII digits only ('²' is a digit to str.isdigit), a file."""
    return path.name.isascii() and path.name.isdigit() and path.is_file()


def _signer(run: Path, signing_key: Path | str | None) -> Signer:
    """The run's key: a PKCS#11 URI (the key stays on its token), a PEM file, or the key
    made for this run in private/ledger.key."""
    if isinstance(signing_key, str) and signing_key.startswith("pkcs11:"):
        from penumbra.ledger.hsm import open_pkcs11_key

        return Signer(KEY_NAME, open_pkcs11_key(signing_key))
    if signing_key is not None:
        return load_private_key(Path(signing_key), KEY_NAME)
    private = run / "private"
    private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(private, 0o700)
    key_path = private / "ledger.key"
    if key_path.exists():
        return load_private_key(key_path, KEY_NAME)
    signer = generate_signer(KEY_NAME)
    save_private_key(signer, key_path)
    return signer


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
