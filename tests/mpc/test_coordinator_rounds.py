"""The coordinator's rounds when things fail after the commit (penumbra.mpc.coordinator,
penumbra.mpc.rounds).

The aggregators are a scripted double speaking the coordinator's client interface; what the
real ones do (release one share per iteration, answer again with the same share, 404 for a
round they lost unreleased) is what the double does."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import penumbra.mpc.rounds as rounds
from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger
from penumbra.mpc.coordinator import MPCVoter, MPCVoting, RoundAborted, coordinate
from penumbra.mpc.deploy import init_deployment, load_party_config
from penumbra.mpc.protocol import (
    VOTE_FIELD,
    Accepted,
    AggregateShare,
    RoundOutcome,
    RoundStatus,
    b64,
)
from penumbra.pe.evolve import EvolveSettings
from penumbra.privacy.zcdp import dgauss_epsilon

VOTES = [3, 0, 5]
SETTINGS = EvolveSettings(epsilon=4.0, delta=1e-3, iterations=3, population=(3,), num_outputs=2)
REPORT = "ab" * 16


class ScriptedAggregators:
    """Both aggregators. `script` lists what each aggregate call does, in order, per
    aggregator: "ok" (release, or return the share released before), "down" (unreachable),
    "lost" (404: restarted, never released this round), "tamper" (a share over other
    reports)."""

    def __init__(self, config: Any) -> None:
        self.c = config
        self.sigma = 0.0
        self.opened: list[str] = []
        self.released: dict[tuple[str, str], AggregateShare] = {}
        self.script: dict[str, list[str]] = {"leader": [], "helper": []}

    def healthy(self) -> bool:
        return True

    def call(self, name: str, method: str, path: str, payload: Any = None) -> Any:
        if path == "/rounds/open":
            if name == "leader":
                self.opened.append(payload["params"]["round_id"])
            return {"sigma": self.sigma}
        rid = path.split("/")[2]
        if path.endswith("/status"):
            return RoundStatus(round_id=rid, state="open", uploads={"holder-1": 1}).model_dump()
        if path.endswith("/close"):
            accepted = [Accepted(report_id=REPORT, holder="holder-1")]
            return RoundOutcome(round_id=rid, accepted=accepted, rejected=[]).model_dump()
        assert path.endswith("/aggregate")
        action = self.script[name].pop(0) if self.script[name] else "ok"
        if (name, rid) in self.released:
            return self.released[(name, rid)].model_dump()
        if action == "down":
            raise RoundAborted(f"{name} unreachable (ConnectError)")
        if action == "lost":
            raise RoundAborted(f"{name}: HTTP 404: round unknown here", status=404)
        p = VOTE_FIELD.MODULUS
        mask = [(7919 * (i + 1)) % p for i in range(len(VOTES))]
        vector = (
            [(v + m) % p for v, m in zip(VOTES, mask, strict=True)]
            if name == "leader"
            else [(-m) % p for m in mask]
        )
        share = AggregateShare(
            round_id=rid,
            aggregator=name,
            agg_share=b64(VOTE_FIELD.encode_vec(vector)),
            accepted=[] if action == "tamper" else [REPORT],
            sigma=self.sigma,
            noiseless=False,
        )
        self.released[(name, rid)] = share
        return share.model_dump()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[MPCVoting, ScriptedAggregators, Path]:
    configs = init_deployment(tmp_path / "dep", holders=1, counts=[100])
    voting = MPCVoting(load_party_config(configs["coordinator"]), embedder="")
    aggs = ScriptedAggregators(voting.c)
    voting.aggs = aggs  # type: ignore[assignment]
    return voting, aggs, tmp_path / "run"


def _voter(voting: MPCVoting, aggs: ScriptedAggregators, out: Path) -> tuple[MPCVoter, Ledger]:
    ledger = Ledger.open(out)
    voter = voting.noisy_voter(SETTINGS, ledger, out)
    aggs.sigma = voter.sigma_agg
    voter._wait_for_aggregators = lambda max_wait_s=0: None  # type: ignore[method-assign]
    return voter, ledger


def _rounds(ledger: Ledger) -> list[dict[str, Any]]:
    return [e for _, e in ledger.find("mpc_round")]


EMB = np.zeros((3, 4), dtype=np.float32)


def test_a_round_aborted_after_both_shares_were_released_is_spent(
    setup: tuple[MPCVoting, ScriptedAggregators, Path],
) -> None:
    voting, aggs, out = setup
    aggs.script["helper"] = ["tamper"]
    voter, ledger = _voter(voting, aggs, out)
    with pytest.raises(PenumbraError, match="logged as spent"):
        voter(EMB, 0)
    (entry,) = _rounds(ledger)
    sigma, root_k = voter.sigma_agg, math.sqrt(voting.k)
    assert entry["outcome"] == "aborted" and entry["shares_released"] is True
    assert entry["round_id"] == aggs.opened[0]
    assert entry["epsilon_spent_by_round"] == dgauss_epsilon(sigma, 1, SETTINGS.delta, root_k)
    assert entry["epsilon_spent_by_round"] > 0
    assert entry["cumulative_epsilon"] == entry["epsilon_spent_by_round"]
    assert entry["sigma_per_aggregator"] == sigma and entry["k"] == voting.k
    # Every ε the coordinator computes counts it as a release.
    assert voter.epsilon(0, SETTINGS.delta) == entry["epsilon_spent_by_round"]
    assert voter.epsilon(2, SETTINGS.delta) == dgauss_epsilon(sigma, 3, SETTINGS.delta, root_k)
    # A restarted coordinator meets the same shares: it stops again, logs nothing twice, and
    # never opens another round for the iteration.
    again, ledger = _voter(voting, aggs, out)
    with pytest.raises(PenumbraError, match="logged as spent"):
        again(EMB, 0)
    assert len(_rounds(ledger)) == 1 and len(aggs.opened) == 1


def test_a_round_aborted_before_any_share_is_free(
    setup: tuple[MPCVoting, ScriptedAggregators, Path],
) -> None:
    voting, aggs, out = setup
    aggs.script["leader"] = ["lost"]  # the leader restarted after the commit: nothing released
    voter, ledger = _voter(voting, aggs, out)
    noisy = voter(EMB, 0)
    np.testing.assert_array_equal(noisy, np.array(VOTES) / math.sqrt(voting.k))
    aborted, released = _rounds(ledger)
    assert aborted["outcome"] == "aborted" and aborted["shares_released"] is False
    assert aborted["epsilon_spent_by_round"] == 0.0 and aborted["round_id"] == aggs.opened[0]
    assert released["outcome"] == "released" and released["round_id"] == aggs.opened[1]
    assert voter.epsilon(1, SETTINGS.delta) == released["cumulative_epsilon"]
    assert not list((out / "mpc").glob("*.pending.json"))


def test_a_committed_round_is_completed_never_reopened(
    setup: tuple[MPCVoting, ScriptedAggregators, Path],
) -> None:
    voting, aggs, out = setup
    aggs.script["helper"] = ["down"]  # the leader's share arrived, the helper's did not
    voter, ledger = _voter(voting, aggs, out)
    noisy = voter(EMB, 0)
    np.testing.assert_array_equal(noisy, np.array(VOTES, dtype=float))
    assert len(aggs.opened) == 1  # the same round, completed
    aborted, released = _rounds(ledger)
    assert aborted["shares_released"] is False and aborted["epsilon_spent_by_round"] == 0.0
    assert released["round_id"] == aborted["round_id"] == aggs.opened[0]


def test_a_share_released_by_one_and_lost_by_the_other_stops_the_run(
    setup: tuple[MPCVoting, ScriptedAggregators, Path],
) -> None:
    voting, aggs, out = setup
    aggs.script["helper"] = ["lost"]
    voter, ledger = _voter(voting, aggs, out)
    with pytest.raises(PenumbraError, match="leader released its share.*helper lost"):
        voter(EMB, 0)
    assert len(aggs.opened) == 1 and _rounds(ledger)[0]["shares_released"] is False


def test_a_restarted_coordinator_reuses_the_shares_it_had_fetched(
    setup: tuple[MPCVoting, ScriptedAggregators, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    voting, aggs, out = setup
    voter, ledger = _voter(voting, aggs, out)
    real = rounds.collect_shares

    def collect_then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # both shares fetched ...
        raise KeyboardInterrupt  # ... and the process dies before using them

    with monkeypatch.context() as m:
        m.setattr(rounds, "collect_shares", collect_then_die)  # what run_round calls
        with pytest.raises(KeyboardInterrupt):
            voter(EMB, 0)
    assert len(aggs.released) == 2 and list((out / "mpc").glob("*.pending.json"))
    again, ledger = _voter(voting, aggs, out)
    np.testing.assert_array_equal(again(EMB, 0), np.array(VOTES, dtype=float))
    assert len(aggs.opened) == 1  # the same round's shares: no new round, no new noise
    assert [e["outcome"] for e in _rounds(ledger)] == ["released"]


def test_a_run_config_with_another_k_or_metric_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    configs = init_deployment(tmp_path / "dep", holders=1, counts=[100], k=2)
    for sets, message in (
        (["pe.k=3"], "pe.k=3 but this deployment fixes k=2"),
        (["pe.k=2", "pe.metric=cosine"], "pe.metric='cosine' but this deployment fixes"),
    ):
        with pytest.raises(PenumbraError, match=re.escape(message)):
            coordinate(configs["coordinator"], epsilon=1.0, out=tmp_path / "run", overrides=sets)
    assert not (tmp_path / "run").exists()
