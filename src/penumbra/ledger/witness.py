"""A transparency-log witness (C2SP tlog-witness): it cosigns a run's checkpoint only if that
checkpoint is consistent with the newest one it cosigned for the same log before.

A run folder restored from a copy, or a copy resumed beside the original, is consistent with
itself, so the run's own checks take it for a crash and would draw a release a second time.
A witness remembers: once it has cosigned size n of a log, it refuses any checkpoint of that
log that is not an extension of that tree (409 for another size or root, 422 for a proof that
does not verify), so the copy stops before it draws noise and an auditor can ask for its
cosignature on the newest checkpoint.

State folder (`penumbra ledger witness init`):
    witness.json   {"name": ...}
    witness.key    its Ed25519 key, PEM, mode 0600
    witness.vkey   its verifier key (public): NAME+KEYID+BASE64
    logs.json      the logs it witnesses: each an origin and the key that signs it
    logs/<sha256(origin)>       the newest checkpoint it cosigned for that log (the log's note)
    logs/<sha256(origin)>.lock  one writer per log at a time, across threads and processes

The HTTP front is `witness_app`; the protocol and state are here, without HTTP.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.ledger.cosignature import Cosigner, generate_cosigner
from penumbra.ledger.merkle import HASH_SIZE, verify_consistency
from penumbra.ledger.note import (
    Checkpoint,
    NoteError,
    Verifier,
    load_private_key,
    parse_signed_note,
    parse_vkey,
    save_private_key,
    verify_signed_note,
)

log = logging.getLogger("penumbra.witness")

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
SIZE_MEDIA_TYPE = "text/x.tlog.size"


class WitnessStateError(PenumbraError):
    """A witness state folder that is missing, incomplete or damaged."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class LogKey:
    vkey: str
    origin: str  # a log is its origin and its key (C2SP); never "any origin of this key"


def init_state(folder: Path, name: str, signer: str | None = None) -> Cosigner:
    """Create a witness: its key (0600, or `signer`: a PKCS#11 URI, the key stays on its
    token) and verifier key. Refuses a folder that has one."""
    if (folder / "witness.key").exists() or (folder / "witness.json").exists():
        raise WitnessStateError(f"{folder}: already holds a witness; use another folder")
    try:
        cosigner = generate_cosigner(name)
    except NoteError as e:
        raise WitnessStateError(f"--name: {e}") from None
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    identity: dict[str, str] = {"name": name}
    if signer is not None:
        from penumbra.ledger.hsm import open_pkcs11_key

        cosigner = Cosigner(name, open_pkcs11_key(signer))
        identity["signer"] = signer
    else:
        save_private_key(cosigner, folder / "witness.key")
    atomic_write_bytes(folder / "witness.json", json.dumps(identity).encode())
    atomic_write_bytes(folder / "logs.json", json.dumps({"logs": []}).encode())
    atomic_write_bytes(folder / "witness.vkey", (cosigner.vkey + "\n").encode())
    return cosigner


def load_cosigner(folder: Path) -> Cosigner:
    try:
        identity = json.loads((folder / "witness.json").read_text(encoding="utf-8"))
        name = identity["name"]
        if not isinstance(name, str):
            raise TypeError("name is not a string")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WitnessStateError(
            f"{folder}: not a witness state folder ({type(e).__name__}: {e}); run "
            "`penumbra ledger witness init` first"
        ) from None
    if isinstance(identity.get("signer"), str):
        from penumbra.ledger.hsm import open_pkcs11_key

        return Cosigner(name, open_pkcs11_key(identity["signer"]))
    try:
        return Cosigner(name, load_private_key(folder / "witness.key", name).private_key)
    except NoteError as e:
        raise WitnessStateError(str(e)) from None


