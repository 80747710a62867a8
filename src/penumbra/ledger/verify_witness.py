"""`penumbra verify --witness-key / --checkpoint`: what only someone outside the folder knows.

A folder is consistent with itself however it was rolled back or forked: whoever holds it
holds the run's signing key too, and can re-sign a rewritten log. Two outside views catch it:
- a witness's cosignature on the newest checkpoint: a witness cosigns only trees that extend
  every tree of this log it cosigned before, so a copy that went on after the witness saw the
  original go further cannot carry one;
- a checkpoint the auditor received earlier (from a witness, a report, an email): the log must
  still hold that tree, entry for entry.
"""

from __future__ import annotations

from pathlib import Path

from penumbra.ledger.cosignature import CosignerKey
from penumbra.ledger.log import is_checkpoint_name
from penumbra.ledger.merkle import root_from_hashes
from penumbra.ledger.note import Checkpoint, NoteError, parse_vkey, verify_signed_note
from penumbra.ledger.verify_report import VerifyReport


def check_witnesses(
    folder: Path, latest: Checkpoint | None, keys: list[CosignerKey], report: VerifyReport
) -> None:
    """The newest checkpoint must carry a valid cosignature of every witness named."""
    if not keys:
        return
    if latest is None:
        report.fail("witnesses", "no valid checkpoint to check cosignatures on")
        return
    path = folder / "checkpoints" / f"{latest.size:08d}"
    note = path.read_text(encoding="utf-8") if is_checkpoint_name(path) else ""
    seen = []
    for key in keys:
        try:
            cosigned, timestamp = key.verify(note)
        except NoteError as e:
            report.fail(
                f"checkpoint {path.name}",
                f"witness {key.name}: {e}: the newest checkpoint was not cosigned by it (a run "
                "that went on behind its back, from a rolled-back or copied folder, cannot be)",
            )
            continue
        if cosigned != latest:
            report.fail(f"checkpoint {path.name}", f"witness {key.name} cosigned another tree")
            continue
        seen.append({"witness": key.name, "size": cosigned.size, "time": timestamp})
    report.receipt["witnessed"] = seen


def check_held_checkpoints(
    vkey: str,
    origin: str | None,
    hashes: list[bytes],
    held: list[tuple[str, str]],
    report: VerifyReport,
) -> None:
    """Each (name, note) an auditor holds must be signed by the run's key and still be a
    prefix of the log: a shorter log was rolled back, another root was rewritten."""
    try:
        verifier = parse_vkey(vkey)
    except NoteError:
        return  # reported by check_checkpoints
    for name, note in held:
        try:
            cp = verify_signed_note(note, verifier)
        except NoteError as e:
            report.fail(f"--checkpoint {name}", f"not a checkpoint signed by the run's key ({e})")
            continue
        if origin is not None and cp.origin != origin:
            report.fail(f"--checkpoint {name}", f"is a checkpoint of another log ({cp.origin})")
        elif cp.size > len(hashes):
            report.fail(
                f"--checkpoint {name}",
                f"signs {cp.size} entries but the log holds {len(hashes)}: the run folder "
                "was rolled back",
            )
        elif root_from_hashes(hashes[: cp.size]) != cp.root:
            report.fail(
                f"--checkpoint {name}",
                f"the log's first {cp.size} entries are not the ones this checkpoint signed: "
                "the log was rewritten and re-signed",
            )
    if held:
        report.receipt["held_checkpoints"] = len(held)
