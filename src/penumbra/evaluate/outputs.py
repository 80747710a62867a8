"""Where an evaluation's results go: aggregates outside, everything else in a private folder.

`evaluate()` returns everything it computed, including values about single private images
(the distance of each closest synthetic/private pair, the private file names, the smallest
distance, the flagging threshold) and exact private statistics (the reference's class mix).
Those stay in a private folder (mode 0700): a run's private/ folder, or `<out-stem>.private/`
beside `penumbra evaluate --out FILE` (DESIGN.md invariant 2).

Outside it go only aggregates — fidelity metrics, shares, medians, AUC, rates — every section
labelled `not_dp` (invariant 6): they are computed against the private data and are not DP.
The public view is built from an allow-list, so a field added to `evaluate()` later stays
private until someone decides it is an aggregate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from penumbra.durable import atomic_write_bytes
from penumbra.evaluate.audit import AUDIT_LABEL

PUBLIC_SCHEMA = "penumbra.evaluation.public/1"
NOT_DP = AUDIT_LABEL

FIDELITY = ("frechet_distance", "kid", "kid_std", "kid_subset_size",
            "precision", "recall", "density", "coverage", "k")  # fmt: skip
MEMORISATION = ("synthetic_to_member_median", "synthetic_to_nonmember_median",
                "nonmember_to_member_median", "closer_to_member_share", "flagged",
                "flagged_share", "threshold_rule")  # fmt: skip
MEMBERSHIP = ("auc", "auc_ci95_low", "auc_ci95_high", "tpr_at_1pct_fpr", "tpr_at_10pct_fpr",
              "members", "nonmembers", "roc")  # fmt: skip
# counts of private images; left out when the run publishes only a bound (privacy.public_n)
DARK_KEYS = ("private", "synthetic", "held_out", "max_gap", "max_gap_held_out", "tone_mix_tv",
             "tone_mix_tv_held_out")  # fmt: skip
# TSTR (tstr.py): shares of the test set only; the confusion *counts* would give the
# reference's exact class mix and stay private
TSTR = ("not_dp", "uses_reference", "protocol", "protocol_text", "classes",
        "synthetic_only_classes", "reference_only_classes", "test_images", "feature_space",
        "classifier", "seed", "chance", "chance_rule")  # fmt: skip
TSTR_SCORES = ("train_images", "converged", "accuracy", "accuracy_ci95", "per_class_recall",
               "confusion_row_normalised")  # fmt: skip
COUNTS = frozenset({"kid_subset_size", "members", "nonmembers", "images", "skipped",
                    "test_images", "train_images"})  # fmt: skip


def private_dir(folder: Path) -> Path:
    """`folder`, created if need be, readable by its owner only (0700)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _pick(section: dict[str, Any], keys: tuple[str, ...], hide_counts: bool) -> dict[str, Any]:
    return {k: section[k] for k in keys if k in section and not (hide_counts and k in COUNTS)}


def public_view(
    result: dict[str, Any],
    *,
    details: str | None,
    artifacts: dict[str, str] | None = None,
    hide_counts: bool = False,
) -> dict[str, Any]:
    """The aggregates of a full `evaluate()` result, each section labelled not DP.

    `details` says where the full result lies (a path), or None when it was not written;
    `hide_counts` leaves out every count of private images (for runs with privacy.public_n)."""
    where = details if details is not None else "not written (no private folder was given)"
    out: dict[str, Any] = {
        "schema": PUBLIC_SCHEMA,
        "not_dp": NOT_DP,
        "private_details": where,
        "synthetic": {k: result["synthetic"][k] for k in ("folder", "images", "skipped")},
        "reference": {"folder": f"(private data: see {where})",
                      **_pick(result["reference"], ("images", "skipped"), hide_counts)},
        "feature_space": dict(result["feature_space"]),
        "fidelity": {**_pick(result["fidelity"], FIDELITY, hide_counts), "not_dp": NOT_DP},
    }  # fmt: skip
    if "fid" in result:
        out["fid"] = {**_pick(result["fid"], ("fid", "protocol"), False), "not_dp": NOT_DP}
    if "classes" in result:
        # the synthetic mix is a function of the synthetic images alone; the reference's
        # (private) mix stays private
        classes = _pick(
            result["classes"], ("classifier", "synthetic_mix", "total_variation"), False
        )
        out["classes"] = {**classes, "not_dp": NOT_DP}
    mix = result.get("class_mix_total_variation_to_private")
    if mix is not None:
        out["class_mix_total_variation_to_private"] = {
            "not_dp": NOT_DP,
            "total_variation": {str(k): float(v) for k, v in mix.items()},
        }
    dark = result.get("dark_share_within_class")
    if dark is not None and not hide_counts:
        out["dark_share_within_class"] = {
            "not_dp": NOT_DP,
            **{k: dark[k] for k in DARK_KEYS if k in dark},
        }
    audit = result.get("privacy_audit")
    if audit is not None:
        out["privacy_audit"] = {
            "not_dp": NOT_DP,
            "members": _pick(audit["members"], ("images",), hide_counts),
            "nonmembers": _pick(audit["nonmembers"], ("images",), hide_counts),
            "memorisation": _pick(audit["memorisation"], MEMORISATION, hide_counts),
            "membership_inference": _pick(audit["membership_inference"], MEMBERSHIP,
                                          hide_counts),
        }  # fmt: skip
    tstr = result.get("tstr")
    if tstr is not None:
        out["tstr"] = {
            **_pick(tstr, TSTR, hide_counts),
            **{k: _pick(tstr[k], TSTR_SCORES, hide_counts)
               for k in ("synthetic", "real_same_number")},
        }  # fmt: skip
    if artifacts:
        out["artifacts"] = dict(artifacts)
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2).encode("utf-8"))
