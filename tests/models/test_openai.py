"""The `openai:` backend against a loopback server speaking the OpenAI wire format."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models import clear_cache, load

from .fake_openai import Script, serve


@pytest.fixture(autouse=True)
def _fresh_models() -> None:
    clear_cache()


def test_chat_completions_with_seed_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENUMBRA_TEST_KEY", "sk-test")
    script = Script(expected_key="sk-test")
    with serve(script) as url:
        model = load(
            f"openai:tiny-chat@{url}", role="text-generator", api_key_env="PENUMBRA_TEST_KEY"
        )
        out = model.generate(["hello", "world"], max_new_tokens=7, temperature=0.5, seed=10)
    assert out == ["echo(hello) seed=10 max=7", "echo(world) seed=11 max=7"]
    path, body = script.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "tiny-chat" and body["temperature"] == 0.5


def test_missing_key_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PENUMBRA_TEST_KEY", raising=False)
    with serve(Script(expected_key="sk-test")) as url:
        model = load(f"openai:m@{url}", role="text-generator", api_key_env="PENUMBRA_TEST_KEY")
        with pytest.raises(ModelError, match="HTTP 401.*PENUMBRA_TEST_KEY"):
            model.generate(["hi"], max_new_tokens=1, temperature=0, seed=None)


def test_429_then_success_is_retried() -> None:
    script = Script(fail_first=[429, 503])
    with serve(script) as url:
        model = load(f"openai:m@{url}", role="text-generator", max_retries=3, backoff=0.01)
        assert model.generate(["x"], max_new_tokens=1, temperature=0, seed=None) == [
            "echo(x) seed=None max=1"
        ]
    assert len(script.requests) == 3


def test_retries_are_bounded() -> None:
    script = Script(fail_first=[429] * 10)
    with serve(script) as url:
        model = load(f"openai:m@{url}", role="text-generator", max_retries=2, backoff=0.01)
        with pytest.raises(ModelError, match="failed after 3 attempts.*HTTP 429"):
            model.generate(["x"], max_new_tokens=1, temperature=0, seed=None)
    assert len(script.requests) == 3


def test_client_errors_are_not_retried() -> None:
    script = Script(fail_first=[400])
    with serve(script) as url:
        model = load(f"openai:m@{url}", role="text-generator", max_retries=5, backoff=0.01)
        with pytest.raises(ModelError, match="HTTP 400"):
            model.generate(["x"], max_new_tokens=1, temperature=0, seed=None)
    assert len(script.requests) == 1


def test_server_that_never_answers_times_out() -> None:
    with serve(Script(hang_seconds=3.0)) as url:
        model = load(
            f"openai:m@{url}", role="text-generator", timeout=0.3, max_retries=1, backoff=0.01
        )
        start = time.monotonic()
        with pytest.raises(ModelError, match="timed out"):
            model.generate(["x"], max_new_tokens=1, temperature=0, seed=None)
        assert time.monotonic() - start < 2.5


def test_unreachable_server() -> None:
    model = load("openai:m@http://127.0.0.1:9/v1", role="text-embedder", max_retries=0)
    with pytest.raises(ModelError, match="cannot connect"):
        model.embed(["x"])


def test_embeddings_are_reordered_by_index() -> None:
    with serve(Script()) as url:
        model = load(f"openai:emb@{url}", role="text-embedder")
        vectors = model.embed(["a", "abc", "ab"])
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[:, 0], [1, 3, 2])
    np.testing.assert_array_equal(vectors[:, 1], [0, 1, 2])


def test_vision_captioning_sends_the_image() -> None:
    script = Script()
    with serve(script) as url:
        model = load(f"openai:vlm@{url}", role="captioner")
        captions = model.caption([Image.new("RGB", (12, 7)), Image.new("RGBA", (5, 9))])
    assert captions == ["an image of 12x7 pixels", "an image of 5x9 pixels"]


def test_image_generation_decodes_b64() -> None:
    with serve(Script()) as url:
        model = load(f"openai:img@{url}", role="image-generator", size="64x32")
        images = model.generate(["a red square"], seed=None)
    assert images[0].size == (64, 32) and images[0].getpixel((0, 0)) == (255, 0, 0)


def test_concurrency_is_limited() -> None:
    script = Script(delay_seconds=0.05)
    with serve(script) as url:
        model = load(f"openai:m@{url}", role="text-generator", max_concurrency=2)
        model.generate([str(i) for i in range(8)], max_new_tokens=1, temperature=0, seed=None)
    assert script.max_in_flight == 2


def test_uri_and_role_errors() -> None:
    with pytest.raises(ModelError, match="say which one"):
        load("openai:m@http://127.0.0.1:1/v1")
    with pytest.raises(ModelError, match="no model"):
        load("openai:@http://127.0.0.1:1/v1", role="text-generator")
    with pytest.raises(ModelError, match="must start with http"):
        load("openai:m@localhost:8000", role="text-generator")
    with pytest.raises(ModelError, match="has no image-embedder"):
        load("openai:m@http://127.0.0.1:1/v1", role="image-embedder")
    with pytest.raises(ModelError, match="unknown option"):
        load("openai:m@http://127.0.0.1:1/v1", role="text-embedder", colour="red")


def test_fingerprint_names_endpoint() -> None:
    a = load("openai:m@http://127.0.0.1:1/v1", role="text-embedder")
    b = load("openai:m2@http://127.0.0.1:1/v1", role="text-embedder")
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 64


def test_a_proxy_in_the_environment_never_carries_loopback_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loopback endpoint is trusted with private data; a proxy named by the environment
    would carry that data off the machine (found in review). The proxy here is a dead port:
    if the client used it, the request would fail."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    script = Script()
    with serve(script) as url:
        model = load(f"openai:tiny-embed@{url}", role="text-embedder")
        vectors = model.embed(["a short text"])
    assert np.asarray(vectors).shape[0] == 1
    assert script.requests and script.requests[0][0] == "/v1/embeddings"
