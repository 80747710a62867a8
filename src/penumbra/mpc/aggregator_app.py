"""An aggregator's HTTP service: the routes holders, the coordinator and the other aggregator
call over mutual TLS, each checking the caller's role, and admission control for uploads.

The aggregator's state and logic are penumbra.mpc.aggregator; this is only its front.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from penumbra.mpc.aggregator import Aggregator
from penumbra.mpc.deploy import load_party_config
from penumbra.mpc.protocol import (
    UPLOAD_MEDIA_TYPE,
    AggregateShare,
    CommitRequest,
    CosignReply,
    CosignRequest,
    RoundOutcome,
    RoundParams,
    RoundStatus,
    Upload,
    UploadReply,
    VerifyReply,
    VerifyRequest,
    max_upload_bytes,
)
from penumbra.mpc.tls import client_context, http_client, needs, require_peer, server_config

log = logging.getLogger("penumbra.mpc.aggregator")


def make_app(agg: Aggregator) -> FastAPI:
    app = FastAPI(
        title=f"penumbra aggregator {agg.c.name}", docs_url=None, redoc_url=None, openapi_url=None
    )
    holders = tuple(h.name for h in agg.c.holders)
    ctx = client_context(agg.c.path(agg.c.ca), agg.c.path(agg.c.cert), agg.c.path(agg.c.key))
    client = http_client(ctx, connect=agg.c.timeouts.connect_s, read=agg.c.timeouts.read_s)

    @app.get("/health")
    def health(request: Request) -> dict[str, str]:
        require_peer(request, ("coordinator", "aggregator", "holder"))
        return {"name": agg.c.name}

    # Reports being read and verified at once: each holds a few times its size in memory, so
    # this bounds the aggregator's memory; beyond it a holder is told to retry (503). One
    # upload per holder at a time, so one holder cannot take every slot; a body must arrive
    # within the read timeout and be no larger than this deployment's largest report.
    in_flight = threading.BoundedSemaphore(agg.c.max_reports_in_flight)
    uploading: set[str] = set()
    admission = threading.Lock()
    size_limit = max_upload_bytes(agg.c)

    def busy(reason: str) -> JSONResponse:
        return JSONResponse({"accepted": False, "reason": reason}, status_code=503,
                            headers={"Retry-After": "1"})  # fmt: skip

    @app.post("/upload", dependencies=[Depends(needs(("holder",), holders))])
    async def upload(request: Request) -> Any:
        peer = require_peer(request, ("holder",), holders)
        with admission:
            if peer.name in uploading:
                return busy("busy: this holder's previous upload is still in work")
            if not in_flight.acquire(blocking=False):
                log.info("busy: %s told to retry", peer.name)
                return busy("busy: retry")
            uploading.add(peer.name)
        try:
            return await _upload(request, peer.name)
        finally:
            with admission:
                uploading.discard(peer.name)
                in_flight.release()

    async def _upload(request: Request, holder: str) -> UploadReply:
        if request.headers.get("content-type") != UPLOAD_MEDIA_TYPE:
            raise HTTPException(415, f"a report is sent as {UPLOAD_MEDIA_TYPE}")
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > size_limit:
            raise HTTPException(
                413, f"a report of this deployment needs a content-length of at most {size_limit}"
            )
        try:
            body = await asyncio.wait_for(request.body(), timeout=agg.c.timeouts.read_s)
        except TimeoutError:
            raise HTTPException(408, "report not received within the read timeout") from None
        if len(body) > size_limit:
            raise HTTPException(413, "report larger than its content-length")
        try:
            msg = Upload.decode(body)
        except ValueError as e:
            log.info("undecodable report from %s: %s", holder, e)
            return UploadReply(accepted=False, reason=f"malformed report: {e}")
        return await run_in_threadpool(agg.upload, holder, msg)

    @app.post("/rounds/open", dependencies=[Depends(needs(("coordinator",)))])
    def open_round(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        require_peer(request, ("coordinator",))
        try:
            params = RoundParams.model_validate(body["params"])
            return agg.open_round(params, str(body["run"]), dict(body["budget"]))
        except (KeyError, TypeError, ValueError) as e:
            raise HTTPException(400, f"bad request: {e}") from None

    @app.get("/rounds/{round_id}/status")
    def status(request: Request, round_id: str) -> RoundStatus:
        require_peer(request, ("coordinator",))
        return agg.status(round_id)

    @app.post("/rounds/{round_id}/close")
    def close(request: Request, round_id: str) -> RoundOutcome:
        require_peer(request, ("coordinator",))
        if agg.agg_id != 0:
            raise HTTPException(404, "only the leader closes rounds")
        try:
            return agg.close(round_id, client)
        except httpx.HTTPError as e:
            raise HTTPException(502, f"helper unreachable: {type(e).__name__}") from None

    @app.post(
        "/rounds/{round_id}/verify", dependencies=[Depends(needs(("aggregator",), ("leader",)))]
    )
    def verify(request: Request, round_id: str, body: VerifyRequest) -> VerifyReply:
        require_peer(request, ("aggregator",), ("leader",))
        if agg.agg_id != 1 or body.round_id != round_id:
            raise HTTPException(404, "only the helper answers verify requests")
        return agg.verify(body)

    @app.post(
        "/rounds/{round_id}/commit", dependencies=[Depends(needs(("aggregator",), ("leader",)))]
    )
    def commit(request: Request, round_id: str, body: CommitRequest) -> dict[str, bool]:
        require_peer(request, ("aggregator",), ("leader",))
        if agg.agg_id != 1 or body.round_id != round_id:
            raise HTTPException(404, "only the helper takes commits")
        agg.commit(body)
        return {"ok": True}

    @app.get("/rounds/{round_id}/aggregate")
    def aggregate(request: Request, round_id: str) -> AggregateShare:
        require_peer(request, ("coordinator",))
        return agg.aggregate(round_id)

    @app.post("/cosign", dependencies=[Depends(needs(("coordinator",)))])
    def cosign(request: Request, body: CosignRequest) -> CosignReply:
        require_peer(request, ("coordinator",))
        return agg.cosign(body)

    return app


def run_aggregator(config_path: Path | str) -> None:
    """Serve one aggregator until interrupted (SIGINT/SIGTERM)."""
    config = load_party_config(config_path, "aggregator")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agg = Aggregator(config)
    uv = server_config(
        make_app(agg),
        host=config.host,
        port=config.port,
        ca=config.path(config.ca),
        cert=config.path(config.cert),
        key=config.path(config.key),
    )
    uvicorn.Server(uv).run()
