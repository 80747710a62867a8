"""The witness's HTTP front: `POST /add-checkpoint` (C2SP tlog-witness), `GET /vkey`.

No authentication beyond the log's signature on the checkpoint, as the spec says. The state
and the protocol live in `ledger.witness`; each request runs in a worker thread because it
fsyncs before it answers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from penumbra.ledger.witness import MAX_REQUEST_BYTES, Witness

log = logging.getLogger("penumbra.witness")


def make_app(folder: Path) -> Starlette:
    witness = Witness(folder)

    async def add_checkpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
            return PlainTextResponse("request too large\n", status_code=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        reply = await run_in_threadpool(witness.add_checkpoint, body)
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    async def vkey(_: Request) -> Response:
        return PlainTextResponse(witness.cosigner.vkey + "\n")

    return Starlette(routes=[
        Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
        Route("/vkey", vkey, methods=["GET"]),
    ])  # fmt: skip


def serve(folder: Path, host: str, port: int) -> None:
    """Run until interrupted. Several processes may serve one folder: the per-log file locks
    keep one writer per log."""
    app = make_app(folder)
    log.info("witness %s listening on http://%s:%d", folder, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)
