"""One secure-aggregation round, as the coordinator runs it: open it at both aggregators,
announce the candidates to the holders (GET /round on the `Board`), wait for every holder or
the deadline, have the leader verify and commit, then collect the two noisy aggregate shares.

Until both aggregators committed the round nothing can be released, so a failure there costs
no ε. From the commit on, each aggregator may release its share, at most one per (run,
iteration), and answers again with the same share: `collect_shares` can be called again for a
committed round, and tells in `RoundAborted` which shares arrived and which aggregator lost
the round unreleased. What the coordinator does next is `MPCVoter.__call__`'s decision
(penumbra.mpc.coordinator).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from penumbra.mpc.deploy import AGGREGATORS, PartyConfig
from penumbra.mpc.protocol import (
    VOTE_FIELD,
    AggregateShare,
    Announcement,
    RoundOutcome,
    RoundParams,
    RoundStatus,
    encode_embeddings,
    new_round_id,
    unb64,
)
from penumbra.mpc.tls import client_context, http_client, require_peer


class RoundAborted(RuntimeError):
    """A round that produced no release the engine may use.

    `released` names the aggregators whose noisy share the coordinator received: when it is
    both (`shares_released`), the noisy histogram was out, so the round spent ε like a release
    even though it is not used. `lost` names the aggregators that answered (404) that they no
    longer hold the round and never released it. `status` is the HTTP status, if any."""

    def __init__(
        self,
        message: str,
        *,
        round_id: str = "",
        status: int = 0,
        released: tuple[str, ...] = (),
        lost: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.round_id = round_id
        self.status = status
        self.released = released
        self.lost = lost

    @property
    def shares_released(self) -> bool:
        return set(self.released) == set(AGGREGATORS)


class CommittedRound(BaseModel):
    """A round both aggregators committed: from here on they may release its shares, so the
    coordinator keeps it (mpc/round-TTT.pending.json) until it is used."""

    model_config = ConfigDict(extra="forbid")
    round_id: str
    iteration: int
    length: int
    outcome: RoundOutcome
    present: list[str]
    missing: list[str]
    sigma: float  # the smaller σ the two aggregators said they use
    embeddings_sha256: str = ""


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
            raise RoundAborted(
                f"{name}: HTTP {response.status_code}: {response.text[:200]}",
                status=response.status_code,
            )
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
    embedder_options: dict[str, Any] | None = None,
    metric: str = "l2",
    allow_noiseless: bool = False,
    on_committed: Callable[[CommittedRound], None] | None = None,
) -> RoundResult:
    """One secure-aggregation round. RoundAborted with nothing released if anything fails
    before both aggregators committed; `on_committed` sees the round then, before any share is
    asked for; after it, failures are `collect_shares`'s."""
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
    try:
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
                bits=c.bits,
                deadline_unix=deadline,
                embeddings=data,
                shape=shape,
                embedder=embedder,
                embedder_options=dict(embedder_options or {}),
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
        outcome = RoundOutcome.model_validate(
            aggs.call("leader", "POST", f"/rounds/{round_id}/close")
        )
    except RoundAborted as e:
        e.round_id = round_id
        raise
    committed = CommittedRound(
        round_id=round_id,
        iteration=iteration,
        length=len(embeddings),
        outcome=outcome,
        present=present,
        missing=missing,
        sigma=min(used.values()),
    )
    if on_committed is not None:
        on_committed(committed)
    return collect_shares(aggs, committed, sigma=sigma, allow_noiseless=allow_noiseless)


def collect_shares(
    aggs: Aggregators, committed: CommittedRound, *, sigma: float, allow_noiseless: bool = False
) -> RoundResult:
    """Both noisy shares of a committed round, checked and added.

    Aggregators keep what they released and answer again with the same share, so this may be
    called again for the same round (after a failure or a restart) and never draws new noise.
    The leader is asked first and a failure stops there, so the helper never releases a share
    of a round the leader did not. RoundAborted says which shares arrived (`released`) and
    which aggregators lost the round unreleased (`lost`)."""
    rid = committed.round_id
    shares: dict[str, AggregateShare] = {}
    for name in AGGREGATORS:
        try:
            shares[name] = AggregateShare.model_validate(
                aggs.call(name, "GET", f"/rounds/{rid}/aggregate")
            )
        except RoundAborted as e:
            lost = (name,) if e.status == 404 else ()
            raise RoundAborted(
                str(e), round_id=rid, status=e.status, released=tuple(shares), lost=lost
            ) from None

    def fail(reason: str) -> RoundAborted:
        return RoundAborted(reason, round_id=rid, released=tuple(shares))

    ids = sorted(a.report_id for a in committed.outcome.accepted)
    for share in shares.values():
        if share.round_id != rid:
            raise fail(f"{share.aggregator} sent the share of another round")
        if sorted(share.accepted) != ids:
            raise fail(f"{share.aggregator} aggregated other reports than the leader")
        if share.noiseless and not allow_noiseless:
            raise fail(f"{share.aggregator} added no noise (a test-only config)")
        if not share.noiseless and share.sigma < sigma:
            raise fail(f"{share.aggregator} used σ={share.sigma} < {sigma}")
    try:
        vectors = [VOTE_FIELD.decode_vec(unb64(shares[n].agg_share)) for n in AGGREGATORS]
    except ValueError as e:
        raise fail(f"malformed aggregate share: {e}") from None
    if any(len(v) != committed.length for v in vectors):
        raise fail("aggregate share of the wrong length")
    total = VOTE_FIELD.vec_add(vectors[0], vectors[1])
    noisy = VOTE_FIELD.to_signed(total).astype(np.float64)
    return RoundResult(
        rid, noisy, committed.outcome, committed.present, committed.missing, committed.sigma
    )
