"""A secure-voting round under load: many holders upload to the two aggregators at once.

Real parties on loopback over mutual TLS: the two aggregators are processes, the coordinator
and the holders run in this process (holders as threads, each with its own certificate and
HTTPS client, as `penumbra mpc holder` runs them). Some holders misbehave: `invalid` (a proof
that fails), `replay` (the same report twice), `late` (after the deadline) and `malformed`
(bytes that are no report frame, then its real report). The round must count every valid
report exactly once and
refuse every invalid one by name; nothing may crash. Used by the tests (small) and
`bench/mpc.py` (100 holders × 10k candidates). The aggregators run the test-only noiseless
config so the result can be compared with the clear sum; noise is measured separately.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from penumbra.mpc.coordinator import MPCVoting
from penumbra.mpc.demo import Parties, cli_command, free_ports
from penumbra.mpc.deploy import init_deployment, load_party_config
from penumbra.mpc.holder import Holder, integer_votes
from penumbra.mpc.protocol import UPLOAD_MEDIA_TYPE, Announcement
from penumbra.mpc.rounds import RoundResult, run_round

FAULT_KINDS = ("invalid", "replay", "late", "malformed")


@dataclass(frozen=True)
class LoadResult:
    result: RoundResult
    expected: np.ndarray  # the clear sum of the reports that should count
    honest: list[str]  # holders whose report must be accepted (replayers included: once)
    faulty: dict[str, str]  # holder → fault
    malformed_replies: list[str]  # what the aggregators answered the malformed uploads
    seconds: float  # round opened → both shares collected


def _faults(holders: int, faults: dict[str, int]) -> list[str]:
    """Fault per holder index: the faulty ones spread over the list, the rest honest."""
    out = [""] * holders
    kinds = [k for k, n in faults.items() for _ in range(n)]
    if len(kinds) > holders:
        raise ValueError("more faulty holders than holders")
    step = holders // max(1, len(kinds))
    for i, kind in enumerate(kinds):
        out[i * step] = kind
    return out


def load_round(
    root: Path,
    *,
    holders: int,
    candidates: int,
    faults: dict[str, int],
    bits: int = 16,
    declared: int = 100,
    dim: int = 8,
    deadline_s: float = 20.0,
    max_reports_in_flight: int = 8,
    progress: Callable[[str], None] = lambda _: None,
) -> LoadResult:
    unknown = set(faults) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {FAULT_KINDS}")
    leader_port, helper_port, coordinator_port = free_ports(3)
    configs = init_deployment(
        root / "dep",
        holders=holders,
        counts=[declared] * holders,
        bits=bits,
        round_deadline_s=deadline_s,
        ports={"leader": leader_port, "helper": helper_port, "coordinator": coordinator_port},
        max_epsilon=50.0,
        extra={
            "test_noiseless": True,
            "poll_s": 0.1,
            "max_reports_in_flight": max_reports_in_flight,
            "max_candidates": max(candidates, 1),
        },
    )
    rng = np.random.default_rng(0)
    private = [rng.normal(size=(declared, dim)).astype(np.float32) for _ in range(holders)]
    embeddings = rng.normal(size=(candidates, dim)).astype(np.float32)
    fault_of = _faults(holders, faults)
    names = [f"holder-{i + 1}" for i in range(holders)]

    parties = Parties(root)
    voting: MPCVoting | None = None
    try:
        for name in ("leader", "helper"):
            parties.start(name, cli_command("aggregator", "--config", str(configs[name])))
        voting = MPCVoting(load_party_config(configs["coordinator"]), embedder="",
                           allow_noiseless=True)  # fmt: skip
        voting.start()
        start_deadline = time.monotonic() + 60
        while not voting.aggs.healthy():
            if time.monotonic() > start_deadline:
                raise RuntimeError(f"aggregators did not start; see {root}/leader.log")
            time.sleep(0.2)
        progress("aggregators up")

        threads: list[threading.Thread] = []
        malformed_replies: list[str] = []
        lock = threading.Lock()
        for i, name in enumerate(names):
            config = load_party_config(configs[name])
            kind = fault_of[i]
            holder = Holder(config, _fixed_embeddings(private[i]),
                            fault="" if kind == "malformed" else kind)  # fmt: skip
            if kind == "malformed":  # garbage first (as if damaged in transit), then its report
                target: Callable[[], object] = _garbage_then(
                    holder, voting, malformed_replies, lock
                )
            else:
                target = _run(holder)
            threads.append(threading.Thread(target=target, daemon=True))
        for thread in threads:
            thread.start()
        opened = time.monotonic()

        total = holders * declared
        delta = 1.0 / (total * math.log(total))  # the most the aggregators allow
        result = run_round(
            voting.aggs, voting.board, run="load", iteration=0, embeddings=embeddings,
            budget={"epsilon": 4.0, "delta": delta, "iterations": 1, "k": 1}, sigma=0.0,
            allow_noiseless=True,
        )  # fmt: skip
        seconds = time.monotonic() - opened
        progress(f"round done in {seconds:.1f} s")
    finally:
        if voting is not None:
            voting.finish()
        parties.stop_all()
    honest = [n for n, k in zip(names, fault_of, strict=True) if k in ("", "replay", "malformed")]
    expected = np.zeros(candidates, dtype=np.int64)
    for i, name in enumerate(names):
        if name in honest:
            expected += np.array(integer_votes(private[i], embeddings, 1, bits), dtype=np.int64)
    return LoadResult(
        result=result,
        expected=expected,
        honest=honest,
        faulty={n: k for n, k in zip(names, fault_of, strict=True) if k},
        malformed_replies=malformed_replies,
        seconds=seconds,
    )


def _fixed_embeddings(embeddings: np.ndarray) -> Callable[[Announcement], np.ndarray]:
    return lambda _announcement: embeddings


def _run(holder: Holder) -> Callable[[], object]:
    return lambda: holder.run(max_idle_s=30)


def _garbage_then(
    holder: Holder, voting: MPCVoting, replies: list[str], lock: threading.Lock
) -> Callable[[], object]:
    """Wait for the round, send both aggregators bytes that are no report frame, then answer
    the round as an honest holder."""

    def go() -> object:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not voting.board.get().open:
            time.sleep(0.05)
        config = holder.c
        for url in (config.leader_url, config.helper_url):
            response = holder.client.post(f"{url}/upload", content=b"\x07not a report" * 9,
                                          headers={"content-type": UPLOAD_MEDIA_TYPE})  # fmt: skip
            with lock:
                replies.append(str(response.json().get("reason", response.status_code)))
        return holder.run(max_idle_s=30)

    return go
