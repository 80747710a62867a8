"""The discrete Gaussian mechanism: noise scale, post-processing, and an empirical privacy audit."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from penumbra.pe.mechanism import add_discrete_gaussian_noise, apply_threshold, select
from penumbra.privacy import (
    discrete_gaussian_sigma,
    sampling_sigma,
    vote_noise_source,
)
from penumbra.privacy.dgauss import discrete_gaussian_pmf


def _noise(votes: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return add_discrete_gaussian_noise(
        np.asarray(votes, dtype=np.int64), sampling_sigma(sigma), random.Random(seed)
    )


def test_noise_is_integer_and_has_the_claimed_law() -> None:
    # Chi-square of 50,000 draws against the exact discrete Gaussian pmf (bins with expected
    # count >= 5, tails pooled). Fixed seed; at a random seed a correct sampler fails with
    # probability 1e-3 (the p-value bound), the mean/std checks add ≤ 6e-5 each.
    sigma, n = 3.7, 50_000
    noise = _noise(np.zeros(n, dtype=np.int64), sigma, 20261122)
    assert noise.dtype == np.int64
    xs = np.arange(-40, 41)
    expected = discrete_gaussian_pmf(xs, Fraction(sampling_sigma(sigma))) * n
    observed = np.array([(noise == x).sum() for x in xs], dtype=np.float64)
    keep = expected >= 5
    exp_kept = np.append(expected[keep], n - expected[keep].sum())
    obs_kept = np.append(observed[keep], n - observed[keep].sum())
    assert stats.chisquare(obs_kept, exp_kept).pvalue > 1e-3
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(n)
    assert abs(noise.std(ddof=1) - sigma) < 4 * sigma / math.sqrt(2 * (n - 1))


def test_noise_is_added_to_every_bin_independently() -> None:
    clean = np.arange(5, dtype=np.int64) * 100
    draws = np.stack([_noise(clean, 2.0, s) for s in range(4000)]).astype(np.float64)
    np.testing.assert_allclose(draws.mean(axis=0), clean, atol=4 * 2.0 / math.sqrt(4000))
    corr = np.corrcoef(draws.T)[np.triu_indices(5, 1)]
    assert np.all(np.abs(corr) < 4 / math.sqrt(4000))  # each |r| beyond 4/√n: p < 1e-4


def test_mechanism_refuses_float_votes_and_float_sigma() -> None:
    with pytest.raises(ValueError, match="integer"):
        add_discrete_gaussian_noise(np.array([1.5, 2.0]), Fraction(2), random.Random(0))
    with pytest.raises(ValueError, match="Fraction"):
        add_discrete_gaussian_noise(np.array([1, 2]), 2.0, random.Random(0))  # type: ignore[arg-type]


def test_sampling_sigma_never_below_the_accounted_sigma() -> None:
    for sigma in (0.3, 1.0, 7.903412345678, 85.70488):
        for k in (1, 2, 8):
            exact = sampling_sigma(sigma, k)
            assert exact >= Fraction(sigma) * Fraction(math.sqrt(k))
            assert float(exact) < sigma * math.sqrt(k) * (1 + 1e-8) + 1e-8


def test_real_runs_use_the_os_csprng() -> None:
    assert isinstance(vote_noise_source(None, 0), random.SystemRandom)
    a = vote_noise_source(None, 0).getrandbits(64)
    b = vote_noise_source(None, 0).getrandbits(64)
    assert a != b  # equal with probability 2^-64
    assert vote_noise_source(5, 2).random() == vote_noise_source(5, 2).random()
    assert vote_noise_source(5, 2).random() != vote_noise_source(5, 3).random()


def test_threshold_and_selection() -> None:
    noisy = np.array([3.0, -1.0, 7.0, 7.0, 0.5])
    np.testing.assert_array_equal(apply_threshold(noisy, 1.0), [2.0, 0.0, 6.0, 6.0, 0.0])
    rng = np.random.default_rng(0)
    # rank: highest first, ties to the lowest index, cycling over positive bins only
    np.testing.assert_array_equal(
        select(apply_threshold(noisy, 1.0), 5, "rank", rng), [2, 3, 0, 2, 3]
    )
    # all-zero weights fall back to every bin rather than stalling
    np.testing.assert_array_equal(select(np.zeros(3), 4, "rank", rng), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="threshold"):
        apply_threshold(noisy, -1)
    with pytest.raises(ValueError, match="selection"):
        select(noisy, 2, "best", rng)  # type: ignore[arg-type]


def test_sample_selection_is_proportional() -> None:
    weights = np.array([1.0, 0.0, 3.0, 6.0])
    picks = select(weights, 20_000, "sample", np.random.default_rng(9))
    observed = np.bincount(picks, minlength=4)
    assert observed[1] == 0
    # chi-square goodness of fit on the non-zero bins; false-failure rate 1e-3 at a random seed
    expected = 20_000 * weights[[0, 2, 3]] / weights.sum()
    assert stats.chisquare(observed[[0, 2, 3]], expected).pvalue > 1e-3


def _clopper_pearson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    lo = stats.beta.ppf(alpha / 2, successes, trials - successes + 1) if successes else 0.0
    hi = (
        stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes)
        if successes < trials
        else 1.0
    )
    return float(lo), float(hi)


def test_empirical_audit_does_not_exceed_claimed_epsilon() -> None:
    """Neighbouring vote histograms (one sample added: one bin +1), many times.

    The best test distinguishing them thresholds the changed bin; over a sweep of thresholds
    the 95%-confidence lower bound on ε (Clopper-Pearson on both error rates) must stay below
    the claimed ε. With a fixed seed the test is deterministic; the bound is at 95% per
    threshold with a Bonferroni correction over the sweep, so a correct mechanism fails it
    with probability < 5%, and in practice far less since the bound is not tight.
    """
    epsilon, delta, trials = 1.0, 1e-5, 200_000
    sigma = discrete_gaussian_sigma(epsilon, delta, 1)
    clean = np.array([10, 4, 0])
    neighbour = clean + np.array([0, 1, 0])
    # Each bin is noised independently, so noising `trials` copies of the changed bin at once
    # draws exactly what `trials` separate runs of the mechanism would show for that bin.
    a = _noise(np.full(trials, clean[1]), sigma, 4242)
    b = _noise(np.full(trials, neighbour[1]), sigma, 4243)
    thresholds = np.quantile(a, np.linspace(0.5, 0.9999, 60))
    alpha = 0.05 / len(thresholds)
    best = 0.0
    for tau in thresholds:
        fp = int((a > tau).sum())
        tp = int((b > tau).sum())
        _, fpr_hi = _clopper_pearson(fp, trials, alpha)
        tpr_lo, _ = _clopper_pearson(tp, trials, alpha)
        if tpr_lo - delta > 0 and fpr_hi > 0:
            best = max(best, math.log((tpr_lo - delta) / fpr_hi))
    assert 0.05 < best <= epsilon  # the audit sees real leakage, but never more than claimed
    # a mechanism with too little noise is caught by the same audit
    weak = _noise(np.full(trials, clean[1]), sigma / 4, 4244)
    weak_b = _noise(np.full(trials, neighbour[1]), sigma / 4, 4245)
    tau = float(np.quantile(weak, 0.999))
    fp, tp = int((weak > tau).sum()), int((weak_b > tau).sum())
    tpr_lo = _clopper_pearson(tp, trials, 0.05)[0]
    fpr_hi = _clopper_pearson(fp, trials, 0.05)[1]
    assert math.log((tpr_lo - delta) / fpr_hi) > epsilon


def test_apportion_is_largest_remainder() -> None:
    from penumbra.pe.mechanism import apportion

    np.testing.assert_array_equal(apportion(np.array([5.0, 3.0, 2.0]), 10), [5, 3, 2])
    # quotas 3.33, 3.33, 3.33: the one spare unit goes to the lowest index
    np.testing.assert_array_equal(apportion(np.ones(3), 10), [4, 3, 3])
    # quotas 1.5, 0.75, 4.5, 0.25 (sum 7): floors 1, 0, 4, 0 and the two largest remainders
    np.testing.assert_array_equal(apportion(np.array([6.0, 3.0, 18.0, 1.0]), 7), [2, 1, 4, 0])
    rng = np.random.default_rng(3)
    for _ in range(200):
        w = rng.exponential(size=int(rng.integers(1, 30))) * (rng.random() > 0.1)
        count = int(rng.integers(0, 500))
        shares = apportion(w, count)
        quota = count * (w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w)))
        assert shares.sum() == count and np.all(np.abs(shares - quota) < 1)
    with pytest.raises(ValueError, match="weights >= 0"):
        apportion(np.array([1.0, -1.0]), 3)


def test_proportional_selection_follows_the_histogram() -> None:
    """The final set's mix of candidates is the noisy histogram's (issue 14): a bin with 60% of
    the weight gets 60% of the outputs, a bin with none gets none."""
    weights = apply_threshold(np.array([60.0, 30.0, -4.0, 10.0]), 0.0)
    picks = select(weights, 1000, "proportional", np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(picks, minlength=4), [600, 300, 0, 100])
    rank = select(weights, 1000, "rank", np.random.default_rng(0))
    assert np.bincount(rank, minlength=4)[0] == 334  # what rank did: round-robin, ~1/3 each
