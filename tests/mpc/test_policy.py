"""What an aggregator decides itself (penumbra.mpc.policy): k, δ, candidates, σ, the budget.

In-process aggregators (no servers): the HTTP API on top is exercised against a malicious
coordinator in test_malicious_coordinator.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fastapi import HTTPException

from penumbra.errors import ConfigError
from penumbra.mpc.aggregator import Aggregator
from penumbra.mpc.deploy import init_deployment, load_party_config
from penumbra.mpc.policy import Refused, RunTerms, deployment_delta
from penumbra.mpc.protocol import RoundOutcome, RoundParams
from penumbra.privacy.zcdp import dgauss_sigma, zcdp_rho, zcdp_to_epsilon

N = 200
DELTA = 1.0 / (N * math.log(N))


def _aggregator(root: Path, **init: object) -> Aggregator:
    configs = init_deployment(root, holders=2, counts=[120, 80], **init)  # type: ignore[arg-type]
    return Aggregator(load_party_config(configs["leader"]))


def _params(round_id: str, iteration: int = 0, k: int = 1, length: int = 3) -> RoundParams:
    return RoundParams(
        round_id=round_id, iteration=iteration, length=length, k=k, sigma=0.1, deadline_unix=0.0
    )


def _budget(epsilon: float = 2.0, iterations: int = 4, k: int = 1, delta: float = DELTA) -> dict:
    return {"epsilon": epsilon, "delta": delta, "iterations": iterations, "k": k}


def _book(agg: Aggregator) -> bytes:
    path = agg.state / "budget.json"
    return path.read_bytes() if path.exists() else b""


def _release(agg: Aggregator, round_id: str) -> None:
    """Commit an (empty) opened round by hand and release this aggregator's share."""
    agg.rounds[round_id].outcome = RoundOutcome(round_id=round_id, accepted=[], rejected=[])
    agg.aggregate(round_id)


