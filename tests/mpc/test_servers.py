"""Multi-process rounds on loopback: two aggregator processes, five holder processes (two
honest, one late, one invalid, one replaying), the test process as coordinator.

The aggregators here run the test-only noiseless config so that a round can be compared with
the plain sum; the noisy path runs in `penumbra mpc demo` (see bench/results/mpc.md)."""

from __future__ import annotations

import base64
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from scipy.stats import chisquare

from penumbra.ledger.note import parse_vkey, verify_signed_note
from penumbra.mpc.coordinator import MPCVoting, RoundAborted, run_round
from penumbra.mpc.demo import free_ports
from penumbra.mpc.deploy import PartyConfig, init_deployment, load_party_config
from penumbra.mpc.holder import integer_votes, make_report
from penumbra.mpc.protocol import MAX_UPLOAD_BYTES, VOTE_FIELD, max_upload_bytes, vdaf_for
from penumbra.mpc.tls import client_context, http_client
from penumbra.pe.evolve import EvolveSettings

COUNTS = [40, 30, 20, 20, 20]
FAULTS = ["", "", "late", "invalid", "replay"]
DIM = 8
BITS = 8
BUDGET = {"epsilon": 4.0, "delta": 1e-3, "iterations": 3, "k": 1}


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        leader, helper, coordinator = free_ports(3)
        init_deployment(
            root / "dep",
            holders=len(COUNTS),
            counts=COUNTS,
            bits=BITS,
            round_deadline_s=6.0,
            ports={"leader": leader, "helper": helper, "coordinator": coordinator},
            max_epsilon=50.0,  # several runs of ε = 4 below; the budget itself: test_policy
            extra={"test_noiseless": True, "poll_s": 0.1},
        )
        rng = np.random.default_rng(0)
        self.private = []
        for i, n in enumerate(COUNTS):
            emb = rng.normal(size=(n, DIM)).astype(np.float32)
            np.save(root / f"holder-{i + 1}.npy", emb)
            self.private.append(emb)
        self.coordinator = load_party_config(root / "dep" / "coordinator" / "config.json")

    def config(self, name: str) -> Path:
        return self.root / "dep" / name / "config.json"

    def start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "penumbra", "mpc", *args], stdout=log, stderr=subprocess.STDOUT
        )

    def start_aggregator(self, name: str) -> None:
        self.start(name, "aggregator", "--config", str(self.config(name)))

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, MPCVoting]]:
    d = Deployment(tmp_path_factory.mktemp("mpc"))
    voting: MPCVoting | None = None
    try:
        d.start_aggregator("leader")
        d.start_aggregator("helper")
        for i, fault in enumerate(FAULTS):
            name = f"holder-{i + 1}"
            args = [
                "holder",
                "--private",
                str(d.root / f"{name}.npy"),
                "--config",
                str(d.config(name)),
            ]
            d.start(name, *args, *(["--fault", fault] if fault else []))
        voting = MPCVoting(d.coordinator, embedder="", allow_noiseless=True)
        voting.start()
        deadline = time.monotonic() + 60
        while not voting.aggs.healthy() or not all(
            "ready" in (d.root / f"holder-{i + 1}.log").read_text(errors="replace")
            for i in range(len(COUNTS))
        ):
            assert time.monotonic() < deadline, "parties did not start"
            time.sleep(0.2)
        yield d, voting
    finally:
        if voting is not None:
            voting.finish()
        d.stop_all()


def _clear_sum(d: Deployment, holders: list[str], candidates: np.ndarray) -> np.ndarray:
    total = np.zeros(len(candidates), dtype=np.int64)
    for name in holders:
        i = int(name.split("-")[1]) - 1
        total += np.array(integer_votes(d.private[i], candidates, 1, BITS))
    return total


def _round(voting: MPCVoting, run: str, iteration: int, candidates: np.ndarray):  # type: ignore[no-untyped-def]
    return run_round(
        voting.aggs,
        voting.board,
        run=run,
        iteration=iteration,
        embeddings=candidates,
        budget=BUDGET,
        sigma=0.0,
        allow_noiseless=True,
    )


