"""Image-domain Private Evolution (Lin et al. 2024), the baseline SPTI is compared against.

Candidates are image files: the random API renders public prompts with a text-to-image model,
the variation API perturbs selected images with the model's SDEdit/img2img `vary`. The PE loop
is the same one text-domain PE uses; only the payloads (relative file paths) differ.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.durable import atomic_write_bytes
from penumbra.models.protocols import ImageEmbedder, ImageVariator


class ImageFileAPI:
    """Random and variation APIs whose payloads are PNG files under `folder` (relative paths).

    Files are named by their content hash and written atomically before the population table
    that refers to them, so a resumed run finds every image it lists.
    """

    def __init__(
        self,
        generator: ImageVariator,
        folder: Path,
        prompts: Sequence[str],
        *,
        strength: float = 0.5,
        strength_decay: float = 1.0,
    ) -> None:
        if not prompts:
            raise ValueError("image-domain PE needs at least one public prompt")
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        self.generator = generator
        self.folder = Path(folder)
        self.prompts = list(prompts)
        self.strength = strength
        self.strength_decay = strength_decay
        self._vary_calls = 0

    def _save(self, images: list[Image.Image]) -> list[str]:
        names = []
        for image in images:
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="PNG")
            data = buf.getvalue()
            name = f"images/{hashlib.sha256(data).hexdigest()[:24]}.png"
            target = self.folder / name
            if not target.exists():
                atomic_write_bytes(target, data)
            names.append(name)
        return names

    def load(self, payloads: Sequence[str]) -> list[Image.Image]:
        return [Image.open(self.folder / p).convert("RGB") for p in payloads]

    def random(self, count: int, *, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), count)]
        return self._save(self.generator.generate(prompts, seed=seed))

    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        # PE shrinks the variation degree over iterations; strength_decay < 1 does that.
        strength = max(0.05, self.strength * self.strength_decay**self._vary_calls)
        self._vary_calls += 1
        rng = np.random.default_rng(seed)
        prompts = [self.prompts[int(i)] for i in rng.integers(0, len(self.prompts), len(payloads))]
        varied = self.generator.vary(self.load(payloads), prompts, strength=strength, seed=seed)
        return self._save(varied)

    def embedder(self, model: ImageEmbedder, batch_size: int = 256) -> EmbedFiles:
        return EmbedFiles(self, model, batch_size)


class EmbedFiles:
    """The PE loop's `embed` for image payloads: load files in batches, embed them."""

    def __init__(self, api: ImageFileAPI, model: ImageEmbedder, batch_size: int) -> None:
        self.api = api
        self.model = model
        self.batch_size = batch_size

    def __call__(self, payloads: list[str]) -> np.ndarray:
        parts = [
            self.model.embed(self.api.load(payloads[i : i + self.batch_size]))
            for i in range(0, len(payloads), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
