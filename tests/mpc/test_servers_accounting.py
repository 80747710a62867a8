"""Noise calibration for the aggregators (zCDP of the discrete Gaussian) and its use in verify."""

from __future__ import annotations

import math

import numpy as np
import pytest

from penumbra.privacy import gaussian_epsilon
from penumbra.privacy.zcdp import (
    dgauss_epsilon,
    dgauss_sigma,
    total_sigma,
    zcdp_rho,
    zcdp_to_epsilon,
)


def _grid_epsilon(rho: float, delta: float) -> float:
    """The CKS conversion minimised over a dense grid of orders α (a slow reference)."""
    alphas = 1.0 + np.exp(np.linspace(-12, 12, 200_001))
    eps = (
        alphas * rho
        - (math.log(delta) + np.log(alphas)) / (alphas - 1)
        + np.log((alphas - 1) / alphas)
    )
    return float(max(0.0, eps.min()))


@pytest.mark.parametrize(("rho", "delta"), [(0.01, 1e-5), (0.5, 1e-6), (3.0, 1e-3), (40.0, 1e-9)])
def test_conversion_matches_a_grid_search(rho: float, delta: float) -> None:
    assert zcdp_to_epsilon(rho, delta) == pytest.approx(_grid_epsilon(rho, delta), rel=1e-6)


def test_rho_composes_additively_with_sensitivity_squared() -> None:
    assert zcdp_rho(2.0, 3) == pytest.approx(3 / 8)
    assert zcdp_rho(2.0, 3, sensitivity=math.sqrt(2)) == pytest.approx(6 / 8)
    assert dgauss_epsilon(5.0, 4, 1e-5) == pytest.approx(zcdp_to_epsilon(4 / 50, 1e-5))


@pytest.mark.parametrize(("epsilon", "steps"), [(0.5, 10), (1.0, 5), (8.0, 2)])
def test_sigma_is_the_smallest_within_budget_and_sound(epsilon: float, steps: int) -> None:
    delta = 1e-5
    sigma = dgauss_sigma(epsilon, delta, steps)
    assert dgauss_epsilon(sigma, steps, delta) <= epsilon
    assert dgauss_epsilon(sigma * (1 - 1e-6), steps, delta) > epsilon
    # zCDP is looser than the continuous Gaussian's exact curve: never claims less ε.
    assert dgauss_epsilon(sigma, steps, delta) >= gaussian_epsilon(sigma, steps, delta)
    assert total_sigma(sigma) == pytest.approx(math.sqrt(2) * sigma)


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError):
        dgauss_sigma(0.0, 1e-5, 3)
    with pytest.raises(ValueError):
        zcdp_to_epsilon(1.0, 1.5)
    with pytest.raises(ValueError):
        zcdp_rho(1.0, 0)
