"""OpenAI-compatible HTTP backends (OpenAI, vLLM, Ollama, LM Studio, ...).

One small client does the transport concerns (auth, timeouts, retries with exponential backoff
on 429/5xx, a concurrency limit); the role classes only build request bodies and read replies.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import numpy as np
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models.fingerprint import fingerprint_text
from penumbra.models.loopback import is_loopback_url
from penumbra.models.protocols import Role

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def parse_openai_uri(rest: str) -> tuple[str, str]:
    """`MODEL@BASE_URL` -> (model, base_url); the URL defaults to OPENAI_BASE_URL or OpenAI's."""
    model, sep, base_url = rest.partition("@")
    if not model:
        raise ModelError(f"model URI 'openai:{rest}' names no model: use openai:MODEL@BASE_URL")
    if not sep:
        base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
    if not base_url.startswith(("http://", "https://")):
        raise ModelError(
            f"model URI 'openai:{rest}': base URL {base_url!r} must start with http:// or https://"
        )
    return model, base_url.rstrip("/")


class OpenAIClient:
    """Transport for one (model, base URL); thread-safe, shared by the role classes."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        max_concurrency: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if timeout <= 0:
            raise ModelError(f"openai:{model}: timeout must be > 0 seconds, got {timeout}")
        if max_retries < 0:
            raise ModelError(f"openai:{model}: max_retries must be >= 0, got {max_retries}")
        if max_concurrency < 1:
            raise ModelError(f"openai:{model}: max_concurrency must be >= 1, got {max_concurrency}")
        self.model = model
        self.base_url = base_url
        self.uri = f"openai:{model}@{base_url}"
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._api_key_env = api_key_env
        # A loopback server is judged local (it may see private data); an HTTP(S)_PROXY from
        # the environment must not carry that traffic off the machine.
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            timeout=timeout,
            trust_env=not is_loopback_url(base_url),
        )
        self._timeout = timeout

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("retry-after")
            if retry_after:
                try:
                    return float(min(self.max_backoff, max(0.0, float(retry_after))))
                except ValueError:
                    pass
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return base * (0.5 + random.random() / 2)

    @staticmethod
    def _error_text(response: httpx.Response) -> str:
        try:
            body = response.json()
            message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        except ValueError:
            message = None
        return str(message or response.text[:200] or response.reason_phrase).strip()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; raises ModelError with one clear line when it finally fails."""
        last = ""
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.post(path, json=body)
            except httpx.TimeoutException:
                last = f"no answer within {self._timeout:g} s (timed out)"
            except httpx.TransportError as e:
                last = f"cannot connect ({e.__class__.__name__}: {e})"
            else:
                if response.status_code < 400:
                    try:
                        data = response.json()
                    except ValueError as e:
                        raise ModelError(f"{self.uri}: {path} answered with invalid JSON") from e
                    if not isinstance(data, dict):
                        raise ModelError(f"{self.uri}: {path} answered with a non-object JSON")
                    return data
                last = f"HTTP {response.status_code}: {self._error_text(response)}"
                if response.status_code in (401, 403):
                    raise ModelError(
                        f"{self.uri}: {path} refused ({last}); set the API key in the "
                        f"environment variable {self._api_key_env}"
                    )
                if response.status_code not in RETRY_STATUS:
                    raise ModelError(f"{self.uri}: {path} failed ({last})")
            if attempt < self.max_retries:
                delay = self._delay(attempt, response)
                log.info("%s %s: %s; retrying in %.2f s", self.uri, path, last, delay)
                time.sleep(delay)
        raise ModelError(
            f"{self.uri}: {path} failed after {self.max_retries + 1} attempts ({last})"
        )

    def map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """Apply fn to items with at most max_concurrency requests in flight; keeps order."""
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    def close(self) -> None:
        self._http.close()


def _message_text(data: dict[str, Any], uri: str) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as e:
        raise ModelError(f"{uri}: /chat/completions reply has no choices[0].message") from e
    return str(content or "").strip()


