"""The exact discrete Gaussian sampler against its probability mass function."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from penumbra.privacy.dgauss import (
    bernoulli_exp,
    discrete_gaussian_pmf,
    discrete_laplace,
    sample_discrete_gaussian,
)

N = 20000


@pytest.mark.parametrize("sigma", [1, 3])
def test_goodness_of_fit(sigma: int) -> None:
    """Chi-square against the pmf, tails pooled so every expected count is >= 5.

    With a correct sampler p < 1e-4 happens for 1 seed in 10^4; the seed is fixed, so the
    test is deterministic and that is its false-failure rate over seeds.
    """
    x = sample_discrete_gaussian(sigma, N, random.Random(1000 + sigma))
    assert x.dtype == np.int64 and x.shape == (N,)
    support = np.arange(-12 * sigma, 12 * sigma + 1)
    expected = discrete_gaussian_pmf(support, sigma) * N
    keep = expected >= 5
    lo, hi = support[keep][0], support[keep][-1]
    observed = [np.sum(x <= lo)] + [np.sum(x == k) for k in range(lo + 1, hi)] + [np.sum(x >= hi)]
    exp_counts = np.array(
        [expected[support <= lo].sum()]
        + [expected[support == k].sum() for k in range(lo + 1, hi)]
        + [expected[support >= hi].sum()]
    )
    exp_counts *= N / exp_counts.sum()
    assert stats.chisquare(observed, exp_counts).pvalue > 1e-4


@pytest.mark.parametrize("sigma", [1, 3, Fraction(5, 2)])
def test_mean_and_variance(sigma: Fraction | int) -> None:
    """Mean within 5 standard errors of 0 and variance within 5 standard errors of the pmf's
    (which is just below sigma^2): a correct sampler fails with probability < 1e-5."""
    x = sample_discrete_gaussian(sigma, N, random.Random(7)).astype(np.float64)
    s = float(sigma)
    support = np.arange(-30 * s, 30 * s + 1)
    pmf = discrete_gaussian_pmf(support, sigma)
    var = float((pmf * support**2).sum())
    fourth = float((pmf * support**4).sum())
    assert abs(var - s * s) < 0.01 * s * s
    assert abs(x.mean()) < 5 * np.sqrt(var / N)
    assert abs(x.var() - var) < 5 * np.sqrt((fourth - var**2) / N)


def test_bernoulli_exp_and_laplace_frequencies() -> None:
    """Empirical frequencies within 5 standard errors (false-failure rate < 1e-5 each)."""
    rng = random.Random(3)
    n = 20000
    for num, den in [(1, 2), (3, 2), (0, 1)]:
        hits = sum(bernoulli_exp(rng, num, den) for _ in range(n))
        q = np.exp(-num / den)
        assert abs(hits / n - q) <= 5 * np.sqrt(q * (1 - q) / n) + 1e-12
    lap = np.array([discrete_laplace(rng, 1, 2) for _ in range(n)])
    # P(0) = (1 - e^{-1/2}) / (1 + e^{-1/2}) for scale t/s = 2.
    p0 = (1 - np.exp(-0.5)) / (1 + np.exp(-0.5))
    assert abs(np.mean(lap == 0) - p0) <= 5 * np.sqrt(p0 * (1 - p0) / n)


def test_defaults_and_argument_checks() -> None:
    x = sample_discrete_gaussian("2.5", 50)  # OS randomness
    assert x.dtype == np.int64 and len(x) == 50
    assert len(sample_discrete_gaussian(1, 0)) == 0
    a = sample_discrete_gaussian(4, 30, random.Random(1))
    assert np.array_equal(a, sample_discrete_gaussian(4, 30, random.Random(1)))
    with pytest.raises(TypeError):
        sample_discrete_gaussian(1.5, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sample_discrete_gaussian(0, 3)
    assert abs(float(discrete_gaussian_pmf(np.arange(-50, 51), 3).sum()) - 1) < 1e-12
