"""`penumbra verify`, the log itself: every line an untorn canonical JSON entry of a known
shape, every checkpoint signed by the expected key, each checkpoint's root the Merkle root of
the entries it covers and consistent with the previous one (RFC 9162 consistency proof), and
the newest covering every entry, each entry's inclusion proof verifying against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from penumbra.ledger.log import LedgerError, canonical, is_checkpoint_name, read_entry_lines
from penumbra.ledger.merkle import (
    consistency_proof_from_hashes,
    inclusion_proof_from_hashes,
    root_from_hashes,
    verify_consistency,
    verify_inclusion,
)
from penumbra.ledger.note import Checkpoint, NoteError, parse_vkey, verify_signed_note
from penumbra.ledger.schema import entry_problem
from penumbra.ledger.verify_report import VerifyReport


def load_entries(
    path: Path, report: VerifyReport
) -> tuple[list[bytes], list[dict[str, Any] | None]]:
    try:
        lines = read_entry_lines(path)
    except LedgerError as e:
        report.fail("ledger/entries.jsonl", e.problems[0].split(": ", 1)[1])
        data = path.read_bytes()
        lines = data.split(b"\n")[:-1]  # everything before the torn line
    entries: list[dict[str, Any] | None] = []
    for i, line in enumerate(lines):
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            report.fail(f"entry {i}", "not valid JSON (modified or corrupted)")
            entries.append(None)
            continue
        if not isinstance(entry, dict):
            report.fail(f"entry {i}", "not a JSON object")
            entries.append(None)
            continue
        problem = entry_problem(entry)
        if problem is not None:  # a channel for data penumbra never logs, or a crafted shape
            report.fail(f"entry {i}", problem)
            entries.append(None)
            continue
        if canonical(entry) != line:
            report.fail(f"entry {i}", "not in canonical JSON form (edited by hand?)")
        if entry.get("index") != i:
            report.fail(f"entry {i}", f"says it is entry {entry.get('index')} (reordered?)")
        entries.append(entry)
    return lines, entries


def check_checkpoints(
    folder: Path, vkey_text: str, hashes: list[bytes], report: VerifyReport
) -> Checkpoint | None:
    try:
        verifier = parse_vkey(vkey_text)
    except NoteError as e:
        report.fail("public key", str(e))
        return None
    files = sorted(p for p in (folder / "checkpoints").glob("*") if is_checkpoint_name(p))
    if not files:
        report.fail("ledger/checkpoints", "no signed checkpoint")
        return None
    previous: Checkpoint | None = None
    latest: Checkpoint | None = None
    broken = False
    for path in files:
        where = f"checkpoint {path.name}"
        try:
            cp = verify_signed_note(path.read_text(encoding="utf-8"), verifier)
        except (NoteError, UnicodeDecodeError) as e:
            report.fail(where, f"signature invalid: {e}")
            continue
        if cp.size != int(path.name):
            report.fail(where, f"file name says size {int(path.name)}, note says {cp.size}")
            continue
        if cp.size > len(hashes):
            report.fail(
                where,
                f"signed a log of {cp.size} entries but the log has {len(hashes)}: "
                f"entries {len(hashes)}..{cp.size - 1} were removed (log truncated)",
            )
            continue
        if root_from_hashes(hashes[: cp.size]) != cp.root:
            if broken:
                continue  # later checkpoints fail because of the same change
            broken = True
            first_bad = previous.size if previous else 0
            span = (
                f"entry {cp.size - 1}"
                if cp.size - 1 == first_bad
                else f"one of entries {first_bad}..{cp.size - 1}"
            )
            report.fail(where, f"root does not match the log: {span} differs from what was signed")
            continue
        if previous is not None:
            proof = consistency_proof_from_hashes(hashes[: cp.size], previous.size)
            if not verify_consistency(previous.size, cp.size, previous.root, cp.root, proof):
                report.fail(where, f"not consistent with checkpoint {previous.size:08d}")
        if latest is not None and cp.origin != latest.origin:
            report.fail(where, f"origin {cp.origin!r} differs from {latest.origin!r}")
        previous = latest = cp
    if latest is not None and latest.size < len(hashes) and not broken:
        report.fail(
            f"entries {latest.size}..{len(hashes) - 1}",
            "not covered by any valid signed checkpoint (appended after signing?)",
        )
    if latest is not None:
        for i in range(latest.size):
            proof = inclusion_proof_from_hashes(hashes[: latest.size], i)
            if not verify_inclusion(hashes[i], i, latest.size, proof, latest.root):
                report.fail(f"entry {i}", "inclusion proof against the newest checkpoint fails")
    return latest
