"""Batches of image files and the tasks that embed or caption them, on any compute engine.

The private embedding (penumbra.spti.private_embeddings) and the evaluation's feature rows
(penumbra.evaluate.features) both read files here, in fixed batches, and hand each batch to an
engine that decodes and embeds it next to the model: a worker needs no view of this machine's
disk, and the batches (so the results) are the same on every engine. Module-level functions,
so that a Ray worker can run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.data.images import OnError, ReadReport, read_image
from penumbra.errors import DataError
from penumbra.models.protocols import Captioner, ImageEmbedder, TextEmbedder


@dataclass(frozen=True)
class ImageBatch:
    """A batch of files as read on this machine: (path, relative path, bytes) each. Workers
    decode the bytes, so a cluster needs no view of this machine's disk."""

    items: list[tuple[str, str, bytes]]
    on_error: OnError
    max_pixels: int


def decode_batch(batch: ImageBatch) -> tuple[list[Image.Image], ReadReport]:
    report = ReadReport()
    images = []
    for path, relpath, data in batch.items:
        try:
            images.append(read_image(path, max_pixels=batch.max_pixels, data=data))
        except DataError as e:
            if batch.on_error == "fail":
                raise
            report.skipped.append((relpath, e.problems[0]))
            continue
        report.read += 1
    return images, report


def embed_image_batch(
    embedder: ImageEmbedder, batch: ImageBatch
) -> tuple[np.ndarray | None, ReadReport]:
    """One task of embedding images (the private set for image voting, an evaluation's
    folders): decode, embed."""
    images, report = decode_batch(batch)
    return (embedder.embed(images) if images else None), report


def caption_image_batch(captioner: Captioner, batch: ImageBatch) -> tuple[list[str], ReadReport]:
    """One task of the private embedding (text voting): decode, caption locally."""
    images, report = decode_batch(batch)
    return (captioner.caption(images) if images else []), report


def embed_text_batch(embedder: TextEmbedder, texts: list[str]) -> np.ndarray:
    return embedder.embed(texts)


def image_batches(
    files: list[Path], source: Path, size: int, on_error: OnError, max_pixels: int
) -> Iterator[ImageBatch]:
    for start in range(0, len(files), size):
        items = []
        for path in files[start : start + size]:
            relpath = path.relative_to(source).as_posix()
            try:
                data = path.read_bytes()
            except OSError as e:
                if on_error == "fail":
                    raise DataError(f"{path}: cannot read ({e.strerror})") from None
                data = b""  # decoding fails and counts it as skipped, in order
            items.append((str(path), relpath, data))
        yield ImageBatch(items, on_error, max_pixels)
