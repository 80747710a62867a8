"""Exact privacy accounting for T releases of the Gaussian mechanism (L2 sensitivity 1).

T Gaussian releases with noise σ compose exactly to μ-GDP with μ = √T/σ (Dong, Roth & Su), and
μ-GDP is (ε, δ)-DP exactly when δ = Φ(-ε/μ + μ/2) − e^ε·Φ(-ε/μ − μ/2) (the analytic Gaussian
mechanism, Balle & Wang 2018). That closed form is evaluated here in log space, so it stays
accurate for large ε, and inverted with Brent's method to ~1e-12 relative. Google's
dp-accounting (analytic Gaussian loss and its PLD accountant) cross-checks it in the tests.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.special import log_ndtr

_RTOL = 1e-13


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_delta(delta: float) -> None:
    if not isinstance(delta, (int, float)) or not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def gdp_delta(epsilon: float, mu: float) -> float:
    """δ at which μ-GDP is (ε, δ)-DP; decreasing in ε, increasing in μ."""
    log_a = float(log_ndtr(-epsilon / mu + mu / 2))
    log_b = epsilon + float(log_ndtr(-epsilon / mu - mu / 2))
    if log_b >= log_a:
        return 0.0
    return math.exp(log_a) * -math.expm1(log_b - log_a)


def gaussian_mu(sigma: float, steps: int) -> float:
    """μ of `steps` Gaussian releases with noise σ and L2 sensitivity 1."""
    _check_positive("sigma", sigma)
    _check_steps(steps)
    return math.sqrt(steps) / sigma


def gaussian_epsilon(sigma: float, steps: int, delta: float) -> float:
    """Smallest ε such that `steps` Gaussian releases with noise σ are (ε, δ)-DP."""
    mu = gaussian_mu(sigma, steps)
    _check_delta(delta)
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = max(1.0, mu * mu)
    while gdp_delta(hi, mu) > delta:
        hi *= 2.0
    return float(brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-300, rtol=_RTOL))


def gaussian_sigma(epsilon: float, delta: float, steps: int) -> float:
    """Smallest σ such that `steps` Gaussian releases are (ε, δ)-DP (up to ~1e-12 relative)."""
    _check_positive("epsilon", epsilon)
    _check_delta(delta)
    _check_steps(steps)
    lo, hi = 1e-12, 1.0
    while gdp_delta(epsilon, hi) < delta:
        lo, hi = hi, hi * 2.0
    mu = float(brentq(lambda m: gdp_delta(epsilon, m) - delta, lo, hi, xtol=1e-300, rtol=_RTOL))
    sigma = math.sqrt(steps) / mu
    # Round up so the returned σ never claims a smaller ε than asked for.
    while gaussian_epsilon(sigma, steps, delta) > epsilon:
        sigma = math.nextafter(sigma, math.inf) * (1 + 1e-15)
    return sigma


def default_delta(n_private: int) -> float:
    """δ = 1/(N·ln N) (Aug-PE's choice); needs N >= 3 so that δ < 1/N."""
    if isinstance(n_private, bool) or not isinstance(n_private, int) or n_private < 3:
        raise ValueError(
            f"n_private must be an integer >= 3 for a meaningful delta, got {n_private!r}"
        )
    return 1.0 / (n_private * math.log(n_private))


def check_delta_for(delta: float, n_private: int) -> None:
    """δ must be below 1/N, or the guarantee allows publishing one private sample outright."""
    _check_delta(delta)
    if delta >= 1.0 / n_private:
        raise ValueError(
            f"delta={delta:g} must be < 1/N = {1.0 / n_private:g} for N={n_private} private "
            "samples; use a smaller delta (default 1/(N ln N))"
        )
