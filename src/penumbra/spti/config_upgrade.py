"""Resuming a run that an earlier penumbra started.

The ledger's run_start holds the SHA-256 of the run's config as that version resolved it. A
newer penumbra reads the same run.yaml and fills the fields it added with their defaults, so
hashing its own resolved config would differ and every older run would be refused. Instead
the hash is taken over the fields the run's record holds: a field the record lacks counts only
while it is at its default (the behaviour the run started with), and anything else that
differs changes the hash and is refused. A field the record holds that this version no longer
knows fails loading run.yaml, naming the field.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from penumbra.config import RunConfig
from penumbra.errors import ConfigError

EXCLUDED = {"compute", "ledger", "policy"}  # not part of what a run computes (config_hash says why)


def _section(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds (also inside `X | None`), or None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _as_recorded(
    data: dict[str, Any],
    recorded: Mapping[str, Any],
    defaults: Mapping[str, Any],
    model: type[BaseModel],
    where: str,
    source: str,
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}{key}"
        if key not in recorded:
            if key not in defaults or value != defaults[key]:
                raise ConfigError(
                    f"{source}: {name} is not in the run's record (a field added since the run "
                    f"started) and is not at its default; resume with the penumbra that started it"
                )
            continue
        field = model.model_fields.get(key)
        section = _section(field.annotation) if field is not None else None
        old = recorded[key]
        if section is not None and isinstance(value, dict) and isinstance(old, Mapping):
            value = _as_recorded(value, old, defaults.get(key) or {}, section, f"{name}.", source)
        kept[key] = value
    return kept


def recorded_config_hash(config: RunConfig, run_yaml: Path) -> str:
    """`config.config_hash(config)` over the fields run.yaml records (all of them for a run
    this version started, so the same hash)."""
    data = config.model_dump(mode="json", exclude_none=True, exclude=EXCLUDED)
    if run_yaml.is_file():
        recorded = yaml.safe_load(run_yaml.read_text(encoding="utf-8"))
        if isinstance(recorded, Mapping):
            defaults = RunConfig().model_dump(mode="json", exclude_none=True, exclude=EXCLUDED)
            data = _as_recorded(data, recorded, defaults, RunConfig, "", str(run_yaml))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
