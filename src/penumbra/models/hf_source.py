"""Resolving `hf:` references to local folders without touching the network when offline.

A reference is a local folder or a Hub repo id. Offline (HF_HUB_OFFLINE=1) a repo id must
already be in the local Hugging Face cache; we look there ourselves so the error can say how
to get the model instead of surfacing a deep transformers traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from penumbra.errors import ModelError
from penumbra.models.protocols import Role

_MARKER_FILES = ("model_index.json", "modules.json", "config.json")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HFSource:
    """Where an `hf:` model lives: `ref` is what from_pretrained receives."""

    ref: str
    local_dir: Path | None  # None when only the Hub (online) can provide it


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or os.sep in ref.strip("/").split("/", 1)[0]


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    for marker in _MARKER_FILES:
        hit = try_to_load_from_cache(repo_id, marker)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def resolve_hf_source(ref: str) -> HFSource:
    """Map `hf:REF` to a local folder (path or cache snapshot) or, online, to a Hub repo id."""
    if not ref:
        raise ModelError("model URI 'hf:' names no model: use hf:ORG/NAME or hf:/path/to/folder")
    path = Path(ref).expanduser()
    if path.is_dir():
        return HFSource(ref=str(path.resolve()), local_dir=path.resolve())
    if path.exists():
        raise ModelError(f"hf:{ref}: is a file, not a model folder; point hf: at the folder")
    if _looks_like_path(ref) or ref.count("/") > 1:
        raise ModelError(f"hf:{ref}: no such folder; give the folder that holds config.json")
    snapshot = _cached_snapshot(ref)
    if snapshot is not None:
        return HFSource(ref=str(snapshot), local_dir=snapshot)
    if hub_offline():
        raise ModelError(
            f"hf:{ref}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set; on a "
            f"connected machine run `huggingface-cli download {ref}` (or save it to a folder "
            "and use hf:/path/to/folder)"
        )
    return HFSource(ref=ref, local_dir=None)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: unreadable model config ({e}); re-download the model") from e
    return data if isinstance(data, dict) else {}


def infer_hf_role(folder: Path) -> Role:
    """Tell a model's role from the files a library writes with save_pretrained."""
    if (folder / "model_index.json").is_file():
        return "image-generator"
    if (folder / "modules.json").is_file() or (
        folder / "config_sentence_transformers.json"
    ).is_file():
        return "text-embedder"
    config_path = folder / "config.json"
    if config_path.is_file():
        config = _read_json(config_path)
        model_type = str(config.get("model_type", ""))
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
        )

        if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            return "captioner"
        architectures = [str(a) for a in config.get("architectures") or []]
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
            return "text-generator"
    raise ModelError(
        f"{folder}: cannot tell which role this model plays (no model_index.json, modules.json "
        "or causal-LM/vision-language config.json); pass the role explicitly"
    )
