"""Durable run state for the PE loop: atomic JSON and Parquet files (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from penumbra.durable import atomic_write_bytes

POPULATION_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("parent_id", pa.string()),
        ("iteration", pa.int32()),
        ("fold", pa.int32()),
        ("payload", pa.string()),
    ]
)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def write_population(path: Path, rows: dict[str, list[Any]]) -> None:
    table = pa.table(rows, schema=POPULATION_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_population(path: Path) -> dict[str, list[Any]]:
    table = pq.read_table(path, schema=POPULATION_SCHEMA)
    return {name: table.column(name).to_pylist() for name in POPULATION_SCHEMA.names}