def test_deployment_delta_is_one_over_n_ln_n(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d")
    assert deployment_delta(agg.c) == pytest.approx(DELTA, rel=1e-15)
    assert agg.book.delta == deployment_delta(agg.c)


@pytest.mark.parametrize(
    ("round_k", "budget_k"),
    [(8, 1), (1, 8), (8, 8)],  # (8, 1): the σ=0.70-instead-of-8.25 bug of issue 13
)
def test_a_round_announcing_another_k_is_refused(
    tmp_path: Path, round_k: int, budget_k: int
) -> None:
    agg = _aggregator(tmp_path / "d")  # the deployment's k is 1
    with pytest.raises(HTTPException, match="this deployment's k is 1") as info:
        agg.open_round(_params("r1", k=round_k), "run-a", _budget(k=budget_k))
    assert info.value.status_code == 403
    assert not agg.rounds and _book(agg) == b""  # nothing opened, nothing reserved


def test_sigma_takes_sensitivity_from_the_deployment_k(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d", k=8)
    sigma = agg.open_round(_params("r1", k=8), "run-a", _budget(k=8))["sigma"]
    assert sigma == pytest.approx(dgauss_sigma(2.0, DELTA, 4, sensitivity=math.sqrt(8)))
    assert sigma > 2.8 * dgauss_sigma(2.0, DELTA, 4)  # √8 times the σ of k = 1


def test_a_delta_above_the_deployments_is_refused(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d")
    for delta in (0.5, DELTA * 1.01):
        with pytest.raises(HTTPException, match=r"δ = 1/\(N ln N\)") as info:
            agg.open_round(_params("r1"), "run-a", _budget(delta=delta))
        assert info.value.status_code == 403
    assert not agg.rounds and _book(agg) == b""
    # A smaller δ is the run's to choose, and costs σ.
    sigma = agg.open_round(_params("r2"), "run-b", _budget(delta=DELTA / 10))["sigma"]
    assert sigma == pytest.approx(dgauss_sigma(2.0, DELTA / 10, 4))


def test_too_many_candidates_are_refused(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d", max_candidates=50)
    with pytest.raises(HTTPException, match="at most 50") as info:
        agg.open_round(_params("r1", length=51), "run-a", _budget())
    assert info.value.status_code == 403
    agg.open_round(_params("r2", length=50), "run-a", _budget())


def test_the_deployment_budget_composes_rho_across_runs(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d", max_epsilon=3.5)
    rho = zcdp_rho(dgauss_sigma(2.0, DELTA, 4), 4)
    # Two runs of ε = 2: basic composition (4 > 3.5) would refuse the second; zCDP admits it.
    agg.open_round(_params("r1"), "run-a", _budget())
    agg.open_round(_params("r2"), "run-b", _budget())
    assert zcdp_to_epsilon(2 * rho, DELTA) <= 3.5 < zcdp_to_epsilon(3 * rho, DELTA)
    book = json.loads(_book(agg))
    assert book["rho_reserved"] == pytest.approx(2 * rho)
    assert book["epsilon_reserved"] == pytest.approx(zcdp_to_epsilon(2 * rho, DELTA))
    before = _book(agg)
    with pytest.raises(HTTPException, match="deployment budget") as info:
        agg.open_round(_params("r3"), "run-c", _budget())  # a fresh run id: no fresh budget
    assert info.value.status_code == 403
    assert _book(agg) == before and "r3" not in agg.rounds
    # Known runs keep their terms, their iterations and their T.
    with pytest.raises(HTTPException, match="another budget"):
        agg.open_round(_params("r4", 1), "run-a", _budget(epsilon=9.0))
    with pytest.raises(HTTPException, match="no budget left"):
        agg.open_round(_params("r5", 4), "run-a", _budget())
    # The budget outlives the aggregator process.
    again = _aggregator_from(agg)
    with pytest.raises(HTTPException, match="deployment budget"):
        again.open_round(_params("r6"), "run-d", _budget())


def _aggregator_from(agg: Aggregator) -> Aggregator:
    return Aggregator(load_party_config(Path(agg.c.folder) / "config.json"))


def test_each_release_is_booked_before_it_leaves_and_only_once(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d")
    agg.open_round(_params("r1"), "run-a", _budget())
    assert json.loads(_book(agg))["rho_spent"] == 0
    _release(agg, "r1")
    book = json.loads(_book(agg))
    sigma = agg.rounds["r1"].accounted_sigma
    assert book["runs"]["run-a"]["released"]["0"] == {
        "round_id": "r1",
        "sigma": sigma,
        "rho": zcdp_rho(sigma, 1),
    }
    assert book["epsilon_spent"] == pytest.approx(zcdp_to_epsilon(zcdp_rho(sigma, 1), DELTA))
    assert agg.aggregate("r1") == agg.aggregate("r1")  # asked again: the same share
    with pytest.raises(HTTPException, match="was released"):
        agg.open_round(_params("r2"), "run-a", _budget())
    with pytest.raises(HTTPException, match="never released") as info:
        agg.aggregate("r-unknown")
    assert info.value.status_code == 404


def test_runs_of_an_older_aggregator_are_charged(tmp_path: Path) -> None:
    configs = init_deployment(tmp_path / "d", holders=2, counts=[120, 80], max_epsilon=3.0)
    runs = configs["leader"].parent / "state" / "runs"
    runs.mkdir(parents=True)
    old = {"budget": _budget(), "released": {"0": "t000-aa"}}
    (runs / "old-run.json").write_text(json.dumps(old))
    agg = Aggregator(load_party_config(configs["leader"]))
    assert agg.book.runs["old-run"]["released"]["0"]["round_id"] == "t000-aa"
    with pytest.raises(HTTPException, match="deployment budget"):  # ε 2 + 2 composes to 3.02
        agg.open_round(_params("r1"), "run-a", _budget())
    agg.open_round(_params("r2"), "run-b", _budget(epsilon=1.0))


def test_an_aggregator_config_needs_a_budget(tmp_path: Path) -> None:
    configs = init_deployment(tmp_path / "d", holders=1)
    data = json.loads(configs["leader"].read_text())
    assert data["max_epsilon"] == 10.0 and data["k"] == 1 and data["metric"] == "l2"
    del data["max_epsilon"]
    configs["leader"].write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="max_epsilon: required"):
        load_party_config(configs["leader"])
    holder = json.loads(configs["holder-1"].read_text())
    assert "max_epsilon" not in holder and holder["max_candidates"] == 10_000


@pytest.mark.parametrize(
    "budget",
    [
        {"epsilon": 1.0, "delta": 1e-5, "iterations": 2},
        {"epsilon": float("inf"), "delta": 1e-5, "iterations": 2, "k": 1},
        {"epsilon": 1.0, "delta": 0.0, "iterations": 2, "k": 1},
        {"epsilon": 1.0, "delta": 1e-5, "iterations": True, "k": 1},
        {"epsilon": "1", "delta": 1e-5, "iterations": 2, "k": 1},
    ],
)
def test_malformed_budgets_are_refused(budget: dict) -> None:
    with pytest.raises(Refused) as info:
        RunTerms.parse(budget)
    assert info.value.status == 400


def test_a_deployment_without_an_explicit_budget_still_has_one(tmp_path: Path) -> None:
    """`penumbra mpc init` without --max-epsilon: the stated default (ε 10) caps every run
    together; fresh run ids stop being admitted once it is reached."""
    agg = _aggregator(tmp_path / "d")
    admitted = 0
    for i in range(50):
        try:
            agg.open_round(_params(f"r{i}"), f"run-{i}", _budget(epsilon=2.0))
        except HTTPException as e:
            assert e.status_code == 403 and "max_epsilon 10" in str(e.detail)
            break
        admitted += 1
    assert 5 <= admitted < 50
    assert agg.book.epsilon(agg.book.rho_reserved()) <= 10.0


def test_a_booked_release_whose_share_was_lost_is_never_called_unreleased(tmp_path: Path) -> None:
    agg = _aggregator(tmp_path / "d")
    agg.open_round(_params("r1"), "run-a", _budget())
    _release(agg, "r1")
    (agg.state / "released" / "r1.json").unlink()  # died between booking and storing
    with pytest.raises(HTTPException, match="booked as released") as info:
        _aggregator_from(agg).aggregate("r1")
    assert info.value.status_code == 409  # not 404: the coordinator must not redo the round
