"""The demo "private" set: a skewed sample of the Fashion-MNIST *test* split.

The builtin generator was trained on the train split only; the demo set comes from the test
split and is strongly skewed (footwear and dark items over-represented), so a synthetic set can
only match it by learning from the votes. It ships inside the package (assets/demo_private.npz,
with the dataset's MIT licence beside it), built by scripts/make_demo_private_set.py from
Debian's dataset-fashion-mnist, so the demo needs no apt and no network. Labels are for
evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.data.fashion import CLASS_NAMES, attributes, class_thresholds, measure

POOL_SIZE = 5000
FOOTWEAR = (5, 7, 9)
# Target class shares of the pool: footwear 18% each, the other seven classes ~6.6% each.
CLASS_SHARE = np.array([0.46 / 7 if c not in FOOTWEAR else 0.18 for c in range(10)])
# Within a class, dark garments are drawn 4x as often as mid ones, light ones 1/4 as often.
DARKNESS_WEIGHT = {-1: 4.0, 0: 1.0, 1: 0.25}


@dataclass(frozen=True)
class DemoPrivateSet:
    images: list[Image.Image]  # 28×28 RGB
    labels: np.ndarray  # evaluation only: never given to the pipeline
    darkness: np.ndarray  # evaluation only: -1 dark, 0 mid, +1 light (class-relative terciles)
    class_names: tuple[str, ...] = CLASS_NAMES

    def write(self, folder: Path | str) -> Path:
        """Write the images as PNG files (a private folder for `penumbra synthesize`)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(self.images):
            image.save(out / f"{i:05d}.png")
        return out


def build_demo_pool(
    test_images: np.ndarray,
    test_labels: np.ndarray,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the test split (POOL_SIZE images with the documented skew) and the
    darkness level of each chosen image.

    Darkness is measured against the train split's class terciles (the same scale the
    generator's captions use)."""
    cuts = class_thresholds(train_images, train_labels)
    darkness = attributes(test_images, test_labels, cuts).intensity_level
    rng = np.random.default_rng(seed)
    counts = np.floor(CLASS_SHARE * POOL_SIZE).astype(int)
    counts[np.argmax(CLASS_SHARE)] += POOL_SIZE - counts.sum()
    chosen = []
    for c in range(10):
        members = np.flatnonzero(test_labels == c)
        weights = np.array([DARKNESS_WEIGHT[int(d)] for d in darkness[members]])
        take = min(int(counts[c]), len(members))
        chosen.append(rng.choice(members, size=take, replace=False, p=weights / weights.sum()))
    pool = np.concatenate(chosen)
    pool = pool[rng.permutation(len(pool))]
    return pool, darkness[pool]


def _load_asset() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = resources.files("penumbra.data").joinpath("assets/demo_private.npz")
    with resources.as_file(ref) as path, np.load(path) as data:
        return data["images"], data["labels"], data["darkness"]


def tone_cuts() -> np.ndarray:
    """[10, 2] per-class intensity cuts: below the first an item is dark, above the second
    light. They are the train split's terciles, recovered from the shipped pool (its darkness
    levels were measured against those terciles, so each cut lies between the pool items on
    either side of it): the ruler the generator's "dark"/"light" captions were trained on.
    Evaluation only."""
    images, labels, darkness = _load_asset()
    intensity = measure(images)[0]
    cuts = np.zeros((10, 2))
    for c in range(10):
        mine = labels == c
        for j, level in enumerate((-1, 0)):  # dark | mid+light, then dark+mid | light
            low = mine & (darkness <= level)
            high = mine & (darkness > level)
            cuts[c, j] = (intensity[low].max() + intensity[high].min()) / 2
    return cuts


def demo_private_set(n: int = 5000, seed: int = 0) -> DemoPrivateSet:
    """`n` images of the shipped demo pool, the same ones for the same (n, seed)."""
    if not 1 <= n <= POOL_SIZE:
        raise ValueError(f"n must be in [1, {POOL_SIZE}] (the shipped demo pool), got {n}")
    return _subset(slice(0, n), seed)


def demo_holdout_set(n_private: int, seed: int = 0) -> DemoPrivateSet:
    """The pool images that `demo_private_set(n_private, seed)` leaves out: non-members from
    exactly the private set's distribution, for the membership-inference audit."""
    if not 1 <= n_private < POOL_SIZE:
        raise ValueError(f"n_private must be in [1, {POOL_SIZE - 1}], got {n_private}")
    return _subset(slice(n_private, POOL_SIZE), seed)


def _subset(part: slice, seed: int) -> DemoPrivateSet:
    images, labels, darkness = _load_asset()
    order = np.random.default_rng(seed).permutation(len(images))[part]
    return DemoPrivateSet(
        images=[Image.fromarray(images[i], mode="L").convert("RGB") for i in order],
        labels=labels[order].copy(),
        darkness=darkness[order].copy(),
    )
