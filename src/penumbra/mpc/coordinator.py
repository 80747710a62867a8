"""The coordinator (model owner): runs PE, publishes candidates, unshards noisy aggregates.

It plugs into `synthesize` as its `ExternalVoting`: the PE loop is unchanged, and its voter is
`MPCVoter`, which per iteration opens a round at both aggregators, announces the candidates'
embeddings to the holders (GET /round), waits for every holder or the deadline, has the leader
verify and commit, and adds the two noisy aggregate shares. It never receives a vote vector or
an input share. Any aggregator failure aborts the round before anything is released — no
release, no ε — and the round is retried as a new round once both aggregators answer again.
Each finished round is written durably (and logged) before the engine uses it, so a restarted
coordinator reuses it instead of drawing new noise. Every ledger checkpoint is co-signed by
both aggregators.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request

from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger, LedgerError, canonical
from penumbra.ledger.merkle import root_from_hashes
from penumbra.ledger.note import Checkpoint
from penumbra.mpc.accounting import ACCOUNTANT, dgauss_epsilon, dgauss_sigma, total_sigma
from penumbra.mpc.deploy import AGGREGATORS, PartyConfig
from penumbra.mpc.field import Field128
from penumbra.mpc.protocol import (
    AggregateShare,
    Announcement,
    CosignReply,
    CosignRequest,
    RoundOutcome,
    RoundParams,
    RoundStatus,
    b64,
    encode_embeddings,
    new_round_id,
    unb64,
)
from penumbra.mpc.tls import (
    BackgroundServer,
    client_context,
    http_client,
    require_peer,
    server_config,
)
from penumbra.pe.evolve import EvolveSettings

log = logging.getLogger("penumbra.mpc.coordinator")


class RoundAborted(RuntimeError):
    """An aggregator failed or disagreed: nothing of this round was released."""


@dataclass
class RoundResult:
    round_id: str
    noisy: np.ndarray  # integer votes + both aggregators' noise
    outcome: RoundOutcome
    present: list[str]
    missing: list[str]
    sigma: float


class Board:
    """What holders see: the open round's announcement, swapped atomically."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = Announcement(open=False)

    def set(self, ann: Announcement) -> None:
        with self.lock:
            self.current = ann

    def get(self) -> Announcement:
        with self.lock:
            return self.current


