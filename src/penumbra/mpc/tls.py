"""Mutual TLS for every MPC service: both sides present a certificate from the deployment CA.

Servers run uvicorn with `ssl.CERT_REQUIRED`, so a client without a certificate from the
deployment's CA fails the handshake. The peer's role and name come from its certificate's
subject (OU=role, CN=name); `MTLSProtocol` records them per connection so that a FastAPI
endpoint can refuse a peer of the wrong role with 403. Every client call has explicit
timeouts.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import HTTPException, Request
from uvicorn.protocols.http.h11_impl import H11Protocol

_PEERS: dict[tuple[str, int], Peer] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a TLS connection, from its verified certificate."""

    name: str
    role: str


def _subject_field(cert: dict[str, Any], field: str) -> str:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == field:
                return str(value)
    return ""


class MTLSProtocol(H11Protocol):
    """uvicorn's h11 protocol that remembers the verified peer certificate of its connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peername = transport.get_extra_info("peername")
        if ssl_object is None or not peername:
            return
        cert = ssl_object.getpeercert()
        if not cert:
            return
        peer = Peer(
            _subject_field(cert, "commonName"), _subject_field(cert, "organizationalUnitName")
        )
        with _LOCK:
            _PEERS[(str(peername[0]), int(peername[1]))] = peer
        self._penumbra_peer_key = (str(peername[0]), int(peername[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        key = getattr(self, "_penumbra_peer_key", None)
        if key is not None:
            with _LOCK:
                _PEERS.pop(key, None)
        super().connection_lost(exc)


def peer_of(request: Request) -> Peer | None:
    client = request.scope.get("client")
    if not client:
        return None
    with _LOCK:
        return _PEERS.get((str(client[0]), int(client[1])))


def require_peer(request: Request, roles: tuple[str, ...], names: tuple[str, ...] = ()) -> Peer:
    """The authenticated peer, or HTTP 401 (no certificate seen) / 403 (wrong role or name)."""
    peer = peer_of(request)
    if peer is None:
        raise HTTPException(status_code=401, detail="no client certificate")
    if peer.role not in roles or (names and peer.name not in names):
        raise HTTPException(status_code=403, detail=f"{peer.role}/{peer.name} may not call this")
    return peer


def needs(roles: tuple[str, ...], names: tuple[str, ...] = ()) -> Callable[[Request], Peer]:
    """A FastAPI dependency: checks the peer before the request body is even parsed."""

    def check(request: Request) -> Peer:
        return require_peer(request, roles, names)

    return check


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Client side: trust only the deployment CA, present our own certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def http_client(
    context: ssl.SSLContext, *, connect: float = 5.0, read: float = 60.0
) -> httpx.Client:
    """An httpx client with mutual TLS and explicit timeouts on every phase."""
    timeout = httpx.Timeout(read, connect=connect, write=read, pool=connect)
    return httpx.Client(verify=context, timeout=timeout)


def server_config(
    app: Any, *, host: str, port: int, ca: Path, cert: Path, key: Path, log_level: str = "warning"
) -> uvicorn.Config:
    """uvicorn settings that demand a client certificate signed by the deployment CA."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        ssl_ca_certs=str(ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        http=MTLSProtocol,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=2,
        lifespan="off",
    )


class BackgroundServer:
    """A uvicorn server on a daemon thread (the coordinator serves holders while it runs PE)."""

    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self, wait_s: float = 10.0) -> None:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(wait_s / 0.05)):
            if self.server.started:
                return
            deadline.wait(0.05)
        raise RuntimeError("the HTTPS server did not start (is the port in use?)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
