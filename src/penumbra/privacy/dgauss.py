"""Exact discrete Gaussian sampling (Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for
Differential Privacy", Algorithms 1-3).

Vote histograms (local runs and the aggregators of secure voting) get discrete Gaussian noise on
integer vote counts before anything is released. Floating
point samplers leak through rounding artefacts (Mironov 2012), so every accept/reject decision
here uses integers only: a Bernoulli(n/d) is `randrange(d) < n`, Bernoulli(exp(-n/d)) is built
from those (Algorithm 1), the discrete Laplace from those (Algorithm 2), and the discrete
Gaussian from a discrete Laplace by rejection (Algorithm 3). sigma is a rational number.

The default randomness is the operating system's CSPRNG (`secrets.SystemRandom`) and nothing
of it is kept: noise that could be regenerated could be subtracted. Tests pass a seeded
`random.Random`.
"""

from __future__ import annotations

import math
import random
import secrets
from fractions import Fraction

import numpy as np
import numpy.typing as npt

Rng = random.Random


def _sigma_fraction(sigma: Fraction | int | str) -> Fraction:
    value = Fraction(sigma)
    if value <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    return value


def bernoulli(rng: Rng, num: int, den: int) -> bool:
    """True with probability num/den (0 <= num <= den)."""
    return rng.randrange(den) < num


def bernoulli_exp(rng: Rng, num: int, den: int) -> bool:
    """True with probability exp(-num/den) for num/den >= 0 (CKS20 Algorithm 1)."""
    if num < 0 or den <= 0:
        raise ValueError("bernoulli_exp needs num >= 0 and den > 0")
    whole, rest = divmod(num, den)
    for _ in range(whole):
        if not _bernoulli_exp_unit(rng, 1, 1):
            return False
    return _bernoulli_exp_unit(rng, rest, den)


def _bernoulli_exp_unit(rng: Rng, num: int, den: int) -> bool:
    """exp(-gamma) for gamma = num/den in [0, 1]: the parity of the first K with A_K = 0."""
    k = 1
    while bernoulli(rng, num, den * k):
        k += 1
    return k % 2 == 1


def discrete_laplace(rng: Rng, s: int, t: int) -> int:
    """P(x) proportional to exp(-|x| s / t) (CKS20 Algorithm 2)."""
    while True:
        u = rng.randrange(t)
        if not bernoulli_exp(rng, u, t):
            continue
        v = 0
        while bernoulli_exp(rng, 1, 1):
            v += 1
        y = (u + t * v) // s
        negative = bernoulli(rng, 1, 2)
        if negative and y == 0:
            continue
        return -y if negative else y


def _sample_one(rng: Rng, sigma2: Fraction, t: int) -> int:
    a, b = sigma2.numerator, sigma2.denominator
    while True:
        y = discrete_laplace(rng, 1, t)
        # gamma = (|y| - sigma^2 / t)^2 / (2 sigma^2) = (|y| b t - a)^2 / (2 a b t^2)
        num = (abs(y) * b * t - a) ** 2
        den = 2 * a * b * t * t
        if bernoulli_exp(rng, num, den):
            return y


def sample_discrete_gaussian(
    sigma: Fraction | int | str,
    size: int,
    rng: random.SystemRandom | random.Random | None = None,
) -> npt.NDArray[np.int64]:
    """`size` independent draws from the discrete Gaussian N_Z(0, sigma^2) (CKS20 Algorithm 3).

    `sigma` is exact: an int, a Fraction or a decimal string such as "2.5" (a float would
    already be rounded, so it is refused). Without `rng`, draws come from the OS CSPRNG.
    """
    if isinstance(sigma, float):
        raise TypeError("pass sigma as an int, a Fraction or a decimal string, not a float")
    if size < 0:
        raise ValueError("size must be non-negative")
    sig = _sigma_fraction(sigma)
    source: Rng = rng if rng is not None else secrets.SystemRandom()
    t = math.floor(sig) + 1
    sigma2 = sig * sig
    return np.array([_sample_one(source, sigma2, t) for _ in range(size)], dtype=np.int64)


def discrete_gaussian_pmf(
    x: int | npt.ArrayLike, sigma: Fraction | int | str | float
) -> npt.NDArray[np.float64]:
    """P(X = x) for X ~ N_Z(0, sigma^2), in floating point (for tests and reports only)."""
    s = float(Fraction(sigma)) if not isinstance(sigma, float) else sigma
    k_max = math.ceil(12 * s) + 10
    ks = np.arange(-k_max, k_max + 1, dtype=np.float64)
    norm = float(np.exp(-(ks**2) / (2 * s * s)).sum())
    xs = np.asarray(x, dtype=np.float64)
    result: npt.NDArray[np.float64] = np.exp(-(xs**2) / (2 * s * s)) / norm
    return result
