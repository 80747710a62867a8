"""Read-only views of a ledger for `penumbra ledger show`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from penumbra.errors import PenumbraError
from penumbra.ledger.log import ledger_dir, parse_entries, read_entry_lines
from penumbra.ledger.merkle import inclusion_proof_from_hashes, leaf_hash, root_from_hashes


def _lines(run_dir: Path) -> list[bytes]:
    path = ledger_dir(Path(run_dir)) / "entries.jsonl"
    if not path.is_file():
        raise PenumbraError(f"{run_dir}: not a penumbra run directory (no ledger/entries.jsonl)")
    return read_entry_lines(path)


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise PenumbraError(f"--entry/--proof {index}: the ledger has entries 0..{size - 1}")


def _class(classes: list[str], label: object) -> str:
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(classes):
        return f"class {label} ({classes[label]})"
    return f"class {label!r}"


def summary_rows(run_dir: Path) -> list[tuple[int, str, str]]:
    lines = _lines(run_dir)
    rows = []
    classes: list[str] = []  # a labelled run's class names, from run_start
    for i, e in enumerate(parse_entries(lines, Path(run_dir))):
        kind = str(e.get("type"))
        if kind == "release":
            eps = e["cumulative_epsilon"]
            text = f"iteration {e['iteration']}, σ={e['sigma']:.4g}, ε so far {eps:.4g}"
            if "label" in e:
                text = f"{_class(classes, e['label'])}, {text}"
        elif kind == "run_start":
            size = (
                f"N={e['n_private']}" if e.get("n_private") is not None
                else f"N ≤ {e.get('public_n')} (public bound)"
            )  # fmt: skip
            text = f"{size}, target ε={e['epsilon_target']}, δ={e['delta']:.3g}"
            if isinstance(e.get("classes"), list):
                classes = [str(name) for name in e["classes"]]
                text += f", {len(classes)} classes ({e.get('composition')})"
        elif kind == "class_counts":
            counts = e.get("noisy_counts") or []
            eps = e.get("cumulative_epsilon", float("nan"))
            text = f"{len(counts)} classes, noisy counts {counts}, ε so far {eps:.4g}"
        elif kind == "outputs":
            text = f"{len(e['files'])} file(s)"
        elif kind == "files":
            gone = f", {len(e.get('removed') or [])} removed" if e.get("removed") else ""
            text = f"published tree at {e.get('stage')}: {len(e.get('files') or [])} file(s){gone}"
        elif kind == "run_end":
            text = f"ε spent {e['epsilon_spent']:.4g}, {e['num_outputs']} outputs"
        elif kind == "mpc_setup":
            sigma = e.get("sigma_per_aggregator", float("nan"))
            holders = len(e.get("holders", []))
            text = f"{holders} holders, σ per aggregator {sigma:.4g}, {e.get('accountant')}"
        elif kind == "mpc_round":
            text = (f"iteration {e.get('iteration')} attempt {e.get('attempt')}: "
                    f"{e.get('outcome')}, {len(e.get('accepted', []))} accepted, "
                    f"{len(e.get('rejected', []))} rejected, "
                    f"{len(e.get('holders_missing', []))} missing")  # fmt: skip
        else:
            text = ""
        rows.append((i, kind, text))
    return rows


def entry_json(run_dir: Path, index: int) -> str:
    lines = _lines(run_dir)
    _check_index(index, len(lines))
    return json.dumps(json.loads(lines[index]), indent=2, ensure_ascii=False)


def inclusion_proof_json(run_dir: Path, index: int) -> dict[str, Any]:
    """Same fields as the RFC 9162 test vectors, plus the signed checkpoint they refer to."""
    lines = _lines(run_dir)
    _check_index(index, len(lines))
    hashes = [leaf_hash(line) for line in lines]
    checkpoint = ledger_dir(Path(run_dir)) / "checkpoints" / f"{len(lines):08d}"
    return {
        "leafIdx": index,
        "treeSize": len(lines),
        "leafHash": base64.b64encode(hashes[index]).decode(),
        "proof": [base64.b64encode(p).decode() for p in inclusion_proof_from_hashes(hashes, index)],
        "root": base64.b64encode(root_from_hashes(hashes)).decode(),
        "entry": lines[index].decode("utf-8"),
        "checkpoint": checkpoint.read_text(encoding="utf-8") if checkpoint.is_file() else None,
    }
