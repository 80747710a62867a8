"""Membership inference and memorisation audits behave as the attack model predicts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from penumbra.evaluate.audit import (
    membership_inference,
    memorisation,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def test_roc_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    m = rng.integers(0, 5, 300).astype(float)
    n = rng.integers(0, 4, 200).astype(float)
    labels = np.r_[np.ones(300), np.zeros(200)]
    assert roc_auc(m, n) == pytest.approx(roc_auc_score(labels, np.r_[m, n]), abs=1e-12)


def test_roc_curve_ends_and_area() -> None:
    rng = np.random.default_rng(1)
    m, n = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    fpr, tpr = roc_curve(m, n)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(m, n), abs=1e-9)


def test_tpr_at_fpr_uses_the_non_member_quantile() -> None:
    non = np.arange(100, dtype=float)  # 1% FPR: threshold 98, members must exceed it
    mem = np.array([98.0, 98.5, 99.5, 10.0])
    assert tpr_at_fpr(mem, non, 0.01) == 0.5


def test_mia_is_chance_when_members_and_nonmembers_share_a_distribution() -> None:
    # Synthetic data drawn independently of both sets: the attack has no signal. With 1000 vs
    # 1000 the AUC's standard error is ~0.013; |AUC-0.5| < 0.06 is ~4.6 SE (false failure
    # < 1e-5), and the bootstrap interval must contain 0.5.
    rng = np.random.default_rng(2)
    members, nonmembers = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    synthetic = rng.normal(size=(500, 8))
    r = membership_inference(synthetic, members, nonmembers, seed=0)
    assert abs(r["auc"] - 0.5) < 0.06
    assert r["auc_ci95_low"] < 0.5 < r["auc_ci95_high"]
    assert r["tpr_at_1pct_fpr"] < 0.05


def test_mia_finds_members_copied_into_the_synthetic_set() -> None:
    rng = np.random.default_rng(3)
    members, nonmembers = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    synthetic = members.copy()  # the worst case: the output is the private set
    r = membership_inference(synthetic, members, nonmembers, seed=0)
    assert r["auc"] > 0.99
    assert r["tpr_at_1pct_fpr"] > 0.95


def test_memorisation_flags_copies_and_not_fresh_samples() -> None:
    rng = np.random.default_rng(4)
    members, nonmembers = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    fresh = rng.normal(size=(200, 8))
    clean = memorisation(fresh, members, nonmembers)
    # fresh samples are as close to members as to non-members (binomial(200, .5): 0.5 ± 0.15
    # is > 4 SE), and at the 1% threshold only a few % are flagged by chance
    assert abs(clean["closer_to_member_share"] - 0.5) < 0.15  # type: ignore[operator]
    assert clean["flagged_share"] < 0.06  # type: ignore[operator]
    leaky = np.concatenate([fresh, members[:10] + 1e-6])
    copied = memorisation(leaky, members, nonmembers)
    assert copied["flagged"] >= 10  # type: ignore[operator]
    pairs = copied["pairs"]
    assert {p["member"] for p in pairs[:10]} == set(range(10))  # type: ignore[index]
    assert all(p["flagged"] for p in pairs[:10])  # type: ignore[index]


def test_memorisation_without_holdout_reports_distances_only() -> None:
    rng = np.random.default_rng(5)
    r = memorisation(rng.normal(size=(20, 3)), rng.normal(size=(30, 3)), None)
    assert r["flagged"] is None and r["pairs"] == []
    assert r["synthetic_to_member_median"] > 0  # type: ignore[operator]
    fixed = memorisation(rng.normal(size=(20, 3)), rng.normal(size=(30, 3)), None, threshold=1e9)
    assert fixed["flagged"] == 20


def test_closer_to_member_share_is_not_skewed_by_a_larger_member_set() -> None:
    # 4x more members than non-members: the raw nearest-member distance is smaller by chance
    # alone; the share compares equal-size sets, so fresh samples stay near 0.5 (binomial(300,
    # .5): ± 0.12 is > 4 SE).
    rng = np.random.default_rng(6)
    members, nonmembers = rng.normal(size=(2000, 4)), rng.normal(size=(500, 4))
    r = memorisation(rng.normal(size=(300, 4)), members, nonmembers)
    assert abs(r["closer_to_member_share"] - 0.5) < 0.12  # type: ignore[operator]
