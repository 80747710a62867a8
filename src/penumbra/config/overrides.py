"""`--set key=value` overrides: dotted keys, values read as YAML scalars, applied to plain
config data before it is validated."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from penumbra.errors import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """`pe.iterations=5` -> (["pe", "iterations"], 5); values are read as YAML scalars."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. pe.k=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({e})") from e
    return key.split("."), value


def set_path(data: dict[str, Any], path: Sequence[str], value: Any, *, origin: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {part} is a value, not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    merged: dict[str, Any] = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        set_path(merged, path, value, origin=f"--set {text!r}")
    return merged
