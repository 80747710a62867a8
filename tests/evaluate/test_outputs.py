"""The public view of an evaluation holds aggregates only, labelled not DP; the rest is private."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from penumbra.evaluate.outputs import NOT_DP, public_view
from penumbra.evaluate.report_section import evaluation_section
from penumbra.evaluate.run_eval import write_run_evaluation

PAIR = {"synthetic": 3, "member": 41, "distance": 0.123456789, "flagged": True,
        "synthetic_file": "000003.png", "member_file": "patient-0041.png"}  # fmt: skip


def _full() -> dict[str, Any]:
    """A full evaluate() result as it comes back, with every kind of private value."""
    return {
        "schema": "penumbra.evaluation/1",
        "synthetic": {"folder": "/runs/r/synthetic", "images": 24, "skipped": 0},
        "reference": {"folder": "/secret/patients", "images": 57, "skipped": 3},
        "feature_space": {"uri": "builtin:effnet-lite0", "fingerprint": "ab", "dims": 8},
        "fidelity": {
            "frechet_distance": 1.5,
            "kid": 0.01,
            "kid_std": 0.002,
            "kid_subset_size": 24.0,
            "precision": 0.5,
            "recall": 0.4,
            "density": 0.6,
            "coverage": 0.7,
            "k": 3.0,
            "uses_private_data": NOT_DP,
        },
        "classes": {
            "classifier": "builtin:fashion-classifier",
            "synthetic_mix": [0.5, 0.5],
            "reference_mix": [0.9123, 0.0877],
            "total_variation": 0.4123,
        },
        "class_mix_total_variation_to_private": {"synthetic images": 0.2, "uniform mix": 0.3},
        "privacy_audit": {
            "label": NOT_DP,
            "members": {"folder": "/secret/patients", "images": 57},
            "nonmembers": {"folder": "/secret/holdout", "images": 50},
            "memorisation": {
                "synthetic_to_member_median": 2.0,
                "synthetic_to_member_min": 0.0071,
                "synthetic_to_nonmember_median": 2.1,
                "closer_to_member_share": 0.5,
                "nonmember_to_member_median": 2.2,
                "threshold": 0.4321,
                "threshold_rule": "0.01 quantile",
                "flagged": 1,
                "flagged_share": 1 / 24,
                "pairs": [PAIR],
            },
            "membership_inference": {
                "auc": 0.52,
                "auc_ci95_low": 0.4,
                "auc_ci95_high": 0.6,
                "tpr_at_1pct_fpr": 0.02,
                "tpr_at_10pct_fpr": 0.1,
                "members": 50.0,
                "nonmembers": 50.0,
                "roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]},
            },
        },
    }


PRIVATE = ("/secret", "patient-0041", "0.123456789", "0.0071", "0.4321", "0.9123", "0.0877",
           "reference_mix", "member_file", "pairs")  # fmt: skip


def test_public_view_keeps_aggregates_only_each_labelled_not_dp() -> None:
    public = public_view(_full(), details="private/evaluation.json")
    text = json.dumps(public)
    assert not [s for s in PRIVATE if s in text]
    assert public["not_dp"] == NOT_DP and public["private_details"] == "private/evaluation.json"
    for section in ("fidelity", "classes", "privacy_audit", "class_mix_total_variation_to_private"):
        assert public[section]["not_dp"] == NOT_DP, section
    assert public["classes"]["total_variation"] == 0.4123
    assert public["privacy_audit"]["memorisation"]["flagged"] == 1
    assert public["privacy_audit"]["membership_inference"]["auc"] == 0.52
    assert public["reference"]["images"] == 57 and public["synthetic"]["folder"].endswith(
        "synthetic"
    )
    assert public["class_mix_total_variation_to_private"]["total_variation"]["uniform mix"] == 0.3


def test_public_view_hides_private_counts_when_only_a_bound_is_public() -> None:
    public = public_view(_full(), details=None, hide_counts=True)
    text = json.dumps(public)
    assert "57" not in text and "50.0" not in text and "kid_subset_size" not in text
    assert public["private_details"].startswith("not written")
    assert public["synthetic"]["images"] == 24


def test_write_run_evaluation_splits_files_and_makes_private_0700(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "synthetic").mkdir(parents=True)
    full = _full()
    full["privacy_audit"]["memorisation"]["pairs"] = []  # no images to draw here
    public = write_run_evaluation(run, full)
    assert stat.S_IMODE((run / "private").stat().st_mode) == 0o700
    saved = json.loads((run / "private" / "evaluation.json").read_text())
    assert saved["classes"]["reference_mix"] == [0.9123, 0.0877]
    assert saved["privacy_audit"]["memorisation"]["threshold"] == 0.4321
    root = (run / "evaluation.json").read_text()
    assert json.loads(root) == public and public["artifacts"] == {"roc": "evaluation/roc.png"}
    assert not [s for s in PRIVATE if s in root]
    assert (run / "evaluation" / "roc.png").is_file()


def test_report_section_shows_aggregates_labelled_even_from_an_old_evaluation_file(
    tmp_path: Path,
) -> None:
    old = _full()  # an evaluation.json written before the split held everything
    old["artifacts"] = {"roc": "evaluation/roc.png", "closest_pairs": "private/audit/x.png"}
    page = evaluation_section(tmp_path, old)
    shown = [s for s in (*PRIVATE, "private/audit", "<img") if s in page and s != "pairs"]
    assert not shown
    assert "not DP, computed against the private data" in page
    assert "membership-inference AUC" in page and "0.520" in page
    new = evaluation_section(tmp_path, public_view(_full(), details="private/evaluation.json"))
    assert "Privacy audit (not DP" in new and "1 (4.2% of the synthetic images)" in new


def test_dark_share_table_is_public_labelled_and_shown() -> None:
    full = _full()
    full["dark_share_within_class"] = {"private": [0.4, 0.3], "synthetic": [0.1, None],
                                       "held_out": [0.35, 0.32], "max_gap": 0.3,
                                       "max_gap_held_out": 0.05}  # fmt: skip
    public = public_view(full, details="private/evaluation.json")
    assert public["dark_share_within_class"]["not_dp"] == NOT_DP
    assert public["dark_share_within_class"]["max_gap"] == 0.3
    assert "dark_share_within_class" not in public_view(full, details=None, hide_counts=True)
    html = evaluation_section(Path("."), public)
    assert (
        "Share of dark items" in html
        and "0.40 / 0.10 / 0.35" in html
        and "0.30 / n/a / 0.32" in html
    )
    assert public["dark_share_within_class"]["max_gap_held_out"] == 0.05