class _Remote:
    role: Role

    def __init__(self, client: OpenAIClient) -> None:
        self.client = client
        self.name = client.uri

    @property
    def fingerprint(self) -> str:
        # Remote weights are invisible: the identity is the endpoint and model name.
        return fingerprint_text("openai", self.client.model, self.client.base_url, self.role)


class OpenAITextGenerator(_Remote):
    role: Role = "text-generator"

    def generate(
        self,
        prompts: list[str],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        def one(item: tuple[int, str]) -> str:
            index, prompt = item
            body: dict[str, Any] = {
                "model": self.client.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "n": 1,
            }
            if seed is not None:
                body["seed"] = seed + index
            return _message_text(self.client.post("/chat/completions", body), self.name)

        return self.client.map(one, list(enumerate(prompts)))


class OpenAITextEmbedder(_Remote):
    role: Role = "text-embedder"
    batch_size = 256

    def embed(self, texts: list[str]) -> np.ndarray:
        chunks = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

        def one(chunk: list[str]) -> list[list[float]]:
            data = self.client.post("/embeddings", {"model": self.client.model, "input": chunk})
            try:
                rows = sorted(data["data"], key=lambda r: int(r["index"]))
                vectors = [list(map(float, r["embedding"])) for r in rows]
            except (KeyError, TypeError, ValueError) as e:
                raise ModelError(
                    f"{self.name}: /embeddings reply is not a list of embeddings"
                ) from e
            if len(vectors) != len(chunk):
                raise ModelError(
                    f"{self.name}: /embeddings returned {len(vectors)} vectors "
                    f"for {len(chunk)} texts"
                )
            return vectors

        rows = [v for part in self.client.map(one, chunks) for v in part]
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(rows, dtype=np.float32)


def image_to_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAICaptioner(_Remote):
    role: Role = "captioner"

    def __init__(
        self,
        client: OpenAIClient,
        *,
        prompt: str = "Describe this image in one short sentence.",
        max_new_tokens: int = 60,
    ) -> None:
        super().__init__(client)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens

    def caption(self, images: list[Image.Image]) -> list[str]:
        def one(image: Image.Image) -> str:
            content = [
                {"type": "text", "text": self.prompt},
                {"type": "image_url", "image_url": {"url": image_to_data_url(image)}},
            ]
            body = {
                "model": self.client.model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": self.max_new_tokens,
                "temperature": 0,
            }
            return _message_text(self.client.post("/chat/completions", body), self.name)

        return self.client.map(one, list(images))


class OpenAIImageGenerator(_Remote):
    role: Role = "image-generator"

    def __init__(self, client: OpenAIClient, *, size: str = "1024x1024") -> None:
        super().__init__(client)
        self.size = size

    def generate(self, prompts: list[str], *, seed: int | None) -> list[Image.Image]:
        # The images API has no seed; runs that need reproducible renders use a local model.
        def one(prompt: str) -> Image.Image:
            body = {
                "model": self.client.model,
                "prompt": prompt,
                "n": 1,
                "size": self.size,
                "response_format": "b64_json",
            }
            data = self.client.post("/images/generations", body)
            try:
                raw = base64.b64decode(data["data"][0]["b64_json"], validate=True)
                image = Image.open(io.BytesIO(raw))
                image.load()
            except (KeyError, IndexError, TypeError, ValueError, OSError) as e:
                raise ModelError(
                    f"{self.name}: /images/generations reply holds no decodable b64_json image"
                ) from e
            return image.convert("RGB")

        return self.client.map(one, list(prompts))


ROLE_CLASSES: dict[Role, Callable[..., _Remote]] = {
    "text-generator": OpenAITextGenerator,
    "text-embedder": OpenAITextEmbedder,
    "captioner": OpenAICaptioner,
    "image-generator": OpenAIImageGenerator,
}
