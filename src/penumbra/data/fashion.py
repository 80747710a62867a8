"""Fashion-MNIST (MIT licence, Zalando Research) as shipped by Debian's dataset-fashion-mnist,
and the caption scheme penumbra's builtin text-to-image model is trained on.

Captions combine the class with attributes measured from each image (dark/light from the mean
intensity of the garment's pixels, slim/wide from the filled area, plain/patterned from the
texture), each relative to the image's own class, phrased with many templates and synonyms so
the model follows free text an LLM writes rather than ten fixed strings. A few templates and
synonyms are held out of training to test generalisation.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
NOUNS: tuple[tuple[str, ...], ...] = (
    ("t-shirt", "top", "tee", "short-sleeved shirt", "crew-neck tee"),
    ("pair of trousers", "pair of pants", "trousers", "pants", "pair of jeans"),
    ("pullover", "sweater", "jumper", "knit sweater", "long-sleeved pullover"),
    ("dress", "summer dress", "gown", "frock", "long dress"),
    ("coat", "jacket", "overcoat", "winter coat", "parka"),
    ("sandal", "pair of sandals", "strappy sandal", "summer sandal", "flip-flop"),
    ("shirt", "button-up shirt", "blouse", "collared shirt", "flannel shirt"),
    ("sneaker", "pair of sneakers", "running shoe", "trainer", "low-top sneaker"),
    ("bag", "handbag", "purse", "tote bag", "shoulder bag"),
    ("ankle boot", "pair of ankle boots", "boot", "short boot", "chelsea boot"),
)
ADJECTIVES = {
    "dark": ("dark", "black", "dark-toned", "deep-colored", "charcoal"),
    "light": ("light", "white", "pale", "light-colored", "cream"),
    "slim": ("slim", "narrow", "fitted", "slender", "skinny"),
    "wide": ("wide", "loose", "broad", "bulky", "oversized"),
    "plain": ("plain", "simple", "solid", "smooth", "minimal"),
    "patterned": ("patterned", "printed", "textured", "detailed", "striped"),
}
FILLERS = ("stylish", "classic", "modern", "casual", "new", "everyday")
TEMPLATES = (
    "a photo of {a} {adj}{noun}",
    "{adj}{noun}",
    "a {adj}{noun} on a black background",
    "product photo of {a} {adj}{noun}",
    "a picture showing {a} {adj}{noun}",
    "an image of {a} {adj}{noun}",
    "{a} {adj}{noun}",
    "a grayscale photo of {a} {adj}{noun}",
)
# Held out of training: the last synonym of every noun and adjective, and these templates.
HELD_OUT_TEMPLATES = ("a catalogue image of {a} {adj}{noun}", "here is {a} {adj}{noun}")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str, root: Path = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels uint8 [n]) for split "train" (60k) or "test" (10k)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images.is_file():
        raise FileNotFoundError(
            f"{images}: missing; install Debian's dataset-fashion-mnist (apt-get install "
            "dataset-fashion-mnist)"
        )
    return _read_idx(images), _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Attributes:
    """Per-image measurements and their class-relative terciles (-1 low, 0 mid, +1 high)."""

    intensity: np.ndarray
    area: np.ndarray
    texture: np.ndarray
    intensity_level: np.ndarray
    area_level: np.ndarray
    texture_level: np.ndarray


def measure(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean garment intensity, filled-area fraction and texture of uint8 [n, 28, 28] images."""
    x = images.astype(np.float32) / 255.0
    mask = x > 0.08
    area = mask.mean(axis=(1, 2))
    counts = np.maximum(mask.sum(axis=(1, 2)), 1)
    intensity = (x * mask).sum(axis=(1, 2)) / counts
    dx = np.abs(np.diff(x, axis=2)) * (mask[:, :, 1:] & mask[:, :, :-1])
    dy = np.abs(np.diff(x, axis=1)) * (mask[:, 1:, :] & mask[:, :-1, :])
    texture = (dx.sum(axis=(1, 2)) + dy.sum(axis=(1, 2))) / counts
    return intensity, area, texture


def class_thresholds(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[10, 3 measures, 2 cut points]: terciles of each measure within each class."""
    values = np.stack(measure(images), axis=1)
    cuts = np.zeros((10, 3, 2))
    for c in range(10):
        cuts[c] = np.quantile(values[labels == c], [1 / 3, 2 / 3], axis=0).T
    return cuts


def attributes(images: np.ndarray, labels: np.ndarray, cuts: np.ndarray) -> Attributes:
    intensity, area, texture = measure(images)
    levels = []
    for m, values in enumerate((intensity, area, texture)):
        lo, hi = cuts[labels, m, 0], cuts[labels, m, 1]
        levels.append(np.where(values < lo, -1, np.where(values > hi, 1, 0)))
    return Attributes(intensity, area, texture, *levels)


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def make_caption(
    label: int,
    levels: tuple[int, int, int],
    rng: np.random.Generator,
    *,
    held_out: bool = False,
) -> str:
    """One caption for an image of class `label` with (intensity, area, texture) levels.

    Training captions never use the held-out synonyms or templates; `held_out=True` uses only
    those, to test whether the model follows phrasings it never saw."""
    pick = (lambda xs: xs[-1]) if held_out else (lambda xs: xs[int(rng.integers(len(xs) - 1))])
    words = []
    intensity, area, texture = levels
    names = (("light", "dark"), ("wide", "slim"), ("patterned", "plain"))
    for level, (high, low) in zip((intensity, area, texture), names, strict=True):
        # mention an attribute when it is distinctive, and not always even then
        if level != 0 and (held_out or rng.random() < 0.8):
            words.append(pick(ADJECTIVES[high if level > 0 else low]))
    if not held_out and rng.random() < 0.25:
        words.insert(0, FILLERS[int(rng.integers(len(FILLERS)))])
    if not held_out:
        rng.shuffle(words)
    noun = pick(NOUNS[label])
    adj = "".join(w + " " for w in words)
    templates = HELD_OUT_TEMPLATES if held_out else TEMPLATES
    template = templates[int(rng.integers(len(templates)))]
    first = (adj or noun).split()[0]
    return template.format(a=_article(first), adj=adj, noun=noun).strip()
