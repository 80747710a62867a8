"""Image embeddings made of parts: `builtin:pixels` and `builtin:composite`.

Votes go to the nearest render in one embedding space, so that space decides what a private
image and a render must share to match. ImageNet features see *what* an item is and barely
how light it is; raw pixels see where the light is and nothing else. DPSDA's `pe` offers both;
`builtin:composite` joins named image embedders into one space: each part's vector is
standardised (scaled to unit length per image, unless the part says `normalise: false`, as a
grey grid must to keep its brightness) and weighted, so the squared l2 distance is the
weighted sum of the parts' squared distances (use it with `pe.metric: l2`).

Nothing is learnt from the images: every scale is fixed by the configuration, so private
images go through each part exactly as they would alone. Parts are builtin: models, run in
this process: an `openai:` part would send private images to wherever its URL points, outside
the check that guards `models.image_embedder` (models/remote.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from penumbra.errors import ModelError
from penumbra.models.protocols import ImageEmbedder, Role

PIXELS_VERSION = 1
MAX_WEIGHT = 1e6  # larger weights overflow float32 vectors (inf distances)


class PixelEmbedder:
    """`builtin:pixels`: the G×G mean grey levels of an image (box filter), in [0, 1] and
    divided by G, so a vector's length is at most 1 and its scale does not depend on G."""

    role: Role = "image-embedder"

    def __init__(self, *, grid: int = 8) -> None:
        if not 1 <= grid <= 64:
            raise ModelError(f"builtin:pixels: grid must be in [1, 64], got {grid}")
        self.name = "builtin:pixels"
        self.grid = grid
        self.dim = grid * grid

    @property
    def fingerprint(self) -> str:
        return f"pixels-v{PIXELS_VERSION}-grid{self.grid}"

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        g = self.grid
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        cells = [
            np.asarray(im.convert("L").resize((g, g), Image.Resampling.BOX), np.float32) / 255.0
            for im in images
        ]
        return (np.stack(cells).reshape(len(images), self.dim) / g).astype(np.float32)


@dataclass(frozen=True)
class Part:
    uri: str
    embedder: ImageEmbedder
    weight: float
    normalise: bool
    options: dict[str, Any]


class CompositeImageEmbedder:
    """`builtin:composite`: the parts' vectors side by side, each standardised and weighted."""

    role: Role = "image-embedder"

    def __init__(self, parts: list[Part]) -> None:
        self.name = "builtin:composite"
        self.parts = parts
        identity = [
            {"uri": p.uri, "fingerprint": p.embedder.fingerprint, "weight": p.weight,
             "normalise": p.normalise, "options": p.options}
            for p in parts
        ]  # fmt: skip
        # options too: a part's fingerprint need not cover every option (effnet's image_size)
        canonical = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        self._fingerprint = f"composite-{digest}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        blocks = []
        for part in self.parts:
            x = np.asarray(part.embedder.embed(images), dtype=np.float32)
            if part.normalise:
                norms = np.linalg.norm(x, axis=1, keepdims=True)
                x = (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)
            blocks.append(x * np.float32(part.weight))
        return np.hstack(blocks) if blocks else np.zeros((len(images), 0), np.float32)


def _part(index: int, spec: Any) -> tuple[str, float, bool, dict[str, Any]]:
    where = f"builtin:composite: parts[{index}]"
    if not isinstance(spec, dict):
        raise ModelError(f"{where} must be a mapping with uri, weight (and options, normalise)")
    unknown = set(spec) - {"uri", "weight", "options", "normalise"}
    if unknown:
        raise ModelError(f"{where}: unknown keys {sorted(unknown)}; use uri, weight, options, "
                         "normalise")  # fmt: skip
    uri = spec.get("uri")
    if not isinstance(uri, str) or not uri.startswith("builtin:"):
        raise ModelError(
            f"{where}.uri must be a builtin: image embedder (parts run in this process; an "
            f"openai: part would send private images off the machine), got {uri!r}"
        )
    if uri == "builtin:composite":
        raise ModelError(f"{where}.uri: a composite cannot contain a composite")
    weight = spec.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not (math.isfinite(weight) and 0 < weight <= MAX_WEIGHT)
    ):
        raise ModelError(f"{where}.weight must be a number in (0, {MAX_WEIGHT:g}], got {weight!r}")
    normalise = spec.get("normalise", True)
    if not isinstance(normalise, bool):
        raise ModelError(f"{where}.normalise must be true or false, got {normalise!r}")
    options = spec.get("options", {})
    if not isinstance(options, dict):
        raise ModelError(f"{where}.options must be a mapping, got {options!r}")
    return uri, float(weight), normalise, options


def load_composite(parts: Any, load: Callable[..., Any]) -> CompositeImageEmbedder:
    """The composite a `parts` list describes: [{uri, weight, options, normalise}, ...]; each
    part comes from `load` (the model registry's)."""
    if not isinstance(parts, list) or not parts:
        raise ModelError(
            "builtin:composite: option `parts` must be a non-empty list of "
            "{uri, weight, options, normalise} (models.options['builtin:composite'])"
        )
    loaded = []
    for i, spec in enumerate(parts):
        uri, weight, normalise, options = _part(i, spec)
        embedder = load(uri, role="image-embedder", **options)
        loaded.append(Part(uri, embedder, weight, normalise, options))  # type: ignore[arg-type]
    return CompositeImageEmbedder(loaded)
