"""Exact privacy accounting for vote histograms released with discrete Gaussian noise.

A private sample gives one integer vote to each of its k nearest candidates, and every bin gets
independent noise N_Z(0, s²) with s = σ·√k (σ in the histogram units of DESIGN.md invariant 5:
votes of 1/√k). Adding or removing the sample moves k bins by exactly 1, so one release is k
compositions of the one-dimensional discrete Gaussian with sensitivity 1, and T releases are
m = T·k compositions. For one coordinate the privacy loss at x is
log N_Z(0,s²)(x) / N_Z(1,s²)(x) = (1 − 2x)/(2s²): it lives on a lattice, so the privacy loss
distribution of m compositions is the law of (m − 2S)/(2s²) with S a sum of m independent
N_Z(0, s²) — computed here exactly up to a truncated tail (< 1e-30, added to δ) and FFT rounding
(~1e-13, added too). Then δ(ε) = E[(1 − e^{ε−L})₊] (the privacy-loss-distribution identity of
Meiser & Mohammadi 2018; Google dp-accounting's PLD accountant computes the same curve and the
tests compare them). The loss distribution is symmetric under x → 1 − x, so adding and removing
a sample give the same curve.

Why not the continuous accountant of `accounting.py`: its μ-GDP curve is proven for continuous
noise; the released votes carry discrete noise (floating-point noise can leak the clean count,
Mironov 2012). For s ≳ 1 the two curves agree to well under 1%.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from scipy.optimize import brentq

ACCOUNTANT = "discrete-gaussian-pld"
_TAILS = 14.0  # pmf kept on |x| <= 14·s + 2: the mass beyond is < 1e-42


def _check(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _sum_pmf(s: float, m: int) -> tuple[np.ndarray, int, float]:
    """pmf of the sum of m i.i.d. N_Z(0, s²) on [−m·K, m·K], its offset m·K, and an upper
    bound on the mass and rounding error it misses."""
    half = math.ceil(_TAILS * s) + 2
    xs = np.arange(-half, half + 1, dtype=np.float64)
    one = np.exp(-(xs * xs) / (2.0 * s * s))
    one /= one.sum()
    length = m * (len(one) - 1) + 1
    size = 1 << max(1, (length - 1).bit_length())
    spectrum = np.fft.rfft(one, size) ** m
    pmf = np.fft.irfft(spectrum, size)[:length]
    rounding = 1e-15 * length * math.log2(size) * max(1, m)
    np.clip(pmf, 0.0, None, out=pmf)
    missed = m * 1e-42 + rounding
    return pmf, m * half, missed


def _delta_curve(s: float, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    pmf, offset, missed = _sum_pmf(s, m)
    sums = np.arange(len(pmf), dtype=np.float64) - offset
    loss = (m - 2.0 * sums) / (2.0 * s * s)
    keep = (pmf > 0) & (loss > 0)
    return loss[keep], pmf[keep], missed


def _delta_at(epsilon: float, loss: np.ndarray, pmf: np.ndarray, missed: float) -> float:
    above = loss > epsilon
    gain = -np.expm1(epsilon - loss[above])
    return float(np.dot(pmf[above], gain)) + missed


def _compositions(steps: int, k: int, extra: int) -> int:
    """m: one-dimensional sensitivity-1 compositions of the integer noise σ·√k. `steps`
    releases of k votes each, plus `extra` single counts at the same noise (a DP class-count
    release: one image adds 1 to one count, exactly one more composition)."""
    _check_int("k", k)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise ValueError(f"extra must be an integer >= 0, got {extra!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < (0 if extra else 1):
        raise ValueError(f"steps must be an integer >= {0 if extra else 1}, got {steps!r}")
    return steps * k + extra


def discrete_gaussian_delta(
    epsilon: float, sigma: float, steps: int, k: int = 1, *, extra: int = 0
) -> float:
    """Smallest δ for which `steps` releases with noise σ (histogram units) are (ε, δ)-DP."""
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    _check("sigma", sigma)
    m = _compositions(steps, k, extra)
    loss, pmf, missed = _delta_curve(sigma * math.sqrt(k), m)
    return min(1.0, _delta_at(epsilon, loss, pmf, missed))


def discrete_gaussian_epsilon(
    sigma: float, steps: int, delta: float, k: int = 1, *, extra: int = 0
) -> float:
    """Smallest ε such that `steps` discrete Gaussian releases with noise σ are (ε, δ)-DP;
    `extra` single counts at the same integer noise (see `_compositions`) compose with them."""
    _check("sigma", sigma)
    m = _compositions(steps, k, extra)
    if not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    loss, pmf, missed = _delta_curve(sigma * math.sqrt(k), m)
    if missed >= delta:
        raise ValueError(
            f"delta={delta:g} is below the accountant's resolution ({missed:.1e}) for "
            f"{steps} releases with k={k}: use a larger delta, fewer iterations or a smaller k"
        )
    if _delta_at(0.0, loss, pmf, missed) <= delta:
        return 0.0
    hi = float(loss.max()) if len(loss) else 1.0
    if _delta_at(hi, loss, pmf, missed) > delta:  # pragma: no cover - only the missed mass
        raise ValueError(f"delta={delta:g} is unreachable at sigma={sigma:g}")
    return float(
        brentq(lambda e: _delta_at(e, loss, pmf, missed) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12)
    )


def discrete_gaussian_sigma(
    epsilon: float, delta: float, steps: int, k: int = 1, *, extra: int = 0
) -> float:
    """Smallest σ (histogram units) whose `steps` releases (and `extra` counts) stay within
    (ε, δ); rounded up."""
    _check("epsilon", epsilon)
    if not isinstance(delta, (int, float)) or not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    _compositions(steps, k, extra)

    def excess(sigma: float) -> float:
        return discrete_gaussian_epsilon(sigma, steps, delta, k, extra=extra) - epsilon

    lo, hi = 0.05, 1.0
    while excess(hi) > 0:
        lo, hi = hi, hi * 2.0
    if excess(lo) <= 0:
        return lo
    sigma = float(brentq(excess, lo, hi, xtol=1e-10, rtol=1e-10))
    while excess(sigma) > 0:
        sigma *= 1 + 1e-9
    return sigma


def sampling_sigma(sigma: float, k: int = 1) -> Fraction:
    """The exact rational parameter of the noise on integer votes: σ·√k rounded *up* on a
    1e-9 grid, so the noise drawn is never smaller than the noise accounted."""
    _check("sigma", sigma)
    _check_int("k", k)
    scaled = sigma * math.sqrt(k)
    return Fraction(math.ceil(scaled * 1e9) + 1, 10**9)
