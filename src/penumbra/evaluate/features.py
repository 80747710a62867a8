"""Images of a folder → feature rows, streamed in batches so large sets fit in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.data.images import ReadReport, iter_images, list_image_files
from penumbra.errors import DataError

Embed = Callable[[list[Image.Image]], np.ndarray]
Progress = Callable[[str, int, int], None]


@dataclass
class FeatureSet:
    """Feature rows of one folder, with the relative path of the image behind each row."""

    folder: Path
    features: np.ndarray
    relpaths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.relpaths)


def embed_folder(
    folder: Path | str,
    embed: Embed,
    *,
    name: str,
    batch_size: int = 64,
    on_progress: Progress | None = None,
) -> FeatureSet:
    """Embed every readable image under `folder`; unreadable files are skipped and reported.
    `name` is the option the folder came from (e.g. "--synthetic"), used in errors."""
    folder = Path(folder)
    try:
        files = list_image_files(folder)
    except DataError as e:
        raise DataError(f"{name}: {e.problems[0]}") from None
    report = ReadReport()
    rows: list[np.ndarray] = []
    relpaths: list[str] = []
    batch: list[Image.Image] = []
    done = 0

    def flush() -> None:
        nonlocal done
        if batch:
            rows.append(np.asarray(embed(batch), dtype=np.float64))
            done += len(batch)
            batch.clear()
            if on_progress is not None:
                on_progress(name, done, len(files))

    for record in iter_images(folder, files=files, report=report):
        batch.append(record.image)
        relpaths.append(record.relpath)
        if len(batch) == batch_size:
            flush()
    flush()
    if not relpaths:
        raise DataError(f"{name} {folder}: no readable images ({report.summary()})")
    return FeatureSet(folder, np.concatenate(rows), relpaths, list(report.skipped))
