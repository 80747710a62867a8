"""Rendering captions and embedding the renders, with content-keyed caches.

Renders are keyed by (prompt, generator fingerprint, seed, settings) and embeddings by (image
content hash, embedder fingerprint), so a resumed or repeated run recomputes nothing it has.
Renders of candidate captions are public (captions are DP-selected LLM text): they live in the
run folder, not under private/.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.compute.engine import Engine, LocalEngine, batched
from penumbra.durable import atomic_write_bytes
from penumbra.models.protocols import ImageEmbedder, ImageGenerator


def _key(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


def render_captions(generator: ImageGenerator, batch: list[tuple[str, int]]) -> list[bytes]:
    """One task of rendering: each caption with its own seed, as PNG bytes."""
    out = []
    for caption, seed in batch:
        image = generator.generate([caption], seed=seed)[0]
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def generate_images(generator: ImageGenerator, batch: list[tuple[str, int]]) -> list[Image.Image]:
    """One task of the final render: each output's caption with that output's own seed."""
    return [generator.generate([caption], seed=seed)[0] for caption, seed in batch]


def embed_pngs(embedder: ImageEmbedder, batch: list[bytes]) -> np.ndarray:
    """One task of embedding renders (public images: candidate captions are DP-selected)."""
    return embedder.embed([Image.open(io.BytesIO(data)).convert("RGB") for data in batch])


class CaptionRenderer:
    """Caption → image (cached PNG) → embedding (cached .npy), through a compute engine."""

    def __init__(
        self,
        generator: ImageGenerator,
        embedder: ImageEmbedder,
        folder: Path,
        *,
        seed: int,
        settings: str = "",
        on_progress: Callable[[str, int], None] | None = None,
        engine: Engine | None = None,
        batch_size: int = 64,
    ) -> None:
        self.generator = generator
        self.embedder = embedder
        self.renders = folder / "renders"
        self.embeddings = folder / "cache" / "embeddings"
        self.seed = seed
        self.settings = settings
        self.on_progress = on_progress
        self.engine = engine if engine is not None else LocalEngine()
        self.batch_size = batch_size

    def _render_path(self, caption: str) -> Path:
        key = _key(caption, self.generator.fingerprint, self.seed, self.settings)
        return self.renders / f"{key}.png"

    def render(self, captions: list[str]) -> list[Path]:
        paths = [self._render_path(c) for c in captions]
        todo = sorted({c for c, p in zip(captions, paths, strict=True) if not p.exists()})
        # one seed per caption, so a caption always renders to the same image, anywhere
        jobs = [(c, int(_key(c, self.seed)[:8], 16)) for c in todo]
        batches = batched(jobs, self.batch_size)
        results = self.engine.map(render_captions, batches, model=self.generator)
        for batch, pngs in zip(batches, results, strict=True):
            for (caption, _), png in zip(batch, pngs, strict=True):
                atomic_write_bytes(self._render_path(caption), png)
            if self.on_progress:
                self.on_progress("render", len(batch))
        return paths

    def embed_files(self, paths: list[Path]) -> np.ndarray:
        keys = [_key(hashlib.sha256(p.read_bytes()).hexdigest(), self.embedder.fingerprint)
                for p in paths]  # fmt: skip
        cached = {k: self.embeddings / f"{k}.npy" for k in keys}
        todo = list(
            {k: p for k, p in zip(keys, paths, strict=True) if not cached[k].exists()}.items()
        )
        batches = batched(todo, self.batch_size)
        payloads = ([p.read_bytes() for _, p in batch] for batch in batches)
        results = self.engine.map(embed_pngs, payloads, model=self.embedder)
        for batch, vectors in zip(batches, results, strict=True):
            for (k, _), v in zip(batch, vectors, strict=True):
                buf = io.BytesIO()
                np.save(buf, v.astype(np.float32))
                atomic_write_bytes(cached[k], buf.getvalue())
            if self.on_progress:
                self.on_progress("embed", len(batch))
        return np.stack([np.load(cached[k]) for k in keys]).astype(np.float32)

    def __call__(self, captions: list[str]) -> np.ndarray:
        """The PE loop's `embed` for image voting."""
        return self.embed_files(self.render(captions))
