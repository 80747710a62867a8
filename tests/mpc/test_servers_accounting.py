"""Noise calibration for the aggregators (zCDP of the discrete Gaussian) and its use in verify."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from penumbra.mpc.accounting import (
    dgauss_epsilon,
    dgauss_sigma,
    total_sigma,
    zcdp_rho,
    zcdp_to_epsilon,
)
from penumbra.privacy import gaussian_epsilon


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


def test_aggregator_calibrates_its_own_sigma_and_caps_the_deployment_budget(
    tmp_path: Path,
) -> None:
    from fastapi import HTTPException

    from penumbra.mpc.aggregator import Aggregator
    from penumbra.mpc.deploy import init_deployment, load_party_config
    from penumbra.mpc.protocol import RoundParams

    configs = init_deployment(tmp_path / "d", holders=1, max_epsilon=3.0)
    agg = Aggregator(load_party_config(configs["leader"]))
    budget = {"epsilon": 2.0, "delta": 1e-5, "iterations": 4, "k": 1}

    def params(round_id: str, iteration: int) -> RoundParams:
        # The coordinator asks for σ = 0.1; an honest aggregator never adds less than its own.
        return RoundParams(
            round_id=round_id, iteration=iteration, length=3, sigma=0.1, deadline_unix=0.0
        )

    used = agg.open_round(params("r1", 0), "run-a", budget)["sigma"]
    assert used == pytest.approx(dgauss_sigma(2.0, 1e-5, 4))
    with pytest.raises(HTTPException, match="another budget"):
        agg.open_round(params("r2", 1), "run-a", {**budget, "epsilon": 9.0})
    with pytest.raises(HTTPException, match="deployment budget"):
        agg.open_round(params("r3", 0), "run-b", budget)  # 2 + 2 > 3
    with pytest.raises(HTTPException, match="no budget left"):
        agg.open_round(params("r4", 4), "run-a", budget)
