"""A malicious coordinator against real aggregator processes on loopback (noisy configs).

The test process holds the coordinator's certificate and speaks the aggregators' HTTP API
directly, announcing what an honest coordinator never would: another k, a large δ, fresh run
ids to get a fresh budget. Each is refused with nothing released: no noisy share comes back
for the round and the aggregator's budget book is unchanged."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from penumbra.mpc.demo import free_ports
from penumbra.mpc.deploy import init_deployment, load_party_config
from penumbra.mpc.protocol import new_round_id
from penumbra.mpc.tls import client_context, http_client
from penumbra.privacy.zcdp import dgauss_sigma

COUNTS = [120, 80]
N = sum(COUNTS)
DELTA = 1.0 / (N * math.log(N))  # the deployment's δ
AGGREGATORS = ("leader", "helper")


class MaliciousCoordinator:
    def __init__(self, root: Path) -> None:
        self.root = root
        c = load_party_config(root / "coordinator" / "config.json")
        self.urls = {"leader": c.leader_url, "helper": c.helper_url}
        self.client = http_client(
            client_context(c.path(c.ca), c.path(c.cert), c.path(c.key)), connect=5, read=30
        )

    def open(
        self,
        name: str,
        run: str,
        round_id: str,
        *,
        iteration: int = 0,
        round_k: int = 1,
        **budget: Any,
    ) -> httpx.Response:
        """POST /rounds/open: `round_k` in the round's params, `budget` over an honest run's."""
        terms = {"epsilon": 2.0, "delta": DELTA, "iterations": 4, "k": 1} | budget
        params = {
            "round_id": round_id,
            "iteration": iteration,
            "length": 3,
            "k": round_k,
            "sigma": 0.0,  # asks for no noise at all
            "deadline_unix": time.time() + 60,
        }
        body = {"params": params, "run": run, "budget": terms}
        return self.client.post(f"{self.urls[name]}/rounds/open", json=body)

    def open_both(self, run: str, **kwargs: Any) -> tuple[str, list[httpx.Response]]:
        round_id = new_round_id(kwargs.get("iteration", 0))
        return round_id, [self.open(n, run, round_id, **kwargs) for n in AGGREGATORS]

    def close(self, round_id: str) -> httpx.Response:
        return self.client.post(f"{self.urls['leader']}/rounds/{round_id}/close")

    def aggregate(self, name: str, round_id: str) -> httpx.Response:
        return self.client.get(f"{self.urls[name]}/rounds/{round_id}/aggregate")

    def books(self) -> dict[str, bytes]:
        out = {}
        for name in AGGREGATORS:
            path = self.root / name / "state" / "budget.json"
            out[name] = path.read_bytes() if path.exists() else b""
        return out

    def nothing_released(self, round_id: str) -> bool:
        return all(self.aggregate(n, round_id).status_code == 404 for n in AGGREGATORS) and not any(
            (self.root / n / "state" / "released" / f"{round_id}.json").exists()
            for n in AGGREGATORS
        )


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MaliciousCoordinator]:
    root = tmp_path_factory.mktemp("malicious") / "dep"
    leader, helper, coord = free_ports(3)
    configs = init_deployment(
        root,
        holders=len(COUNTS),
        counts=COUNTS,
        ports={"leader": leader, "helper": helper, "coordinator": coord},
        max_epsilon=3.5,  # two runs of ε = 2 (T = 4) compose to 3.02 under zCDP; three do not
    )
    procs = []
    try:
        for name in AGGREGATORS:
            log = open(root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
            command = [sys.executable, "-m", "penumbra", "mpc", "aggregator", "--config"]
            procs.append(
                subprocess.Popen(
                    [*command, configs[name]],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        mc = MaliciousCoordinator(root)
        deadline = time.monotonic() + 60
        while True:
            try:
                if all(mc.client.get(f"{u}/health").status_code == 200 for u in mc.urls.values()):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "aggregators did not start"
            time.sleep(0.2)
        yield mc
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.parametrize(("round_k", "budget_k"), [(8, 1), (1, 8), (8, 8)])
def test_another_k_is_refused(
    coordinator: MaliciousCoordinator, round_k: int, budget_k: int
) -> None:
    """(8, 1) is issue 13's case: the round said k=8 while the budget said k=1, and the
    aggregators calibrated σ for k=1 (0.70 where k=8 needs 8.25) while bounding holders by 8."""
    before = coordinator.books()
    round_id, replies = coordinator.open_both("run-k", round_k=round_k, k=budget_k)
    for reply in replies:
        assert reply.status_code == 403 and "this deployment's k is 1" in reply.text
    assert coordinator.close(round_id).status_code == 404  # no such round to close
    assert coordinator.nothing_released(round_id)
    assert coordinator.books() == before


def test_a_larger_delta_is_refused(coordinator: MaliciousCoordinator) -> None:
    before = coordinator.books()
    for delta in (0.5, DELTA * 2):
        round_id, replies = coordinator.open_both("run-delta", delta=delta)
        for reply in replies:
            assert reply.status_code == 403 and "1/(N ln N)" in reply.text
        assert coordinator.nothing_released(round_id)
    assert coordinator.books() == before


def test_fresh_run_ids_get_no_fresh_budget(coordinator: MaliciousCoordinator) -> None:
    own = dgauss_sigma(2.0, DELTA, 4)
    # An honest-looking run: admitted, and released, with the aggregators' own σ.
    round_id, replies = coordinator.open_both("run-a")
    assert [r.status_code for r in replies] == [200, 200]
    assert all(r.json()["sigma"] == pytest.approx(own) for r in replies)  # not the σ=0 asked
    assert coordinator.close(round_id).status_code == 200
    shares = [coordinator.aggregate(n, round_id) for n in AGGREGATORS]
    assert all(s.status_code == 200 and s.json()["sigma"] == pytest.approx(own) for s in shares)
    # A second run fits beside it (zCDP), a third does not, whatever its id.
    assert all(r.status_code == 200 for r in coordinator.open_both("run-b")[1])
    before = coordinator.books()
    for run in ("run-c", "run-d"):
        round_id, replies = coordinator.open_both(run)
        for reply in replies:
            assert reply.status_code == 403 and "deployment budget" in reply.text
        assert coordinator.close(round_id).status_code == 404
        assert coordinator.nothing_released(round_id)
    assert coordinator.books() == before
    # Nor can an admitted run be stretched: its released iteration, or one beyond T.
    for iteration in (0, 4):
        round_id, replies = coordinator.open_both("run-a", iteration=iteration)
        assert all(r.status_code == 409 for r in replies)
        assert coordinator.nothing_released(round_id)
    assert coordinator.books() == before


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        # a round id that walks out of released/ to probe which files the aggregator holds
        ('{"outcome":"released","round_id":"../budget","type":"mpc_round"}', "round_id"),
        ('{"accepted_ids":7,"outcome":"released","round_id":"t000-ab","type":"mpc_round"}',
         "accepted_ids"),
        ("[1,2]", "not a JSON object"),
        ('{"b": 1, "a": 2}', "canonical"),
        ("{", "ledger entry refused"),
    ],
)  # fmt: skip
def test_cosign_refuses_crafted_ledger_entries(
    coordinator: MaliciousCoordinator, entry: str, reason: str
) -> None:
    body = {"origin": "crafted/log", "size": 1, "root": "", "start": 0, "entries": [entry]}
    response = coordinator.client.post(f"{coordinator.urls['leader']}/cosign", json=body)
    assert response.status_code == 400 and reason in response.text


def test_a_helper_refuses_a_commit_that_counts_a_report_twice(tmp_path: Path) -> None:
    """A malicious leader listing a verified report twice would have it summed twice (twice
    that holder's influence, past the sensitivity the noise is calibrated to)."""
    from fastapi import HTTPException

    from penumbra.mpc.aggregator import Aggregator
    from penumbra.mpc.aggregator_state import Round
    from penumbra.mpc.protocol import Accepted, CommitRequest, RoundParams

    configs = init_deployment(tmp_path / "dep", holders=1, counts=[10])
    helper = Aggregator(load_party_config(configs["helper"]))
    params = RoundParams(round_id="t000-aa", iteration=0, length=3, k=1, sigma=0.0,
                         deadline_unix=time.time() + 60)  # fmt: skip
    rnd = Round(params=params, run="r", accounted_sigma=1.0, state="verified")
    rnd.out_shares["ab" * 16] = [1, 0, 0]
    helper.rounds["t000-aa"] = rnd
    twice = [Accepted(report_id="ab" * 16, holder="holder-1")] * 2
    with pytest.raises(HTTPException, match="more than once"):
        helper.commit(CommitRequest(round_id="t000-aa", accepted=twice, rejected=[]))
    assert rnd.state == "verified" and rnd.outcome is None
