"""Evaluating a finished `synthesize` run in place (`penumbra synthesize --evaluate`).

The reference is the run's private set, so every number is labelled as using private data.
What shows private images or names private files (the closest pairs) goes to the run's
private/ folder; evaluation.json and the report get only aggregate numbers and synthetic file
names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from penumbra.durable import atomic_write_bytes
from penumbra.errors import DataError
from penumbra.evaluate.artifacts import pairs_picture, roc_picture
from penumbra.evaluate.audit import AUDIT_LABEL
from penumbra.evaluate.evaluation import evaluate
from penumbra.evaluate.features import Progress

PAIRS = Path("private") / "audit" / "closest_pairs.png"
ROC = Path("evaluation") / "roc.png"


def run_private_source(run_dir: Path) -> Path:
    record = run_dir / "private" / "source.json"
    if not record.is_file():
        raise DataError(f"{run_dir}: no private/source.json; is this a penumbra run directory?")
    return Path(json.loads(record.read_text(encoding="utf-8"))["private"])


def write_audit_pictures(
    result: dict[str, Any], synthetic: Path, pairs_png: Path, roc_png: Path
) -> dict[str, str]:
    """The ROC curve and the closest-pairs sheet of an evaluation that ran the audit."""
    audit = result.get("privacy_audit")
    if audit is None:
        return {}
    written: dict[str, str] = {}
    mia = audit["membership_inference"]
    roc_picture(np.array(mia["roc"]["fpr"]), np.array(mia["roc"]["tpr"]), mia["auc"], roc_png)
    written["roc"] = str(roc_png)
    pairs = audit["memorisation"]["pairs"]
    if pairs:
        pairs_picture(pairs, synthetic, Path(audit["members"]["folder"]), pairs_png,
                      f"closest pairs: synthetic | private ({AUDIT_LABEL})")  # fmt: skip
        written["closest_pairs"] = str(pairs_png)
    return written


def evaluate_run(
    run_dir: Path | str,
    *,
    holdout: Path | str | None = None,
    classifier: str | None = None,
    embedder: str = "builtin:effnet-lite0",
    inception_weights: Path | str | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate run_dir/synthetic against the run's private images; writes evaluation.json,
    evaluation/roc.png and private/audit/ (pairs); returns the evaluation."""
    run_dir = Path(run_dir)
    synthetic = run_dir / "synthetic"
    source = run_private_source(run_dir)
    result = evaluate(
        synthetic, source, embedder=embedder, inception_weights=inception_weights,
        classifier=classifier, holdout=holdout, reference_is_private=True,
        on_progress=on_progress,
    )  # fmt: skip
    audit = result.get("privacy_audit")
    if audit is not None:
        (run_dir / "private" / "audit").mkdir(parents=True, exist_ok=True, mode=0o700)
        (run_dir / "evaluation").mkdir(exist_ok=True)
        write_audit_pictures(result, synthetic, run_dir / PAIRS, run_dir / ROC)
        mem = audit["memorisation"]
        atomic_write_bytes(run_dir / "private" / "audit" / "pairs.json",
                           json.dumps(mem["pairs"], indent=2).encode())  # fmt: skip
        # outside private/: synthetic file names and distances only
        mem["pairs"] = [{k: p[k] for k in ("synthetic_file", "distance", "flagged")}
                        for p in mem["pairs"]]  # fmt: skip
        audit["members"]["folder"] = "(the run's private set)"
        result["artifacts"] = {"roc": ROC.as_posix()}
        if (run_dir / PAIRS).exists():
            result["artifacts"]["closest_pairs"] = PAIRS.as_posix()
    result["reference"]["folder"] = "(the run's private set)"
    result["uses_private_data"] = AUDIT_LABEL
    atomic_write_bytes(run_dir / "evaluation.json", json.dumps(result, indent=2).encode())
    return result
