"""The accountant against an independent closed form and Google dp-accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from penumbra.privacy import (
    check_delta_for,
    default_delta,
    gaussian_epsilon,
    gaussian_sigma,
)

GRID = [
    (sigma, steps, delta)
    for sigma in (0.8, 2.0, 10.0, 40.0)
    for steps in (1, 5, 20)
    for delta in (1e-3, 1e-5, 1e-8)
]


def closed_form_delta(epsilon: float, sigma: float, steps: int) -> float:
    """Balle & Wang's analytic Gaussian, written directly (no log space) as a reference."""
    mu = math.sqrt(steps) / sigma
    return float(
        norm.cdf(-epsilon / mu + mu / 2) - math.exp(epsilon) * norm.cdf(-epsilon / mu - mu / 2)
    )


@pytest.mark.parametrize(("sigma", "steps", "delta"), GRID)
def test_epsilon_matches_closed_form_and_dp_accounting(
    sigma: float, steps: int, delta: float
) -> None:
    from dp_accounting.pld.privacy_loss_mechanism import GaussianPrivacyLoss

    eps = gaussian_epsilon(sigma, steps, delta)
    if eps == 0.0:
        assert closed_form_delta(0.0, sigma, steps) <= delta
        return
    # δ(ε) at the returned ε is the asked δ (δ' is steep in ε, so this pins ε to ≪ 1e-6)
    assert closed_form_delta(eps, sigma, steps) == pytest.approx(delta, rel=1e-6)
    # T Gaussians with σ compose exactly to one Gaussian with σ/√T
    lib = GaussianPrivacyLoss(sigma / math.sqrt(steps), sensitivity=1.0)
    assert lib.get_delta_for_epsilon(eps) == pytest.approx(delta, rel=1e-6)
    # and ε moved by 1e-6 relative moves δ measurably both ways: ε is accurate to 1e-6
    assert closed_form_delta(eps * (1 - 1e-6), sigma, steps) > delta
    assert closed_form_delta(eps * (1 + 1e-6), sigma, steps) < delta


@pytest.mark.parametrize(
    ("sigma", "steps", "delta"), [(2.0, 5, 1e-5), (10.0, 20, 1e-6), (1.0, 1, 1e-3)]
)
def test_pld_accountant_agrees(sigma: float, steps: int, delta: float) -> None:
    from dp_accounting.pld import privacy_loss_distribution as pld

    composed = pld.from_gaussian_mechanism(sigma, value_discretization_interval=1e-4).self_compose(
        steps
    )
    pld_eps = composed.get_epsilon_for_delta(delta)
    eps = gaussian_epsilon(sigma, steps, delta)
    # the PLD accountant is pessimistic by its discretisation: never below, and close above
    assert eps <= pld_eps + 1e-9
    assert pld_eps == pytest.approx(eps, rel=2e-3)


@pytest.mark.parametrize(
    ("epsilon", "delta", "steps"),
    [(0.5, 1e-5, 10), (1.0, 1e-6, 1), (4.0, 1e-8, 30), (0.05, 1e-3, 3)],
)
def test_sigma_is_the_smallest_that_meets_the_target(
    epsilon: float, delta: float, steps: int
) -> None:
    sigma = gaussian_sigma(epsilon, delta, steps)
    assert gaussian_epsilon(sigma, steps, delta) <= epsilon
    assert gaussian_epsilon(sigma, steps, delta) == pytest.approx(epsilon, rel=1e-9)
    assert gaussian_epsilon(sigma * (1 - 1e-6), steps, delta) > epsilon


def test_more_steps_or_less_noise_cost_more() -> None:
    eps = [gaussian_epsilon(5.0, t, 1e-5) for t in (1, 2, 4, 8)]
    assert np.all(np.diff(eps) > 0)
    assert gaussian_epsilon(2.0, 3, 1e-5) > gaussian_epsilon(4.0, 3, 1e-5)


def test_default_delta() -> None:
    n = 10_000
    assert default_delta(n) == pytest.approx(1 / (n * math.log(n)))
    assert default_delta(n) < 1 / n
    check_delta_for(default_delta(n), n)
    with pytest.raises(ValueError, match="must be < 1/N"):
        check_delta_for(1e-3, 5000)
    with pytest.raises(ValueError, match=">= 3"):
        default_delta(2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: gaussian_epsilon(0.0, 1, 1e-5), "sigma"),
        (lambda: gaussian_epsilon(-1.0, 1, 1e-5), "sigma"),
        (lambda: gaussian_epsilon(1.0, 0, 1e-5), "steps"),
        (lambda: gaussian_epsilon(1.0, 1, 0.0), "delta"),
        (lambda: gaussian_epsilon(1.0, 1, 1.0), "delta"),
        (lambda: gaussian_sigma(0.0, 1e-5, 1), "epsilon"),
        (lambda: gaussian_sigma(-2.0, 1e-5, 1), "epsilon"),
        (lambda: gaussian_sigma(float("nan"), 1e-5, 1), "epsilon"),
        (lambda: gaussian_sigma(1.0, 1e-5, 1.5), "steps"),
    ],
)
def test_invalid_parameters(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call()