def test_round_with_faults_equals_plain_sum_of_accepted(dep: tuple[Deployment, MPCVoting]) -> None:
    d, voting = dep
    candidates = np.random.default_rng(1).normal(size=(30, DIM)).astype(np.float32)
    result = _round(voting, "run-faults", 0, candidates)
    accepted = sorted(a.holder for a in result.outcome.accepted)
    assert accepted == ["holder-1", "holder-2", "holder-5"]
    assert result.missing == ["holder-3"]  # late: left out, the round went on
    reasons = {(r.holder, r.reason.split(":")[0]) for r in result.outcome.rejected}
    assert ("holder-4", "invalid report") in reasons  # named in the outcome
    assert ("holder-5", "replayed report (id or nonce seen before)") in reasons
    expected = _clear_sum(d, accepted, candidates)
    np.testing.assert_array_equal(result.noisy.astype(np.int64), expected)

    # Second round: holder-5 also replays its round-1 report; still refused, sum still exact.
    candidates2 = np.random.default_rng(2).normal(size=(30, DIM)).astype(np.float32)
    result2 = _round(voting, "run-faults", 1, candidates2)
    replays = [r for r in result2.outcome.rejected if r.holder == "holder-5"]
    assert len(replays) >= 2 and all("replayed" in r.reason for r in replays)
    np.testing.assert_array_equal(
        result2.noisy.astype(np.int64),
        _clear_sum(d, sorted(a.holder for a in result2.outcome.accepted), candidates2),
    )


def test_an_iteration_is_released_once(dep: tuple[Deployment, MPCVoting]) -> None:
    _, voting = dep
    candidates = np.random.default_rng(3).normal(size=(5, DIM)).astype(np.float32)
    _round(voting, "run-once", 0, candidates)
    with pytest.raises(RoundAborted, match="released"):
        _round(voting, "run-once", 0, candidates)


def test_unauthenticated_and_wrong_role_refused(
    dep: tuple[Deployment, MPCVoting], tmp_path: Path
) -> None:
    d, _ = dep
    c = d.coordinator
    url = c.leader_url + "/health"
    anonymous = ssl.create_default_context(cafile=str(c.path(c.ca)))
    with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake fails
        httpx.Client(verify=anonymous, timeout=5).get(url)
    other = init_deployment(tmp_path / "other", holders=1)  # a certificate from another CA
    o = load_party_config(other["coordinator"])
    foreign = client_context(c.path(c.ca), o.path(o.cert), o.path(o.key))
    with pytest.raises(httpx.HTTPError):
        http_client(foreign, connect=5, read=5).get(url)
    h = load_party_config(d.config("holder-1"))
    holder = http_client(client_context(h.path(h.ca), h.path(h.cert), h.path(h.key)))
    response = holder.post(c.leader_url + "/rounds/open", json={})
    assert response.status_code == 403  # a holder may not open rounds
    response = holder.post(c.helper_url + "/rounds/x/verify", json={})
    assert response.status_code == 403  # refused before its body is even read


def test_uploads_are_binary_bounded_and_checked(dep: tuple[Deployment, MPCVoting]) -> None:
    """JSON is refused, an oversized report is refused before it is read, a damaged frame is
    refused with the field named, and nothing of it is stored."""
    d, _ = dep
    h = load_party_config(d.config("holder-1"))
    holder = http_client(client_context(h.path(h.ca), h.path(h.cert), h.path(h.key)))
    leader_upload, _ = make_report(h, "r-binary", [1, 2, 3], 6)
    url = d.coordinator.leader_url + "/upload"
    frame = leader_upload.encode()
    assert holder.post(url, json={"round_id": "r-binary"}).status_code == 415
    binary = {"content-type": "application/octet-stream"}
    limit = max_upload_bytes(load_party_config(d.config("leader")))
    assert len(frame) < limit < MAX_UPLOAD_BYTES  # this deployment's largest honest report
    oversized = holder.post(url, content=bytes(limit + 1), headers=binary)
    assert oversized.status_code == 413
    reply = holder.post(url, content=frame[:-1], headers=binary).json()
    assert reply == {"accepted": False, "reason": "malformed report: input share cut short"}
    reply = holder.post(url, content=frame, headers=binary).json()
    assert reply == {"accepted": False, "reason": "round is not open"}  # well formed, no round


