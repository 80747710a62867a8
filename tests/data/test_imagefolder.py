"""Outputs are Hugging Face imagefolder datasets, written atomically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from penumbra.data import read_imagefolder_metadata, write_imagefolder
from penumbra.errors import DataError


def _items(n: int) -> Iterator[tuple[Image.Image, dict[str, Any]]]:
    for i in range(n):
        yield Image.new("RGB", (8, 8), (i * 40, 0, 0)), {"caption": f"image {i}", "iteration": i}


def test_datasets_loads_what_we_write(tmp_path: Path) -> None:
    from datasets import load_dataset

    out = tmp_path / "synthetic"
    assert write_imagefolder(out, _items(3)) == 3
    dataset = load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(dataset) == 3
    rows = sorted(dataset, key=lambda r: r["iteration"])
    assert [r["caption"] for r in rows] == ["image 0", "image 1", "image 2"]
    assert rows[2]["image"].getpixel((0, 0)) == (80, 0, 0)
    assert [m["file_name"] for m in read_imagefolder_metadata(out)] == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    write_imagefolder(out, _items(1))
    with pytest.raises(DataError, match="already exists"):
        write_imagefolder(out, _items(2))
    assert write_imagefolder(out, _items(2), overwrite=True) == 2


def test_crash_midway_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    def broken() -> Iterator[tuple[Image.Image, dict[str, Any]]]:
        yield from _items(2)
        raise RuntimeError("generator died")

    out = tmp_path / "synthetic"
    with pytest.raises(RuntimeError):
        write_imagefolder(out, broken())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_reserved_field_and_bad_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file_name"):
        write_imagefolder(tmp_path / "a", [(Image.new("RGB", (2, 2)), {"file_name": "x"})])
    with pytest.raises(DataError, match="not supported"):
        write_imagefolder(tmp_path / "b", _items(1), image_format="gif")
    with pytest.raises(DataError, match="metadata.jsonl: missing"):
        read_imagefolder_metadata(tmp_path)
