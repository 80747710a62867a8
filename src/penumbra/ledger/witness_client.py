"""A run asks its witnesses to cosign each checkpoint (C2SP tlog-witness, as the log).

The run does not need to remember what each witness holds: it offers the size it last had
cosigned (0 after a restart); a witness that holds another size answers 409 with that size,
and the run proves consistency from there. A witness that holds a *larger* tree of this log,
another tree of the same size, or a tree ours does not extend (422), has seen a different
history of this run: the folder was rolled back or copied, and the run must not draw noise.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.ledger.cosignature import CosignerKey, parse_cosigner_key
from penumbra.ledger.merkle import consistency_proof_from_hashes
from penumbra.ledger.note import SIG_PREFIX, NoteError, parse_signed_note

SIZE_MEDIA_TYPE = "text/x.tlog.size"
MAX_REPLY_BYTES = 64 * 1024


class WitnessRefused(PenumbraError):
    """A witness would not cosign (or could not be asked): the run stops before any draw."""


@dataclass
class WitnessEndpoint:
    url: str
    key: CosignerKey
    cosigned: int = 0  # the size this run last had cosigned by it (a hint, not trusted)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))
    deadline_s: float = 30.0  # the whole exchange: a witness that trickles bytes is cut off

    @property
    def label(self) -> str:
        return f"witness {self.key.name} ({self.url})"


def endpoints(witnesses: list[tuple[str, str]], timeout_s: float = 10.0) -> list[WitnessEndpoint]:
    """(url, verifier key) pairs from the config → endpoints; PenumbraError naming the entry."""
    out = []
    for i, (url, key) in enumerate(witnesses):
        try:
            parsed = parse_cosigner_key(key)
        except NoteError as e:
            raise PenumbraError(f"ledger.witnesses[{i}].key: {e}") from None
        client = httpx.Client(timeout=timeout_s)
        out.append(
            WitnessEndpoint(url.rstrip("/"), parsed, client=client, deadline_s=3 * timeout_s)
        )
    return out


def request_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


def cosign(endpoint: WitnessEndpoint, note: str, hashes: list[bytes]) -> str:
    """The witness's cosignature line(s) on `note` (a checkpoint of the tree of `hashes`),
    checked against its key; WitnessRefused with the reason otherwise."""
    checkpoint, _ = parse_signed_note(note)
    old = min(endpoint.cosigned, checkpoint.size)
    for _ in range(2):  # the second try starts from the size the witness says it holds
        proof = consistency_proof_from_hashes(hashes[: checkpoint.size], old) if old else []
        status, media_type, text = _post(endpoint, request_body(old, proof, note))
        if status == 200:
            return _checked(endpoint, note, text)
        if status == 409 and media_type.startswith(SIZE_MEDIA_TYPE):
            held = text.strip()
            if not (held.isascii() and held.isdigit() and len(held) <= 20):
                raise WitnessRefused(f"{endpoint.label}: answered 409 without a size")
            if int(held) > checkpoint.size:
                raise WitnessRefused(
                    f"{endpoint.label}: has cosigned {held} entries of this run's log, more than "
                    f"this folder holds ({checkpoint.size}): the run folder was rolled back or is "
                    "a copy; it must not draw noise again"
                )
            if int(held) == old:  # same size, another root
                raise WitnessRefused(
                    f"{endpoint.label}: has cosigned another log of {held} entries under this "
                    "run's name: the run folder was rolled back or is a copy"
                )
            old = int(held)
            continue
        if status == 422:
            raise WitnessRefused(
                f"{endpoint.label}: this log is not an extension of the {old} entries it "
                "cosigned: the run folder was rolled back or is a copy that went another way"
            )
        if status in (403, 404):
            raise WitnessRefused(
                f"{endpoint.label}: does not witness this run's log ({status}); "
                "run `penumbra ledger witness add-log STATE --key RUN/ledger/pubkey --origin "
                "RUN/ledger/origin` there"
            )
        raise WitnessRefused(f"{endpoint.label}: answered {status}: {text.strip()[:120]!r}")
    raise WitnessRefused(f"{endpoint.label}: keeps answering 409 (another writer on this log?)")


def _post(endpoint: WitnessEndpoint, body: bytes) -> tuple[int, str, str]:
    """(status, content type, text) of one add-checkpoint call. The reply is read up to 64 KiB
    and the whole exchange within the endpoint's deadline: a witness cannot stall the run or
    fill its memory; WitnessRefused (one line) when it tries or cannot be reached."""
    deadline = time.monotonic() + endpoint.deadline_s
    data = b""
    try:
        with endpoint.client.stream("POST", f"{endpoint.url}/add-checkpoint", content=body) as r:
            for chunk in r.iter_bytes():
                data += chunk
                if len(data) > MAX_REPLY_BYTES:
                    raise WitnessRefused(f"{endpoint.label}: reply larger than 64 KiB")
                if time.monotonic() > deadline:
                    raise WitnessRefused(
                        f"{endpoint.label}: reply took longer than {endpoint.deadline_s:g} s"
                    )
            return r.status_code, r.headers.get("content-type", ""), data.decode("utf-8", "replace")
    except httpx.HTTPError as e:
        raise WitnessRefused(
            f"{endpoint.label}: unreachable ({type(e).__name__}); no release is drawn until it "
            "cosigns: start it, then --resume"
        ) from None


def _checked(endpoint: WitnessEndpoint, note: str, reply: str) -> str:
    lines = [line for line in reply.splitlines() if line.startswith(SIG_PREFIX)]
    ours = [
        line + "\n" for line in lines if line[len(SIG_PREFIX) :].split(" ")[0] == endpoint.key.name
    ]
    try:
        checkpoint, _ = endpoint.key.verify(note + "".join(ours))
    except NoteError as e:
        raise WitnessRefused(
            f"{endpoint.label}: its reply is not a valid cosignature ({e})"
        ) from None
    endpoint.cosigned = checkpoint.size
    return "".join(ours)


def witness_checkpoint(path: Path, hashes: list[bytes], witnesses: list[WitnessEndpoint]) -> None:
    """Have every witness cosign the checkpoint at `path`, then add their lines to the file
    (a signed note carries any number of signatures; verifiers skip the ones not theirs)."""
    note = path.read_text(encoding="utf-8")
    lines = [cosign(w, _log_note(note), hashes) for w in witnesses]
    atomic_write_bytes(path, (_log_note(note) + "".join(lines)).encode("utf-8"))


def _log_note(note: str) -> str:
    """The note without the cosignature lines of an earlier attempt (they are re-requested)."""
    body, _, sigs = note.partition("\n\n")
    kept = [line for line in sigs.splitlines(keepends=True) if not _is_cosignature(line)]
    return body + "\n\n" + "".join(kept)


def _is_cosignature(line: str) -> bool:
    blob = line.rstrip("\n").rpartition(" ")[2]
    try:
        return len(base64.b64decode(blob, validate=True)) == 4 + 8 + 64
    except ValueError:
        return False
