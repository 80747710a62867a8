"""Fidelity metrics against closed forms and hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from penumbra.evaluate.frechet import feature_stats, frechet_between, frechet_distance
from penumbra.evaluate.kid import kernel_distance, mmd2_unbiased, polynomial_kernel
from penumbra.evaluate.manifold import knn_radii, manifold_metrics


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_closed_form_for_commuting_gaussians() -> None:
    # diagonal covariances: d² = ‖μ1-μ2‖² + Σ (√a_i - √b_i)²
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-10)


def test_frechet_matches_an_eigendecomposition_reference() -> None:
    # Tr((Σ1Σ2)^½) = Tr((Σ1^½ Σ2 Σ1^½)^½), computed here with symmetric eigendecompositions
    rng = np.random.default_rng(0)
    for d in (2, 8, 32):
        s1, s2 = _spd(rng, d), _spd(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        w, v = linalg.eigh(s1)
        root1 = (v * np.sqrt(w)) @ v.T
        inner = linalg.eigvalsh(root1 @ s2 @ root1)
        want = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(inner).sum()
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8, abs=1e-8)


def test_frechet_from_samples_converges_to_the_gaussians_distance() -> None:
    rng = np.random.default_rng(1)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([0.5, 3.0])
    x = rng.multivariate_normal([0, 0], s1, size=200_000)
    y = rng.multivariate_normal([1, 0], s2, size=200_000)
    want = frechet_distance(np.array([0.0, 0]), s1, np.array([1.0, 0]), s2)
    # sampling error of the plug-in estimate at n = 2e5 is ~1e-2; 0.05 is > 4 standard errors
    assert frechet_between(x, y) == pytest.approx(want, abs=0.05)
    assert frechet_between(x, x) == pytest.approx(0.0, abs=1e-6)


def test_feature_stats_rejects_a_single_row() -> None:
    with pytest.raises(ValueError, match="two rows"):
        feature_stats(np.zeros((1, 4)))


def test_mmd2_unbiased_matches_the_explicit_u_statistic() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / 3 + 1) ** 3)

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a, b) for a in x for b in y) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert polynomial_kernel(x, y).shape == (7, 5)


def test_kid_is_unbiased_for_samples_of_one_distribution() -> None:
    # Mean of 400 independent estimates on small samples (n=20) from the same Gaussian: the
    # U-statistic centres on 0 while the biased V-statistic is clearly positive. The bound is
    # 4 standard errors of the mean (false failure < 1e-4 under the null).
    rng = np.random.default_rng(3)
    values, biased = [], []
    for _ in range(400):
        x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
        values.append(mmd2_unbiased(x, y))
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    values_a = np.array(values)
    se = values_a.std(ddof=1) / np.sqrt(len(values_a))
    assert abs(values_a.mean()) < 4 * se
    assert np.mean(biased) > 10 * se
    assert (values_a < 0).any()  # an unbiased estimate of 0 must go negative sometimes


def test_kid_separates_shifted_sets_and_reports_subsets() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same = kernel_distance(a, b, subsets=20, subset_size=100)
    shifted = kernel_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert shifted["mean"] > 50 * max(abs(same["mean"]), same["std"])
    assert same["subset_size"] == 100 and same["subsets"] == 20
    assert kernel_distance(a[:10], b, subset_size=1000)["subset_size"] == 10
    with pytest.raises(ValueError, match="equal widths"):
        kernel_distance(a, b[:, :3])


def test_knn_radii_exclude_the_point_itself() -> None:
    x = np.arange(10, dtype=float)[:, None]
    assert knn_radii(x, 1).tolist() == [1.0] * 10
    assert knn_radii(x, 2).tolist() == [2.0] + [1.0] * 8 + [2.0]
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(x, 10)


def test_manifold_metrics_on_a_hand_computed_cloud() -> None:
    real = np.arange(10, dtype=float)[:, None]  # 0..9, every k=1 radius is 1
    fake = np.array([[0.5], [100.0]])  # one inside the real manifold, one far away
    m = manifold_metrics(real, fake, k=1)
    assert m["precision"] == 0.5  # 0.5 lies in the balls of 0 and 1; 100 in none
    assert m["recall"] == 1.0  # the fake radius (99.5) covers all of 0..9
    assert m["density"] == 1.0  # (2 balls + 0 balls) / (k · 2 fakes)
    assert m["coverage"] == 0.2  # only the balls of 0 and 1 hold a fake sample


def test_manifold_metrics_identical_and_disjoint_clouds() -> None:
    rng = np.random.default_rng(5)
    real = rng.normal(size=(200, 4))
    same = manifold_metrics(real, real.copy(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = manifold_metrics(real, real + 1000.0, k=3)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0
    # a collapsed generator (every sample the same real point) is precise but has no recall
    collapsed = manifold_metrics(real, np.repeat(real[:1], 50, axis=0) + 1e-9, k=3)
    assert collapsed["precision"] == 1.0
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05
