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

from penumbra.durable import atomic_write_bytes
from penumbra.models.protocols import ImageEmbedder, ImageGenerator


def _key(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


class CaptionRenderer:
    """Caption → image (cached PNG) → embedding (cached .npy)."""

    def __init__(
        self,
        generator: ImageGenerator,
        embedder: ImageEmbedder,
        folder: Path,
        *,
        seed: int,
        settings: str = "",
        on_progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.generator = generator
        self.embedder = embedder
        self.renders = folder / "renders"
        self.embeddings = folder / "cache" / "embeddings"
        self.seed = seed
        self.settings = settings
        self.on_progress = on_progress

    def _render_path(self, caption: str) -> Path:
        key = _key(caption, self.generator.fingerprint, self.seed, self.settings)
        return self.renders / f"{key}.png"

    def render(self, captions: list[str]) -> list[Path]:
        paths = [self._render_path(c) for c in captions]
        todo = sorted({c for c, p in zip(captions, paths, strict=True) if not p.exists()})
        for start in range(0, len(todo), 64):
            batch = todo[start : start + 64]
            # one seed per caption, so a caption always renders to the same image
            for caption in batch:
                seed = int(_key(caption, self.seed)[:8], 16)
                image = self.generator.generate([caption], seed=seed)[0]
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                atomic_write_bytes(self._render_path(caption), buf.getvalue())
            if self.on_progress:
                self.on_progress("render", len(batch))
        return paths

    def embed_files(self, paths: list[Path]) -> np.ndarray:
        keys = [_key(hashlib.sha256(p.read_bytes()).hexdigest(), self.embedder.fingerprint)
                for p in paths]  # fmt: skip
        cached = {k: self.embeddings / f"{k}.npy" for k in keys}
        todo = [(k, p) for k, p in zip(keys, paths, strict=True) if not cached[k].exists()]
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            vectors = self.embedder.embed([Image.open(p).convert("RGB") for _, p in batch])
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
