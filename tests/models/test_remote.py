"""Models that would receive private data at a non-loopback URL are refused unless allowed."""

from __future__ import annotations

import pytest

from penumbra.config import RunConfig
from penumbra.errors import ConfigError
from penumbra.models.loopback import is_loopback_url
from penumbra.models.remote import check_private_endpoints, require_local_private


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "https://127.0.0.1/v1",
        "http://127.1.2.3:9/v1",
        "https://127.255.255.254",
        "http://localhost:11434/v1",
        "https://LocalHost/v1",
        "http://[::1]:8080/v1",
        "https://[::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://user:pw@localhost/v1",  # userinfo; the host is localhost
    ],
)
def test_loopback_urls(url: str) -> None:
    assert is_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://api.openai.com/v1",
        "http://my-gpu-box:8000/v1",  # a LAN name: never resolved, so remote
        "http://localhost.example.com/v1",
        "http://localhost@evil.example/v1",  # userinfo trick: the host is evil.example
        "http://localhost\\@evil.example/v1",
        "http://10.0.0.5:8000/v1",
        "http://192.168.1.2/v1",
        "http://0.0.0.0:8000/v1",
        "http://[::2]/v1",
        "http://[fe80::1%25eth0]/v1",
        "http://127.1/v1",  # an abbreviated address: not provably loopback
        "ftp://localhost/v1",
        "localhost:8000",
        "",
    ],
)
def test_remote_urls(url: str) -> None:
    assert not is_loopback_url(url)


REMOTE = "openai:gpt-4o-mini@https://api.example.com/v1"
LOCAL = "openai:llava@http://127.0.0.1:8000/v1"


def _config(**fields: object) -> RunConfig:
    data: dict[str, object] = {"models": {}, "privacy": {}}
    for key, value in fields.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value  # type: ignore[index]
        else:
            data[section] = value
    return RunConfig.model_validate(data)


def test_which_roles_receive_private_data_depends_on_modality_and_voting() -> None:
    everything_remote = {f"models__{r}": REMOTE for r in
                         ("captioner", "image_embedder", "text_embedder", "text_generator",
                          "image_generator")}  # fmt: skip
    image_voting = _config(modality="image", voting="image", **everything_remote)
    assert check_private_endpoints(image_voting) == [f"models.image_embedder: {REMOTE}"]
    text_voting = _config(modality="image", voting="text", **everything_remote)
    assert check_private_endpoints(text_voting) == [
        f"models.captioner: {REMOTE}",
        f"models.text_embedder: {REMOTE}",
    ]
    texts = _config(modality="text", **everything_remote)
    assert check_private_endpoints(texts) == [f"models.text_embedder: {REMOTE}"]
    # generators never see private data; local and in-process models are fine
    assert check_private_endpoints(_config(models__text_generator=REMOTE)) == []
    assert check_private_endpoints(_config(models__image_embedder=LOCAL)) == []
    assert check_private_endpoints(_config()) == []


def test_require_local_private_refuses_with_one_line_naming_field_url_and_fix() -> None:
    config = _config(voting="text", models__captioner=REMOTE, models__text_embedder=LOCAL)
    with pytest.raises(ConfigError) as info:
        require_local_private(config)
    (line,) = info.value.problems
    assert line.startswith("models.captioner: ")
    assert "https://api.example.com/v1" in line
    assert "privacy.allow_remote_private: true" in line
    assert "\n" not in line


def test_require_local_private_returns_remote_endpoints_when_allowed() -> None:
    config = _config(voting="text", models__captioner=REMOTE, models__text_embedder=REMOTE,
                     privacy={"allow_remote_private": True})  # fmt: skip
    assert require_local_private(config) == [
        f"models.captioner: {REMOTE}",
        f"models.text_embedder: {REMOTE}",
    ]
    assert require_local_private(_config(models__image_embedder=LOCAL)) == []


def test_openai_uri_without_url_uses_openai_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    config = _config(models__image_embedder="openai:text-embedding-3-small")
    with pytest.raises(ConfigError, match="https://api.openai.com/v1"):
        require_local_private(config)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert require_local_private(config) == []
