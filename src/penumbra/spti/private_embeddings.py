"""Embedding the private set, inside the holder boundary.

Private images (and, for text voting, their captions) are read only here; the embeddings are
cached under the run's private/ folder (mode 0700) and handed to the voter, nowhere else
(DESIGN.md invariants 1-2).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.compute.engine import Engine, LocalEngine
from penumbra.data.images import OnError, ReadReport, list_image_files, read_image
from penumbra.durable import atomic_write_bytes
from penumbra.errors import DataError
from penumbra.models.protocols import Captioner, ImageEmbedder, TextEmbedder


def private_folder(run_dir: Path) -> Path:
    folder = run_dir / "private"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


@dataclass(frozen=True)
class ImageBatch:
    """A batch of private files as read here: (path, relative path, bytes) each. Workers decode
    the bytes, so a cluster needs no view of this machine's disk."""

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
    """One task of the private embedding (image voting): decode, embed."""
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


def embed_private_images(
    source: Path,
    run_dir: Path,
    *,
    voting: str,
    image_embedder: ImageEmbedder,
    captioner: Captioner,
    text_embedder: TextEmbedder,
    on_error: OnError = "skip",
    max_pixels: int,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int = 64,
    engine: Engine | None = None,
) -> tuple[np.ndarray, ReadReport]:
    """Embeddings of the private images for `voting` ("image" or "text"), cached by content.

    Files are read here and embedded by `engine` in batches of `batch_size` files; the batches
    are the same on every engine, so the embeddings are too."""
    engine = engine if engine is not None else LocalEngine()
    files = list_image_files(source)
    listing = hashlib.sha256()
    for path in files:
        st = path.stat()
        listing.update(
            f"{path.relative_to(source).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
        )
    fingerprints = (
        image_embedder.fingerprint
        if voting == "image"
        else f"{captioner.fingerprint}/{text_embedder.fingerprint}"
    )
    key = hashlib.sha256(f"{listing.hexdigest()}|{voting}|{fingerprints}".encode()).hexdigest()
    folder = private_folder(run_dir)
    cache = folder / f"embeddings-{key[:24]}.npy"
    report_path = folder / f"embeddings-{key[:24]}.json"
    if cache.exists() and report_path.exists():
        saved = json.loads(report_path.read_text(encoding="utf-8"))
        return np.load(cache), ReadReport(saved["read"], [tuple(s) for s in saved["skipped"]])
    report = ReadReport()
    parts: list[np.ndarray] = []
    captions: list[str] = []
    batches = image_batches(files, source, batch_size, on_error, max_pixels)
    done = 0
    if voting == "image":
        for vectors, part in engine.map(embed_image_batch, batches, model=image_embedder):
            report.read += part.read
            report.skipped += part.skipped
            if vectors is not None:
                parts.append(vectors)
            done = min(len(files), done + batch_size)
            if on_progress:
                on_progress(done, len(files))
    else:
        for texts, part in engine.map(caption_image_batch, batches, model=captioner):
            report.read += part.read
            report.skipped += part.skipped
            captions += texts
            done = min(len(files), done + batch_size)
            if on_progress:
                on_progress(done, len(files))
        text_batches = [captions[i : i + batch_size] for i in range(0, len(captions), batch_size)]
        parts = list(engine.map(embed_text_batch, text_batches, model=text_embedder))
    if not parts:
        raise DataError(f"{source}: none of the {len(files)} image files could be read")
    embeddings = np.concatenate(parts).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, embeddings)
    atomic_write_bytes(cache, buf.getvalue())
    if captions:  # private captions stay here, in private/, and nowhere else
        atomic_write_bytes(folder / f"captions-{key[:24]}.json", json.dumps(captions).encode())
    atomic_write_bytes(
        report_path,
        json.dumps({"read": report.read, "skipped": report.skipped}).encode("utf-8"),
    )
    return embeddings, report


def embed_private_texts(
    source: Path, run_dir: Path, *, text_embedder: TextEmbedder
) -> tuple[np.ndarray, ReadReport]:
    """Embeddings of private texts (Aug-PE), cached under private/ only."""
    from penumbra.data.texts import read_private_texts

    texts = read_private_texts(source)
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
    key = hashlib.sha256(f"{digest}|{text_embedder.fingerprint}".encode()).hexdigest()[:24]
    cache = private_folder(run_dir) / f"text-embeddings-{key}.npy"
    if cache.exists():
        return np.load(cache), ReadReport(read=len(texts))
    embeddings = text_embedder.embed(texts).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, embeddings)
    atomic_write_bytes(cache, buf.getvalue())
    return embeddings, ReadReport(read=len(texts))
