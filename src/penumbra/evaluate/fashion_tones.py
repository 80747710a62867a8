"""How dark or light garments are within each class, on Fashion-MNIST's own ruler.

The demo's private set over-represents dark items (4x as often as mid ones, light ones 1/4 as
often), so a synthetic set that learned from the votes must carry that skew within each class,
not only the class mix. Levels use the train split's per-class terciles (the ruler the builtin
generator's "dark"/"light" captions were trained on). Evaluation only, not DP.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from penumbra.data.demo import tone_cuts
from penumbra.data.fashion import measure

LEVELS = ("dark", "mid", "light")


def as_fashion_mnist(image: Image.Image) -> np.ndarray:
    """A 28×28 grey array on Fashion-MNIST's scale: an image of another size is taken as the
    whole frame (builtin:fashion-t2i renders the data's frame at any size) and resized; real
    28×28 images pass unchanged."""
    gray = image.convert("L")
    if gray.size != (28, 28):
        gray = gray.resize((28, 28), Image.Resampling.BOX)
    return np.asarray(gray)


def tone_levels(images: Sequence[Image.Image], labels: np.ndarray) -> np.ndarray:
    """0 dark, 1 mid, 2 light, per image, against its class's cuts."""
    if len(images) == 0:
        return np.zeros(0, dtype=int)
    intensity = measure(np.stack([as_fashion_mnist(i) for i in images]))[0]
    cuts = tone_cuts()[labels]
    return np.where(intensity < cuts[:, 0], 0, np.where(intensity > cuts[:, 1], 2, 1))


def tone_mix_by_class(levels: np.ndarray, labels: np.ndarray) -> list[list[float] | None]:
    """Per class, the shares of dark, mid and light items (None for a class with no items)."""
    out: list[list[float] | None] = []
    for c in range(10):
        mine = levels[labels == c]
        out.append(None if len(mine) == 0 else
                   (np.bincount(mine, minlength=3) / len(mine)).tolist())  # fmt: skip
    return out


def tone_mix_distance(
    reference: list[list[float] | None],
    other: list[list[float] | None],
    class_weights: np.ndarray,
) -> float:
    """Total variation between the dark/mid/light mixes, averaged over the classes with the
    reference's class weights; a class missing from `other` counts as the largest distance."""
    total = 0.0
    for c, weight in enumerate(class_weights):
        ref, oth = reference[c], other[c]
        if ref is None or weight == 0:
            continue
        tv = 1.0 if oth is None else 0.5 * float(np.abs(np.array(ref) - np.array(oth)).sum())
        total += float(weight) * tv
    return total / float(sum(w for c, w in enumerate(class_weights) if reference[c] is not None))