def read_logs(folder: Path) -> list[LogKey]:
    try:
        data = json.loads((folder / "logs.json").read_text(encoding="utf-8"))
        logs = [LogKey(e["key"], e["origin"]) for e in data["logs"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise WitnessStateError(f"{folder}/logs.json: unreadable ({e}); restore it") from None
    if not all(isinstance(k.origin, str) and k.origin for k in logs):
        raise WitnessStateError(f"{folder}/logs.json: every log needs its origin; restore it")
    return logs


def add_log(folder: Path, vkey: str, origin: str) -> LogKey:
    """Witness the log `origin`, signed by `vkey`. Atomic; a running witness reads the file
    again on its next request. The origin is required: whoever holds a run's key chooses the
    origins it signs, so trusting a key for "any origin" would cosign a copied run under a
    fresh origin as a new log (and let one key take over another run's origin)."""
    load_cosigner(folder)  # a witness folder, not any folder
    try:
        parse_vkey(vkey)
    except NoteError as e:
        raise WitnessStateError(f"--key: {e}") from None
    if not origin or "\n" in origin:
        raise WitnessStateError("--origin: must be one non-empty line (the run's ledger/origin)")
    entry = LogKey(vkey.strip(), origin)
    with _locked(folder / "logs.json.lock"):
        logs = read_logs(folder)
        if entry not in logs:
            logs.append(entry)
        body = {"logs": [{"key": e.vkey, "origin": e.origin} for e in logs]}
        atomic_write_bytes(folder / "logs.json", json.dumps(body, indent=1).encode())
    return entry


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: each open() is its own lock, so threads exclude each other too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _log_path(folder: Path, origin: str) -> Path:
    return folder / "logs" / hashlib.sha256(origin.encode("utf-8")).hexdigest()


def stored_checkpoint(folder: Path, origin: str) -> Checkpoint | None:
    """The newest checkpoint this witness cosigned for `origin`, or None."""
    path = _log_path(folder, origin)
    if not path.exists():
        return None
    try:
        checkpoint, _ = parse_signed_note(path.read_text(encoding="utf-8"))
    except (NoteError, UnicodeDecodeError) as e:
        raise WitnessStateError(f"{path}: damaged ({e}); restore it from a backup") from None
    if checkpoint.origin != origin:
        raise WitnessStateError(f"{path}: holds another log's checkpoint; restore it")
    return checkpoint


@dataclass(frozen=True)
class Request:
    old: int
    proof: list[bytes]
    note: str


def parse_request(body: bytes) -> Request:
    """The add-checkpoint body: `old N`, up to 63 base64 proof hashes, a blank line, the note.
    ValueError with the reason on anything else."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request larger than {MAX_REQUEST_BYTES} bytes")
    text = body.decode("utf-8")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise ValueError("no blank line before the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    size = first[4:]
    if (
        not first.startswith("old ")
        or not (size.isascii() and size.isdigit())
        or (size.startswith("0") and size != "0")
    ):
        raise ValueError("the first line must be `old <size>` (decimal, no leading zeroes)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ValueError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        raw = base64.b64decode(line, validate=True)
        if len(raw) != HASH_SIZE:
            raise ValueError("a consistency proof line is not a base64 SHA-256 hash")
        proof.append(raw)
    return Request(int(size), proof, note)


class Witness:
    """The protocol over one state folder. Safe to call from many threads and processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cosigner = load_cosigner(folder)
        self._logs_stamp: tuple[int, int] | None = None
        self._logs: list[tuple[LogKey, Verifier]] = []
        self._now = time.time

    def trusted(self) -> list[tuple[LogKey, Verifier]]:
        """logs.json, read again whenever it changed (add-log needs no restart)."""
        stat = (self.folder / "logs.json").stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._logs_stamp:
            self._logs = [(k, parse_vkey(k.vkey)) for k in read_logs(self.folder)]
            self._logs_stamp = stamp
        return self._logs

    def add_checkpoint(self, body: bytes) -> Reply:
        try:
            request = parse_request(body)
            checkpoint, _ = parse_signed_note(request.note)
        except (ValueError, UnicodeDecodeError) as e:  # NoteError is a ValueError
            return Reply(400, f"bad request: {e}\n")
        keys = [v for k, v in self.trusted() if k.origin == checkpoint.origin]
        signed = False
        for verifier in keys:
            try:
                verify_signed_note(request.note, verifier)
                signed = True
                break
            except NoteError:
                continue
        if not signed:
            if keys:
                return Reply(403, f"{checkpoint.origin}: no signature by a key trusted for it\n")
            return Reply(404, f"{checkpoint.origin}: unknown log\n")
        if request.old > checkpoint.size:
            return Reply(400, f"old size {request.old} is larger than the checkpoint's\n")
        with _locked(_log_path(self.folder, checkpoint.origin).with_suffix(".lock")):
            stored = stored_checkpoint(self.folder, checkpoint.origin)
            held = stored.size if stored else 0
            if request.old != held:
                return Reply(409, f"{held}\n", SIZE_MEDIA_TYPE)
            if stored is not None and stored.size == checkpoint.size:
                if stored.root != checkpoint.root or request.proof:
                    log.warning("%s: another tree of size %d", checkpoint.origin, held)
                    return Reply(409, f"{held}\n", SIZE_MEDIA_TYPE)
            elif stored is None:
                if request.proof:
                    return Reply(422, "the proof must be empty from size 0\n")
            elif not verify_consistency(
                stored.size, checkpoint.size, stored.root, checkpoint.root, request.proof
            ):
                log.warning(
                    "%s: checkpoint %d is not consistent with the cosigned %d (kept as "
                    "evidence)", checkpoint.origin, checkpoint.size, stored.size,
                )  # fmt: skip
                self._keep_evidence(checkpoint, request.note)
                return Reply(422, "consistency proof does not verify\n")
            atomic_write_bytes(_log_path(self.folder, checkpoint.origin), request.note.encode())
            line = self.cosigner.cosign(checkpoint, int(self._now()))
        return Reply(200, line)

    def _keep_evidence(self, checkpoint: Checkpoint, note: str) -> None:
        """A signed checkpoint that forks the log is proof the log misbehaved: keep it."""
        digest = hashlib.sha256(note.encode()).hexdigest()[:16]
        name = f"{_log_path(self.folder, checkpoint.origin).name}-{digest}"
        atomic_write_bytes(self.folder / "evidence" / name, note.encode())
