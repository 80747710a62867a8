"""Writing outputs as a Hugging Face `imagefolder` dataset, atomically.

The dataset is assembled in a hidden sibling folder and renamed into place only when every
image and the metadata are on disk, so a crash never leaves a half-written dataset that looks
complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from penumbra.durable import fsync_dir
from penumbra.errors import DataError

_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def write_imagefolder(
    out_dir: Path | str,
    items: Iterable[tuple[Image.Image, Mapping[str, Any]]],
    *,
    image_format: str = "png",
    overwrite: bool = False,
    name_width: int = 6,
) -> int:
    """Write (image, metadata) pairs as `out_dir/NNNNNN.png` + `metadata.jsonl`.

    Metadata values must be JSON-serialisable; `file_name` is set here. Returns the count.
    """
    out = Path(out_dir)
    if image_format not in _FORMATS:
        raise DataError(f"image format {image_format!r} not supported; use png, jpg or webp")
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists; choose another folder or allow overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    count = 0
    try:
        with open(staging / "metadata.jsonl", "w", encoding="utf-8") as meta:
            for count, (image, fields) in enumerate(items, start=1):
                if "file_name" in fields:
                    raise DataError("metadata field 'file_name' is reserved; rename it")
                file_name = f"{count - 1:0{name_width}d}.{image_format}"
                image.convert("RGB").save(staging / file_name, format=_FORMATS[image_format])
                row = {"file_name": file_name, **fields}
                meta.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            meta.flush()
            os.fsync(meta.fileno())
        fsync_dir(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def read_imagefolder_metadata(folder: Path | str) -> list[dict[str, Any]]:
    """The rows of an imagefolder's metadata.jsonl, in file order."""
    path = Path(folder) / "metadata.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: missing; is {folder} an imagefolder dataset written by penumbra?")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: invalid JSON ({e.msg})") from e
    return rows
