"""Images of a folder → feature rows, streamed in batches so large sets fit in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from penumbra.data.images import DEFAULT_MAX_PIXELS, ReadReport, iter_images, list_image_files
from penumbra.errors import DataError

if TYPE_CHECKING:
    from penumbra.compute.engine import Engine

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
    engine: Engine | None = None,
) -> FeatureSet:
    """Embed every readable image under `folder`; unreadable files are skipped and reported.
    `name` is the option the folder came from (e.g. "--synthetic"), used in errors.

    With `engine`, `embed` must be a model (an `ImageEmbedder` or the engine's handle of
    one): files are read here and embedded in batches where the engine keeps the model."""
    folder = Path(folder)
    try:
        files = list_image_files(folder)
    except DataError as e:
        raise DataError(f"{name}: {e.problems[0]}") from None
    if engine is not None:
        return _embed_on(engine, embed, folder, files, name, batch_size, on_progress)
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


def _embed_on(
    engine: Engine,
    model: Any,
    folder: Path,
    files: list[Path],
    name: str,
    batch_size: int,
    on_progress: Progress | None,
) -> FeatureSet:
    from penumbra.models.batches import embed_image_batch, image_batches

    rows: list[np.ndarray] = []
    relpaths: list[str] = []
    skipped: list[tuple[str, str]] = []
    done = 0
    names = [f.relative_to(folder).as_posix() for f in files]
    batches = image_batches(files, folder, batch_size, "skip", DEFAULT_MAX_PIXELS)  # lazy
    for start, (vectors, report) in zip(
        range(0, len(files), batch_size),
        engine.map(embed_image_batch, batches, model=model),
        strict=True,
    ):
        gone = {relpath for relpath, _ in report.skipped}
        relpaths += [n for n in names[start : start + batch_size] if n not in gone]
        skipped += report.skipped
        if vectors is not None:
            rows.append(np.asarray(vectors, dtype=np.float64))
        done = min(len(files), start + batch_size)
        if on_progress is not None:
            on_progress(name, done, len(files))
    if not relpaths:
        raise DataError(f"{name} {folder}: no readable images ({len(skipped)} skipped)")
    return FeatureSet(folder, np.concatenate(rows), relpaths, skipped)
