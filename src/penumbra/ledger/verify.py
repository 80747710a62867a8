"""`penumbra verify`: check a run's ledger without any private data.

Checks, in order: every line is an untorn canonical JSON entry; every checkpoint is signed by
the expected key; each checkpoint's root is the Merkle root of the entries it covers and is
consistent with the previous checkpoint (RFC 9162 consistency proof); the newest checkpoint
covers every entry and each entry's inclusion proof verifies; ε recomputed from the logged σ,
iterations and δ with penumbra.privacy matches every claim; no release used a fixed noise seed;
multi-holder runs: every checkpoint is co-signed by each aggregator and the secure aggregation
rounds reconcile with the releases (penumbra.ledger.verify_mpc); every output file's hash is in
the log, no unlisted file sits in synthetic/, every output is a candidate the last release
selected and their number is run_end's. Labelled (class-conditional) runs, whose run_start
names `classes`, are accounted per class with parallel composition and the DP class-count
release, and each output must come from the last release of its own class, in the numbers the
class counts allocate (penumbra.ledger.verify_classes); a run that names no classes must carry
no class counts and no class labels.

Who signed (DESIGN.md invariant 10): a signature proves who signed only if the key came from
somewhere else than the run. Without `pubkey` (the key the data holder published) the run's own
`ledger/pubkey` is used: that proves integrity, not the signer, and the report says so
(`signer_authenticated` False); likewise for the aggregators' co-signatures without
`cosigners`. `penumbra verify` then exits 3 rather than 0.

`verify_run` runs the checks in that order; each job has its module beside this one:
verify_log (entries, checkpoints, Merkle proofs), verify_accounting (ε), verify_classes
(labelled runs), verify_mpc (co-signatures, secure rounds), verify_tree (the published files);
all fill one verify_report.VerifyReport. The outputs against the releases are checked here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from penumbra.errors import PenumbraError
from penumbra.ledger.cosignature import CosignerKey
from penumbra.ledger.log import ledger_dir
from penumbra.ledger.merkle import leaf_hash
from penumbra.ledger.tree import scan_tree
from penumbra.ledger.verify_accounting import check_accounting, run_accountant
from penumbra.ledger.verify_classes import check_class_outputs, is_labelled
from penumbra.ledger.verify_log import check_checkpoints, load_entries
from penumbra.ledger.verify_mpc import check_cosigners, check_rounds
from penumbra.ledger.verify_report import VerifyReport, entry_label
from penumbra.ledger.verify_tree import (
    check_final_lineage,
    check_output_rows,
    check_release_files,
    check_tree,
    final_population,
    outputs_as_parents,
    read_text,
)
from penumbra.ledger.verify_witness import check_held_checkpoints, check_witnesses
from penumbra.models.fingerprint import file_sha256

_LINEAGE = ("label", "candidate_id", "iteration", "lineage")


def _output_ids(
    run_dir: Path, listed: dict[str, tuple[int, dict[str, Any]]], report: VerifyReport
) -> list[tuple[str, Any, Any]] | None:
    """(where, candidate id, class label or None) of every output: the image rows of `outputs`
    entries, or for a text run (which lists only synthetic/texts.jsonl) the lines of that file
    once its hash holds. None (with a receipt note) when they cannot be read."""
    rows = [
        (name, r["candidate_id"], r.get("label"))
        for name, (_, r) in listed.items()
        if "candidate_id" in r
    ]
    if rows or "synthetic/texts.jsonl" not in listed:
        return rows
    path = run_dir / "synthetic/texts.jsonl"
    if not path.is_file() or file_sha256(path) != listed["synthetic/texts.jsonl"][1]["sha256"]:
        report.receipt["outputs_note"] = "texts.jsonl missing or modified: outputs not counted"
        return None
    ids = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ids.append((f"synthetic/texts.jsonl line {n}", row["candidate_id"], row.get("label")))
        except (ValueError, TypeError, KeyError, AttributeError):
            report.fail(f"synthetic/texts.jsonl line {n}", "not a JSON row with a candidate_id")
    return ids


def _check_outputs(
    run_dir: Path,
    entries: list[dict[str, Any] | None],
    listed: dict[str, tuple[int, dict[str, Any]]],
    report: VerifyReport,
    final: dict[str, tuple[str, str]] | None,
) -> None:
    """Every output is a candidate the last release (of its class) selected, or one variation
    of such a candidate in the final population (`final`); as many as run_end says."""
    outputs = _output_ids(run_dir, listed, report)
    if outputs is None:
        return
    chosen = outputs_as_parents(outputs, final, report)  # what the last release selected
    releases = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "release"]
    start = entries[0] if entries and entries[0] and entries[0].get("type") == "run_start" else {}
    if is_labelled(start):
        check_class_outputs(entries, start, chosen, report)
    elif releases:
        i, last = releases[-1]
        selected = set(last.get("selected_ids") or [])
        for where, cid, _ in chosen:
            if cid not in selected:
                report.fail(
                    where,
                    f"candidate {cid!r} is not among those the last release "
                    f"({entry_label(i, last)}) selected: not a DP output",
                )
    elif outputs:
        report.fail("log", f"{len(outputs)} outputs but no release selected any")
    ends = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_end"]
    if ends:
        i, end = ends[-1]
        if end.get("num_outputs") != len(outputs):
            report.fail(
                entry_label(i, end),
                f"claims {end.get('num_outputs')!r} outputs, the outputs entries list "
                f"{len(outputs)}",
            )


def _check_files(
    run_dir: Path,
    entries: list[dict[str, Any] | None],
    report: VerifyReport,
    final: dict[str, tuple[str, str]] | None,
) -> dict[str, tuple[int, dict[str, Any]]]:
    """The outputs entries' files (name → (entry index, row)) against the disk, and the DP
    origin of every output."""
    listed: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, e in enumerate(entries):
        if e and e.get("type") == "outputs":
            for row in e["files"]:
                listed[row["file"]] = (i, row)
    for name, (i, row) in listed.items():
        path = run_dir / name
        if not path.is_file():
            report.fail(name, f"listed in entry {i} but missing")
        elif file_sha256(path) != row["sha256"]:
            report.fail(name, f"SHA-256 differs from the log (entry {i}): the file was modified")
    synthetic = run_dir / "synthetic"
    if synthetic.is_dir():
        for path in sorted(synthetic.rglob("*")):
            name = path.relative_to(run_dir).as_posix()
            if path.is_file() and name not in listed:
                report.fail(name, "in synthetic/ but not in the log (added after the run)")
    _check_outputs(run_dir, entries, listed, report, final)
    samples = [
        {"file": name, **{k: row[k] for k in _LINEAGE if k in row}}
        for name, (_, row) in list(listed.items())
        if "lineage" in row
    ][:3]
    report.receipt.update({"output_files": len(listed), "sample_lineage": samples})
    return listed


def verify_run(
    run_dir: Path | str,
    *,
    pubkey: str | None = None,
    cosigners: Sequence[str] | None = None,
    witnesses: Sequence[CosignerKey] = (),
    checkpoints: Sequence[tuple[str, str]] = (),
    output_check: Callable[[Path, list[dict[str, Any] | None], VerifyReport], None] | None = None,
) -> VerifyReport:
    """Verify a run directory. PenumbraError if it is not a run directory at all.

    `pubkey`: the run signer's verifier key as the data holder published it; `cosigners`: the
    aggregators' keys, likewise. Whatever is not given is checked against the run's own keys
    and reported as not authenticated (`report.unauthenticated`). `witnesses`: keys whose
    cosignature the newest checkpoint must carry; `checkpoints`: (name, signed note) pairs an
    auditor received earlier, each of which the log must still extend. `output_check`: what the
    rooms above add for the outputs (penumbra.provenance.verify_outputs: policy, watermark,
    content credentials)."""
    run = Path(run_dir)
    if not run.exists():
        raise PenumbraError(f"{run}: no such run directory")
    folder = ledger_dir(run)
    entries_path = folder / "entries.jsonl"
    if not entries_path.is_file():
        raise PenumbraError(f"{run}: not a penumbra run directory (no ledger/entries.jsonl)")
    report = VerifyReport(str(run), signer_authenticated=pubkey is not None)
    key_file = folder / "pubkey"
    own_key = read_text(key_file).strip() if key_file.is_file() else ""
    vkey = pubkey.strip() if pubkey is not None else own_key
    if own_key != vkey:  # the folder's copy must be the key (one line), not a message
        report.fail("ledger/pubkey", "is not the key given with --pubkey (a replaced key?)")
    report.receipt["public_key"] = vkey
    report.receipt["public_key_source"] = (
        "given (--pubkey)"
        if pubkey is not None
        else "the run's own ledger/pubkey: proves integrity, not who signed; pass --pubkey"
    )
    lines, entries = load_entries(entries_path, report)
    hashes = [leaf_hash(line) for line in lines]
    latest = check_checkpoints(folder, vkey, hashes, report)
    origin = folder / "origin"
    if latest is not None and origin.is_file() and read_text(origin).strip() != latest.origin:
        report.fail("ledger/origin", "differs from the origin the checkpoints sign")
    if latest is not None:
        report.receipt["checkpoint"] = {
            "origin": latest.origin,
            "size": latest.size,
            "root": base64.b64encode(latest.root).decode(),
        }
    report.receipt["entries"] = len(lines)
    check_witnesses(folder, latest, list(witnesses), report)
    check_held_checkpoints(
        vkey, latest.origin if latest else None, hashes, list(checkpoints), report
    )
    check_accounting(entries, report)
    check_cosigners(folder, entries, report, cosigners)
    check_rounds(entries, report, run_accountant(entries)[0])
    scan = scan_tree(run)  # the folder, walked once for the checks below
    final = final_population(run, entries, report, scan=scan)
    listed = _check_files(run, entries, report, final)
    # the outputs entries' files and everything in synthetic/ were checked above
    outputs = {*listed, *(n for n in scan.files if n.startswith("synthetic/"))}
    check_tree(run, entries, report, checked=outputs, scan=scan)
    payloads = check_release_files(run, entries, report, scan=scan)
    payloads.update({cid: caption for cid, (_, caption) in (final or {}).items()})
    check_final_lineage(listed, final, report)
    start = entries[0] if entries and entries[0] and entries[0].get("type") == "run_start" else {}
    classes = start.get("classes") if is_labelled(start) else None
    check_output_rows(run, entries, listed, payloads, classes, report)
    if output_check is not None:
        output_check(run, entries, report)
    return report