def board_app(board: Board, holders: tuple[str, ...]) -> FastAPI:
    app = FastAPI(title="penumbra coordinator", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/round")
    def current_round(request: Request) -> Announcement:
        require_peer(request, ("holder",), holders)
        return board.get()

    return app


class Aggregators:
    """HTTPS calls from the coordinator to the leader and helper, all with timeouts."""

    def __init__(self, config: PartyConfig) -> None:
        self.c = config
        ctx = client_context(
            config.path(config.ca), config.path(config.cert), config.path(config.key)
        )
        self.client = http_client(
            ctx, connect=config.timeouts.connect_s, read=config.timeouts.read_s
        )
        self.urls = {"leader": config.leader_url, "helper": config.helper_url}

    def call(self, name: str, method: str, path: str, payload: Any = None) -> Any:
        try:
            response = self.client.request(method, self.urls[name] + path, json=payload)
        except httpx.HTTPError as e:
            raise RoundAborted(f"{name} unreachable ({type(e).__name__})") from None
        if response.status_code != 200:
            raise RoundAborted(f"{name}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def healthy(self) -> bool:
        try:
            return all(self.call(n, "GET", "/health") for n in AGGREGATORS)
        except RoundAborted:
            return False


def run_round(
    aggs: Aggregators,
    board: Board,
    *,
    run: str,
    iteration: int,
    embeddings: np.ndarray,
    budget: dict[str, Any],
    sigma: float,
    embedder: str = "",
    metric: str = "l2",
    allow_noiseless: bool = False,
) -> RoundResult:
    """One secure-aggregation round; RoundAborted (before any release) if anything fails."""
    c = aggs.c
    round_id = new_round_id(iteration)
    deadline = time.time() + c.round_deadline_s
    params = RoundParams(
        round_id=round_id,
        iteration=iteration,
        length=len(embeddings),
        k=int(budget["k"]),
        sigma=sigma,
        deadline_unix=deadline,
    )
    used = {}
    for name in AGGREGATORS:
        reply = aggs.call(
            name,
            "POST",
            "/rounds/open",
            {"params": params.model_dump(), "run": run, "budget": budget},
        )
        used[name] = float(reply["sigma"])
    data, shape = encode_embeddings(embeddings)
    board.set(
        Announcement(
            open=True,
            round_id=round_id,
            iteration=iteration,
            length=len(embeddings),
            k=params.k,
            metric=metric,
            deadline_unix=deadline,
            embeddings=data,
            shape=shape,
            embedder=embedder,
        )
    )
    holders = [h.name for h in c.holders]
    try:
        while True:
            uploads = [
                RoundStatus.model_validate(aggs.call(n, "GET", f"/rounds/{round_id}/status"))
                for n in AGGREGATORS
            ]
            present = [h for h in holders if all(u.uploads.get(h) for u in uploads)]
            if len(present) == len(holders) or time.time() > deadline:
                break
            time.sleep(c.poll_s)
    finally:
        board.set(Announcement(open=False))
    missing = [h for h in holders if h not in present]
    outcome = RoundOutcome.model_validate(aggs.call("leader", "POST", f"/rounds/{round_id}/close"))
    shares = [
        AggregateShare.model_validate(aggs.call(n, "GET", f"/rounds/{round_id}/aggregate"))
        for n in AGGREGATORS
    ]
    ids = sorted(a.report_id for a in outcome.accepted)
    for share in shares:
        if sorted(share.accepted) != ids:
            raise RoundAborted(f"{share.aggregator} aggregated other reports than the leader")
        if share.noiseless and not allow_noiseless:
            raise RoundAborted(f"{share.aggregator} added no noise (a test-only config)")
        if not share.noiseless and share.sigma < sigma:
            raise RoundAborted(f"{share.aggregator} used σ={share.sigma} < {sigma}")
    p = Field128.MODULUS
    vectors = [Field128.decode_vec(unb64(s.agg_share)) for s in shares]
    if any(len(v) != len(embeddings) for v in vectors):
        raise RoundAborted("aggregate share of the wrong length")
    total = [(a + b) % p for a, b in zip(vectors[0], vectors[1], strict=True)]
    noisy = Field128.to_signed(total).astype(np.float64)
    return RoundResult(round_id, noisy, outcome, present, missing, min(used.values()))


class CoSignedLedger(Ledger):
    """A ledger whose every checkpoint also carries both aggregators' signatures."""

    cosigners: Aggregators | None = None
    known: dict[str, int]

    def checkpoint(self) -> Path:
        if self.cosigners is None:
            return super().checkpoint()
        lines = self.entries_path.read_bytes().split(b"\n")[:-1] if self.size else []
        cp = Checkpoint(self.origin, self.size, root_from_hashes(self._hashes))
        body = cp.body()
        signatures = self.signer.sign(body)
        known = getattr(self, "known", None) or {n: 0 for n in AGGREGATORS}
        self.known = known
        for name in AGGREGATORS:
            signatures += self._cosign(name, cp, lines)
        path = self.dir / "checkpoints" / f"{self.size:08d}"
        atomic_write_bytes(path, (body + "\n" + signatures).encode("utf-8"))
        return path

    def _cosign(self, name: str, cp: Checkpoint, lines: list[bytes]) -> str:
        assert self.cosigners is not None
        for _ in range(3):
            start = self.known[name]
            request = CosignRequest(
                origin=cp.origin,
                size=cp.size,
                root=b64(cp.root),
                start=start,
                entries=[line.decode("utf-8") for line in lines[start:]],
            )
            deadline = time.monotonic() + 120
            while True:
                try:
                    reply = CosignReply.model_validate(
                        self.cosigners.call(name, "POST", "/cosign", request.model_dump())
                    )
                    break
                except RoundAborted as e:
                    if time.monotonic() > deadline:
                        raise LedgerError(
                            f"checkpoint {cp.size}: {name} did not co-sign: {e}"
                        ) from None
                    time.sleep(1.0)
            if reply.need_from >= 0:
                self.known[name] = reply.need_from
                continue
            self.known[name] = cp.size
            return reply.signature
        raise LedgerError(f"checkpoint {cp.size}: {name} keeps asking for other entries")


class MPCVoting:
    """`ExternalVoting` for `synthesize`: secure aggregation over the deployment's holders."""

    def __init__(
        self,
        config: PartyConfig,
        *,
        embedder: str,
        k: int = 1,
        metric: str = "l2",
        allow_noiseless: bool = False,
    ) -> None:
        """`allow_noiseless` is for tests of test-only noiseless aggregators, never a run."""
        self.c = config
        self.allow_noiseless = allow_noiseless
        self.n_private = sum(h.declared_count for h in config.holders)
        self.embedder = embedder
        self.k = k
        self.metric = metric
        self.aggs = Aggregators(config)
        self.board = Board()
        holders = tuple(h.name for h in config.holders)
        self.server = BackgroundServer(
            server_config(
                board_app(self.board, holders),
                host=config.host,
                port=config.port,
                ca=config.path(config.ca),
                cert=config.path(config.cert),
                key=config.path(config.key),
            )
        )

    def start(self) -> None:
        self.server.start()

    def finish(self) -> None:
        """Tell the holders the run is over, give them a moment to see it, stop serving."""
        self.board.set(Announcement(open=False, finished=True))
        time.sleep(max(1.0, 3 * self.c.poll_s))
        self.server.stop()

    def open_ledger(self, out: Path, signing_key: Path | None) -> Ledger:
        ledger = CoSignedLedger.open(out, signing_key=signing_key)
        assert isinstance(ledger, CoSignedLedger)
        ledger.cosigners = self.aggs
        vkeys = "".join(f"{self.c.aggregator_vkeys[n]}\n" for n in AGGREGATORS)
        atomic_write_bytes(out / "ledger" / "cosigners", vkeys.encode("utf-8"))
        if ledger.size:  # resumed: make sure the last entries carry co-signed checkpoints
            ledger.checkpoint()
        return ledger

    def noisy_voter(self, settings: EvolveSettings, ledger: Ledger, out: Path) -> MPCVoter:
        sigma_agg = dgauss_sigma(
            settings.epsilon, settings.delta, settings.iterations, sensitivity=math.sqrt(self.k)
        )
        per_candidate = self.n_private / max(settings.sizes())
        noise = total_sigma(sigma_agg) / math.sqrt(self.k)
        if per_candidate < noise:
            raise PenumbraError(
                f"ε={settings.epsilon:g} is too small for N={self.n_private} across "
                f"{len(self.c.holders)} holders: the two aggregators' noise (σ={noise:.3g} in "
                f"total) exceeds the {per_candidate:.1f} votes a candidate expects; use a larger "
                "--epsilon, fewer candidates (pe.population) or fewer pe.iterations"
            )
        return MPCVoter(self, settings, ledger, out, sigma_agg)


class MPCVoter:
    """The engine's `NoisyVoter`: ε from ONE aggregator's σ (either honest one suffices)."""

    def __init__(
        self,
        voting: MPCVoting,
        settings: EvolveSettings,
        ledger: Ledger,
        out: Path,
        sigma_agg: float,
    ) -> None:
        self.v = voting
        self.settings = settings
        self.ledger = ledger
        self.folder = out / "mpc"
        self.sigma_agg = sigma_agg
        self.sigma = sigma_agg / math.sqrt(voting.k)  # histogram units (votes / √k)
        self.budget = {
            "epsilon": settings.epsilon,
            "delta": settings.delta,
            "iterations": settings.iterations,
            "k": voting.k,
        }

    def epsilon(self, steps: int, delta: float) -> float:
        return dgauss_epsilon(self.sigma_agg, steps, delta, math.sqrt(self.v.k))

    def _setup(self) -> None:
        if list(self.ledger.find("mpc_setup")):
            return
        c = self.v.c
        self.ledger.append(
            "mpc_setup",
            {
                "accountant": ACCOUNTANT,
                "deployment": c.deployment,
                "protocol": "Prio3L1BoundedSumVec",
                "bits": c.bits,
                "k": self.v.k,
                "sigma_per_aggregator": self.sigma_agg,
                "sigma_total": total_sigma(self.sigma_agg),
                "holders": [h.model_dump() for h in c.holders],
                "aggregator_vkeys": [c.aggregator_vkeys[n] for n in AGGREGATORS],
                "round_deadline_s": c.round_deadline_s,
            },
        )

    def __call__(self, embeddings: np.ndarray, iteration: int) -> np.ndarray:
        self._setup()
        digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype="<f4").tobytes()).hexdigest()
        path = self.folder / f"round-{iteration:03d}.json"
        if path.exists():  # finished before a restart: reuse, never re-noise
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["embeddings_sha256"] != digest:
                raise PenumbraError(f"{path}: saved round does not match iteration {iteration}")
            return np.asarray(saved["noisy"], dtype=np.float64) / math.sqrt(self.v.k)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = run_round(
                    self.v.aggs,
                    self.v.board,
                    run=self.ledger.origin,
                    iteration=iteration,
                    embeddings=embeddings,
                    budget=self.budget,
                    sigma=self.sigma_agg,
                    embedder=self.v.embedder,
                    metric=self.v.metric,
                    allow_noiseless=self.v.allow_noiseless,
                )
                break
            except RoundAborted as e:
                log.warning("iteration %d attempt %d aborted: %s", iteration, attempt, e)
                self.ledger.append(
                    "mpc_round",
                    {
                        "iteration": iteration,
                        "attempt": attempt,
                        "outcome": "aborted",
                        "reason": str(e),
                        "epsilon_spent_by_round": 0.0,
                    },
                )
                if attempt >= 20:
                    raise PenumbraError(
                        f"iteration {iteration}: {attempt} rounds aborted; last: {e}"
                    ) from None
                self._wait_for_aggregators()
        record = {
            "iteration": iteration,
            "attempt": attempt,
            "round_id": result.round_id,
            "outcome": "released",
            "embeddings_sha256": digest,
            "length": len(embeddings),
            "bits": self.v.c.bits,
            "k": self.v.k,
            "sigma_per_aggregator": result.sigma,
            "accepted_ids": sorted(a.report_id for a in result.outcome.accepted),
            "accepted": [a.model_dump() for a in result.outcome.accepted],
            "rejected": _unique([r.model_dump() for r in result.outcome.rejected]),
            "holders_present": result.present,
            "holders_missing": result.missing,
            "noisy": [int(v) for v in result.noisy],
            "cumulative_epsilon": self.epsilon(iteration + 1, self.settings.delta),
        }
        atomic_write_bytes(path, json.dumps(record).encode("utf-8"))  # durable before use
        self.ledger.append(
            "mpc_round",
            {k: v for k, v in record.items() if k != "noisy"}
            | {"noisy_histogram": record["noisy"]},
        )
        return result.noisy / math.sqrt(self.v.k)

    def _wait_for_aggregators(self, max_wait_s: float = 600.0) -> None:
        deadline = time.monotonic() + max_wait_s
        while not self.v.aggs.healthy():
            if time.monotonic() > deadline:
                raise PenumbraError("an aggregator stayed unreachable; restart it, then resume")
            time.sleep(1.0)


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[bytes] = set()
    out = []
    for row in rows:
        key = canonical(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def coordinate(
    config_path: Path | str,
    *,
    epsilon: float | None,
    out: Path | str,
    run_config: Any = None,
    overrides: list[str] | None = None,
    console: Any = None,
) -> Any:
    """Run (or resume, when `out` holds one) a multi-holder PE run as the coordinator.

    `run_config` is a RunConfig, a YAML path, or None for the demo's settings."""
    from penumbra.config import load_config
    from penumbra.mpc.deploy import load_party_config
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import synthesize

    config = load_party_config(config_path, "coordinator")
    out = Path(out)
    resume = (out / "run.yaml").exists()
    if resume:
        cfg = load_config(out / "run.yaml")
    elif run_config is None:
        if epsilon is None:
            raise PenumbraError("--epsilon is required for a new run")
        cfg = demo_config(epsilon)
    else:
        cfg = run_config if not isinstance(run_config, (str, Path)) else load_config(run_config)
    if cfg.modality != "image" or cfg.voting != "image":
        raise PenumbraError("penumbra mpc supports modality=image with voting=image only")
    voting = MPCVoting(config, embedder=cfg.models.image_embedder, k=cfg.pe.k, metric=cfg.pe.metric)
    voting.start()
    try:
        return synthesize(
            None,
            None if resume else epsilon,
            out=out,
            config=None if resume else cfg,
            overrides=overrides or [],
            resume=resume,
            console=console,
            external=voting,
        )
    finally:
        voting.finish()
