"""`load(uri)`: one entry point for every backend, with a per-process cache."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from penumbra.errors import ModelError
from penumbra.models.builtin import BUILTINS, missing_packages
from penumbra.models.protocols import ROLES, Model, Role

_BOUND = ("source", "name", "client", "model", "base_url")
_cache: dict[tuple[str, str | None, str], Model] = {}
_lock = threading.RLock()  # re-entrant: builtin:composite loads its parts


def _check_role(role: str | None) -> Role | None:
    if role is not None and role not in ROLES:
        raise ModelError(f"unknown model role {role!r}; choose one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


def _call(uri: str, fn: Callable[..., Any], options: dict[str, Any]) -> Any:
    """Call a loader with user options, naming unknown ones instead of a TypeError."""
    accepted = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    if not takes_any:
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ModelError(
                f"{uri}: unknown option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(k for k in accepted if k not in _BOUND) or 'none'}"
            )
    try:
        return fn(**options)
    except TypeError as e:
        raise ModelError(f"{uri}: bad options ({e})") from e


def _load_builtin(name: str, role: Role | None, options: dict[str, Any]) -> Model:
    builtin = BUILTINS.get(name)
    if builtin is None:
        raise ModelError(
            f"unknown builtin model 'builtin:{name}'; available: "
            + ", ".join(b.uri for b in BUILTINS.values())
        )
    if role is not None and role != builtin.role:
        raise ModelError(f"{builtin.uri} is a {builtin.role}, not a {role}")
    if name == "composite":  # its parts are models this registry loads (and caches)
        from penumbra.models.composite import load_composite

        parts = options.pop("parts", None)
        if options:
            raise ModelError(f"builtin:composite: unknown options {sorted(options)}; use parts")
        return load_composite(parts, load)
    return cast(Model, _call(builtin.uri, builtin.loader, options))


def _load_hf(ref: str, role: Role | None, options: dict[str, Any]) -> Model:
    from penumbra.models import hf
    from penumbra.models.hf_source import infer_hf_role, resolve_hf_source

    source = resolve_hf_source(ref)
    if role is None:
        if source.local_dir is None:
            raise ModelError(
                f"hf:{ref}: not downloaded yet, so its role cannot be read from its files; "
                "pass the role explicitly"
            )
        role = infer_hf_role(source.local_dir)
    loaders: dict[Role, Callable[..., Model]] = {
        "text-generator": hf.load_causal_lm,
        "text-embedder": hf.load_sentence_transformer,
        "captioner": hf.load_captioner,
        "image-generator": hf.load_diffusers_pipeline,
    }
    if role not in loaders:
        raise ModelError(f"hf:{ref}: the hf backend has no {role}; use builtin:effnet-lite0")
    loader = loaders[role]
    return cast(Model, _call(f"hf:{ref}", partial(loader, source, name=f"hf:{ref}"), options))


_CLIENT_OPTIONS = ("api_key_env", "timeout", "max_retries", "max_concurrency", "backoff")


def _load_openai(rest: str, role: Role | None, options: dict[str, Any]) -> Model:
    from penumbra.models.openai_api import ROLE_CLASSES, OpenAIClient, parse_openai_uri

    model, base_url = parse_openai_uri(rest)
    uri = f"openai:{rest}"
    if role is None:
        raise ModelError(
            f"{uri}: an OpenAI-compatible endpoint serves several roles; say which one "
            f"({', '.join(ROLE_CLASSES)})"
        )
    if role not in ROLE_CLASSES:
        raise ModelError(f"{uri}: the openai backend has no {role}")
    client_options = {k: options.pop(k) for k in _CLIENT_OPTIONS if k in options}
    client = _call(uri, partial(OpenAIClient, model, base_url), client_options)
    return cast(Model, _call(uri, partial(ROLE_CLASSES[role], client), options))


def load(uri: str, *, role: Role | None = None, **options: Any) -> Model:
    """Load (once per process) the model a URI names.

    `role` is required where a URI can serve several roles (openai:, and hf: repos not yet
    downloaded) and checked otherwise. Options go to the backend (batch sizes, image_size,
    steps, timeout...); an unknown option is an error, not silently ignored.
    """
    role = _check_role(role)
    scheme, sep, rest = uri.partition(":")
    if not sep:
        raise ModelError(
            f"model URI {uri!r} has no scheme; use builtin:NAME, hf:REPO_OR_PATH or "
            "openai:MODEL@BASE_URL"
        )
    key = (uri, role, json.dumps(options, sort_keys=True, default=str))
    with _lock:
        if key in _cache:
            return _cache[key]
        if scheme == "builtin":
            model = _load_builtin(rest, role, dict(options))
        elif scheme == "hf":
            model = _load_hf(rest, role, dict(options))
        elif scheme == "openai":
            model = _load_openai(rest, role, dict(options))
        else:
            raise ModelError(
                f"model URI {uri!r}: unknown scheme {scheme!r}; use builtin:, hf: or openai:"
            )
        _cache[key] = model
        return model


def clear_cache() -> None:
    """Forget loaded models (tests; long-lived servers that swap weights)."""
    with _lock:
        _cache.clear()


@dataclass(frozen=True)
class BackendInfo:
    uri: str
    roles: tuple[Role, ...]
    description: str
    problem: str | None  # None: usable here and now

    @property
    def available(self) -> bool:
        return self.problem is None


def catalogue() -> list[BackendInfo]:
    """Every builtin model and backend, with whether it can be used here and now."""
    rows = [BackendInfo(b.uri, (b.role,), b.description, b.problem()) for b in BUILTINS.values()]
    rows += [
        BackendInfo(
            "hf:REPO_OR_PATH",
            ("text-generator",),
            "transformers causal LM (local folder or cached Hub repo)",
            missing_packages("transformers"),
        ),
        BackendInfo(
            "hf:REPO_OR_PATH",
            ("text-embedder",),
            "sentence-transformers model",
            missing_packages("sentence_transformers"),
        ),
        BackendInfo(
            "hf:REPO_OR_PATH",
            ("captioner",),
            "transformers vision-language model (BLIP, Florence-2, ...)",
            missing_packages("transformers"),
        ),
        BackendInfo(
            "hf:REPO_OR_PATH",
            ("image-generator",),
            "diffusers text-to-image pipeline (SD, SDXL, SD3, FLUX, ...)",
            missing_packages("diffusers"),
        ),
        BackendInfo(
            "openai:MODEL@BASE_URL",
            ("text-generator", "captioner", "text-embedder", "image-generator"),
            "OpenAI-compatible server (OpenAI, vLLM, Ollama): chat, vision chat, embeddings, "
            "images; needs the server reachable",
            missing_packages("httpx"),
        ),
    ]
    return rows
