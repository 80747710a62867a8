"""zCDP accounting of the discrete Gaussian: each secure aggregator's noise alone gives ε.

Secure aggregation (penumbra.mpc) releases sums with this noise, and `penumbra verify`
recomputes their ε here. Why not the continuous-Gaussian accountant of
penumbra.privacy.accounting: its exact μ-GDP curve is proven for continuous noise; for the
discrete Gaussian N_Z(0, σ²) no such domination is proven under composition. What is proven
(Canonne, Kamath & Steinke 2020, Theorem 14) is that adding N_Z(0, σ²) to an integer vector of
L2 sensitivity Δ is ρ-zCDP with ρ = Δ²/(2σ²), exactly as for the continuous Gaussian; zCDP
composes by adding ρ; and ρ-zCDP implies (ε, δ)-DP with

    ε(ρ, δ) = min over α > 1 of  α·ρ − (log δ + log α)/(α − 1) + log((α − 1)/α)

(their Proposition 12 / Corollary 13, the conversion Google dp-accounting also uses). That is
sound and only slightly looser than the GDP curve.

Trust model: two aggregators each add independent noise of parameter σ. If either is honest,
its noise alone is on the released sum, so ε is computed from ONE aggregator's σ. The released
histogram carries both, so utility (signal-to-noise) is computed from the total variance 2σ².
Votes are integers (k = 1: one vote per sample, Δ = 1; k votes per sample: Δ = √k).
"""

from __future__ import annotations

import math

from scipy.optimize import brentq, minimize_scalar

ACCOUNTANT = "discrete-gaussian-zcdp"


def _check(name: str, value: float, low: float = 0.0) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= low:
        raise ValueError(f"{name} must be a finite number > {low:g}, got {value!r}")


def zcdp_rho(sigma: float, steps: int, sensitivity: float = 1.0) -> float:
    """ρ of `steps` discrete Gaussian releases with parameter σ and L2 sensitivity Δ."""
    _check("sigma", sigma)
    _check("sensitivity", sensitivity)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return steps * sensitivity**2 / (2.0 * sigma**2)


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """Smallest ε the CKS conversion gives for ρ-zCDP at δ (minimised over the order α)."""
    _check("rho", rho)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    log_delta = math.log(delta)

    def eps(log_alpha_minus_one: float) -> float:
        am1 = math.exp(log_alpha_minus_one)
        alpha = 1.0 + am1
        return alpha * rho - (log_delta + math.log(alpha)) / am1 + math.log(am1 / alpha)

    # α* ≈ 1 + sqrt(log(1/δ)/ρ); search log(α − 1) on a wide bracket around it.
    guess = math.log(math.sqrt(-log_delta / rho) + 1e-12)
    grid = [guess + step for step in (-12, -6, -3, -1, 0, 1, 3, 6, 12)]
    best = min(grid, key=eps)
    result = minimize_scalar(
        eps, bounds=(best - 3.0, best + 3.0), method="bounded", options={"xatol": 1e-12}
    )
    value = min(float(result.fun), eps(best))
    return max(0.0, value)


def dgauss_epsilon(sigma: float, steps: int, delta: float, sensitivity: float = 1.0) -> float:
    """ε after `steps` releases, each with ONE aggregator's discrete Gaussian σ."""
    return zcdp_to_epsilon(zcdp_rho(sigma, steps, sensitivity), delta)


def dgauss_sigma(epsilon: float, delta: float, steps: int, sensitivity: float = 1.0) -> float:
    """Smallest σ (per aggregator) whose `steps` releases stay within (ε, δ); rounded up."""
    _check("epsilon", epsilon)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    lo, hi = 1e-3, 1.0
    while dgauss_epsilon(hi, steps, delta, sensitivity) > epsilon:
        lo, hi = hi, hi * 2.0
    sigma = float(
        brentq(
            lambda s: dgauss_epsilon(s, steps, delta, sensitivity) - epsilon,
            lo,
            hi,
            xtol=1e-12,
            rtol=1e-12,
        )
    )
    while dgauss_epsilon(sigma, steps, delta, sensitivity) > epsilon:
        sigma *= 1 + 1e-12
    return sigma


def total_sigma(sigma: float, aggregators: int = 2) -> float:
    """Standard deviation bound of the released noise: every aggregator's noise is on it."""
    return math.sqrt(aggregators) * sigma
