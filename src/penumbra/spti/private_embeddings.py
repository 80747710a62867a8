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
from collections.abc import Callable
from pathlib import Path

import numpy as np

from penumbra.compute.engine import Engine, LocalEngine
from penumbra.data.images import OnError, ReadReport, list_image_files
from penumbra.durable import atomic_write_bytes
from penumbra.errors import DataError
from penumbra.models.batches import (
    caption_image_batch,
    embed_image_batch,
    embed_text_batch,
    image_batches,
)
from penumbra.models.protocols import Captioner, ImageEmbedder, TextEmbedder


def private_folder(run_dir: Path) -> Path:
    folder = run_dir / "private"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


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