def _bytes_uniform(data: bytes) -> float:
    """Chi-square p-value of the 4-bit nibbles being uniform (16 bins: the test is valid from
    ~80 nibbles on, where whole bytes would need ~1300 bytes for 5 expected per bin)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    nibbles = np.concatenate([raw & 0x0F, raw >> 4])
    counts = np.bincount(nibbles, minlength=16)
    return float(chisquare(counts).pvalue)


def test_shares_look_uniform_and_no_clear_vector_leaks(dep: tuple[Deployment, MPCVoting]) -> None:
    d, _ = dep
    h = load_party_config(d.config("holder-1"))
    votes = [0] * 400
    votes[7] = 40  # a very non-uniform vector
    leader_upload, helper_upload = make_report(h, "r-uniform", votes, 40)
    leader_share = leader_upload.input_share
    # Chi-square on byte frequencies of the leader's measurement share (uniform field elements,
    # bias ~2^-62): with fresh randomness, a false failure at p < 1e-4 has rate 1e-4.
    meas_len = vdaf_for(400, BITS, 40).valid.MEAS_LEN
    assert _bytes_uniform(leader_share[: meas_len * VOTE_FIELD.ENCODED_SIZE]) > 1e-4
    assert len(helper_upload.input_share) == 64  # two XOF seeds, nothing else
    # Nothing an aggregator logged or stored contains a holder's clear vector.
    candidates = np.random.default_rng(1).normal(size=(30, DIM)).astype(np.float32)
    needles = []
    for emb in d.private:
        clear = integer_votes(emb, candidates, 1, BITS)
        needles += [
            json.dumps(clear),
            str(clear),
            base64.b64encode(VOTE_FIELD.encode_vec(clear)).decode(),
        ]
    for name in ("leader", "helper"):
        blobs = [(d.root / f"{name}.log").read_text(errors="replace")]
        state = d.root / "dep" / name / "state"
        blobs += [p.read_text(errors="replace") for p in state.rglob("*") if p.is_file()]
        for blob in blobs:
            assert not any(n in blob for n in needles)
        released = [json.loads(p.read_text()) for p in (state / "released").glob("*.json")]
        shares = b"".join(base64.b64decode(r["agg_share"]) for r in released)
        assert len(shares) > 400 and _bytes_uniform(shares) > 1e-4  # one share alone: uniform


def test_aggregator_killed_mid_round_aborts_then_retries(
    dep: tuple[Deployment, MPCVoting], tmp_path: Path
) -> None:
    d, voting = dep
    settings = EvolveSettings(
        epsilon=4.0, delta=1e-3, iterations=3, population=(10,), num_outputs=2
    )
    ledger = voting.open_ledger(tmp_path, None)
    voter = voting.noisy_voter(settings, ledger, tmp_path)
    candidates = np.random.default_rng(4).normal(size=(12, DIM)).astype(np.float32)
    out: dict[str, np.ndarray] = {}
    thread = threading.Thread(target=lambda: out.update(noisy=voter(candidates, 0)))
    thread.start()
    deadline = time.monotonic() + 30
    while not voting.board.get().open:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d.kill("helper")
    time.sleep(1.5)
    d.start_aggregator("helper")
    thread.join(timeout=90)
    assert not thread.is_alive()
    rounds = [e for _, e in ledger.find("mpc_round")]
    assert rounds[0]["outcome"] == "aborted" and rounds[0]["epsilon_spent_by_round"] == 0.0
    assert rounds[0]["shares_released"] is False  # killed before the commit: nothing out
    assert rounds[-1]["outcome"] == "released" and rounds[-1]["attempt"] >= 2
    accepted = sorted(a["holder"] for a in rounds[-1]["accepted"])
    np.testing.assert_array_equal(out["noisy"], _clear_sum(d, accepted, candidates))
    # Only the retried round was released, and booked, by the leader for this iteration.
    book = json.loads((d.root / "dep" / "leader" / "state" / "budget.json").read_text())
    released = book["runs"][ledger.origin]["released"]
    assert list(released) == ["0"] and released["0"]["round_id"] == rounds[-1]["round_id"]
    # Both aggregators co-signed every checkpoint.
    for vkey in d.coordinator.aggregator_vkeys.values():
        for path in (tmp_path / "ledger" / "checkpoints").glob("*"):
            verify_signed_note(path.read_text(), parse_vkey(vkey))
    # A restarted coordinator reuses the finished round instead of drawing new noise.
    again = MPCVoting.__new__(MPCVoting)
    again.__dict__.update(voting.__dict__)
    resumed = again.noisy_voter(settings, ledger, tmp_path)
    np.testing.assert_array_equal(resumed(candidates, 0), out["noisy"])


def test_party_config_is_what_init_wrote(dep: tuple[Deployment, MPCVoting]) -> None:
    d, _ = dep
    assert isinstance(d.coordinator, PartyConfig)
    assert [h.declared_count for h in d.coordinator.holders] == COUNTS
