"""A loopback server that speaks the OpenAI REST wire format, with scripted failures.

It stands in for a remote API (OpenAI, vLLM, Ollama) that cannot exist on this machine, and
checks what clients send: auth header, JSON bodies, image data URLs.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


@dataclass
class Script:
    """Scripted behaviour: statuses to answer before succeeding, delays, bookkeeping."""

    fail_first: list[int] = field(default_factory=list)  # e.g. [429] then success
    hang_seconds: float = 0.0  # never answer within the client's timeout
    delay_seconds: float = 0.0
    expected_key: str | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _png_b64(color: tuple[int, int, int], size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if path == "/v1/chat/completions":
        content = body["messages"][-1]["content"]
        if isinstance(content, list):  # vision: describe the image we were sent
            url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
            raw = base64.b64decode(url.split(",", 1)[1])
            image = Image.open(io.BytesIO(raw))
            text = f"an image of {image.size[0]}x{image.size[1]} pixels"
        else:
            text = f"echo({content}) seed={body.get('seed')} max={body.get('max_tokens')}"
        return 200, {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
    if path == "/v1/embeddings":
        inputs = body["input"]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), float(i), 1.0]}
            for i, t in enumerate(inputs)
        ]
        return 200, {"object": "list", "data": list(reversed(data)), "model": body["model"]}
    if path == "/v1/images/generations":
        w, h = (int(x) for x in body.get("size", "1024x1024").split("x"))
        return 200, {"created": 0, "data": [{"b64_json": _png_b64((255, 0, 0), (w, h))}]}
    return 404, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}}


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with script.lock:
                script.requests.append((self.path, body))
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
                failure = script.fail_first.pop(0) if script.fail_first else None
            try:
                if script.hang_seconds:
                    time.sleep(script.hang_seconds)
                    return
                if script.delay_seconds:
                    time.sleep(script.delay_seconds)
                if script.expected_key is not None and (
                    self.headers.get("Authorization") != f"Bearer {script.expected_key}"
                ):
                    self._send(401, {"error": {"message": "Incorrect API key provided"}})
                    return
                if failure is not None:
                    self._send(
                        failure,
                        {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                        {"Retry-After": "0"},
                    )
                    return
                status, payload = _answer(self.path, body)
                self._send(status, payload)
            finally:
                with script.lock:
                    script.in_flight -= 1

    return Handler


@contextmanager
def serve(script: Script) -> Iterator[str]:
    """Run the server on 127.0.0.1 (a free port) and yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
