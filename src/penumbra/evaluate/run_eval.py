"""Evaluating a finished `synthesize` run in place (`penumbra synthesize --evaluate`).

The reference is the run's private set, so every number is labelled not DP. Files:

- private/evaluation.json — the full result: per-image values (closest pairs with their
  distances and private file names, the smallest distance, the flagging threshold), the
  private class mix, the input folders. private/ is mode 0700.
- private/audit/closest_pairs.png — the closest synthetic/private pairs (private images).
- evaluation.json — aggregates only, each section labelled `not_dp` (see outputs.py); with
  privacy.public_n in the run config, no count of private images either.
- evaluation/roc.png — the membership-inference ROC curve (rates only).

report.html reads only evaluation.json and evaluation/roc.png.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from penumbra.config import RunConfig
from penumbra.errors import DataError
from penumbra.evaluate.artifacts import pairs_picture, roc_picture
from penumbra.evaluate.audit import AUDIT_LABEL
from penumbra.evaluate.evaluation import evaluate
from penumbra.evaluate.features import Progress
from penumbra.evaluate.outputs import NOT_DP, private_dir, public_view, write_json
from penumbra.models.remote import OPT_IN, require_local

PAIRS = Path("private") / "audit" / "closest_pairs.png"
ROC = Path("evaluation") / "roc.png"
DETAILS = Path("private") / "evaluation.json"


def run_private_source(run_dir: Path) -> Path:
    record = run_dir / "private" / "source.json"
    if not record.is_file():
        raise DataError(f"{run_dir}: no private/source.json; is this a penumbra run directory?")
    return Path(json.loads(record.read_text(encoding="utf-8"))["private"])


def write_audit_pictures(
    result: dict[str, Any], synthetic: Path, pairs_png: Path, roc_png: Path
) -> dict[str, str]:
    """The ROC curve (aggregate) and the closest-pairs sheet (private images: `pairs_png` must
    lie in a private folder) of an evaluation that ran the audit."""
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


WITHHELD = (
    "privacy.public_n is set: every evaluation number could reveal the exact size of the "
    "private set, so all of them stay in private/evaluation.json"
)


def _run_config(run_dir: Path) -> RunConfig | None:
    from penumbra.config import load_config

    path = run_dir / "run.yaml"
    return load_config(path) if path.is_file() else None


def write_run_evaluation(
    run_dir: Path, result: dict[str, Any], *, hide_counts: bool = False
) -> dict[str, Any]:
    """Write the full `result` to private/evaluation.json and its aggregates to
    evaluation.json (the pictures first, if the audit ran); returns the aggregates.

    With `hide_counts` (privacy.public_n) nothing but a pointer leaves private/: fractions
    over the private set (recall, coverage, AUC) and ROC steps would reveal its exact size."""
    synthetic = run_dir / "synthetic"
    private_dir(run_dir / "private")
    # pictures of aggregates the caller made (the demo's TSTR confusion matrices)
    artifacts: dict[str, str] = dict(result.pop("public_artifacts", None) or {})
    if hide_counts:
        if result.get("privacy_audit") is not None:
            private_dir(run_dir / PAIRS.parent)
            written = write_audit_pictures(
                result, synthetic, run_dir / PAIRS, run_dir / PAIRS.parent / "roc.png"
            )
            result["artifacts"] = {k: Path(v).relative_to(run_dir).as_posix()
                                   for k, v in written.items()}  # fmt: skip
        write_json(run_dir / DETAILS, result)
        withheld = {"withheld": WITHHELD, "private_details": DETAILS.as_posix(), "not_dp": NOT_DP}
        write_json(run_dir / "evaluation.json", withheld)
        return withheld
    if result.get("privacy_audit") is not None:
        private_dir(run_dir / PAIRS.parent)
        written = write_audit_pictures(result, synthetic, run_dir / PAIRS, run_dir / ROC)
        artifacts["roc"] = ROC.as_posix()
        if "closest_pairs" in written:
            result["artifacts"] = {**artifacts, "closest_pairs": PAIRS.as_posix()}
    write_json(run_dir / DETAILS, result)
    public = public_view(result, details=DETAILS.as_posix(), artifacts=artifacts,
                         hide_counts=hide_counts)  # fmt: skip
    write_json(run_dir / "evaluation.json", public)
    return public


def evaluate_run(
    run_dir: Path | str,
    *,
    holdout: Path | str | None = None,
    classifier: str | None = None,
    embedder: str = "builtin:effnet-lite0",
    inception_weights: Path | str | None = None,
    on_progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate run_dir/synthetic against the run's private images (and `holdout`, for the
    privacy audit); `extra` adds entries known to public_view (the demo's class-mix table).
    Writes the files listed above; returns the aggregates (what evaluation.json holds)."""
    run_dir = Path(run_dir)
    config = _run_config(run_dir)
    allow = config is not None and config.privacy.allow_remote_private
    # the embedder receives the private (and held-out) images
    require_local({"embedder": embedder}, allow=allow, receives="private images",
                  opt_in=f"{OPT_IN} in {run_dir / 'run.yaml'}")  # fmt: skip
    source = run_private_source(run_dir)
    result = evaluate(
        run_dir / "synthetic", source, embedder=embedder, inception_weights=inception_weights,
        classifier=classifier, holdout=holdout, reference_is_private=True,
        on_progress=on_progress,
    )  # fmt: skip
    result.update(extra or {})
    hide = config is not None and config.privacy.public_n is not None
    return write_run_evaluation(run_dir, result, hide_counts=hide)
