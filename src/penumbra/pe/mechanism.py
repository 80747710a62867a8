"""The Gaussian mechanism on vote histograms, thresholding and selection.

Everything draws from an explicit numpy Generator: the caller decides where randomness comes
from (a cryptographically seeded one in real runs, see penumbra.privacy.noise).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Selection = Literal["rank", "sample"]


def add_gaussian_noise(histogram: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """histogram + N(0, σ²) independently on every bin (the DP release)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    clean = np.asarray(histogram, dtype=np.float64)
    return clean + rng.normal(0.0, sigma, size=clean.shape)


def apply_threshold(noisy: np.ndarray, threshold: float) -> np.ndarray:
    """max(h − H, 0): post-processing that removes bins the noise alone could have filled."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return np.maximum(np.asarray(noisy, dtype=np.float64) - threshold, 0.0)


def select(
    weights: np.ndarray, count: int, method: Selection, rng: np.random.Generator
) -> np.ndarray:
    """Indices of `count` parents for the next population (post-processing of a DP release).

    rank: the top `count` bins, highest first (ties to the lowest index), repeated
    round-robin when fewer bins have weight; sample: `count` draws ∝ weight, with replacement.
    All-zero weights fall back to uniform, so a run never stalls on an empty histogram.
    """
    w = np.asarray(weights, dtype=np.float64)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if method == "rank":
        order = np.lexsort((np.arange(len(w)), -w))
        positive = order[w[order] > 0]
        pool = positive if len(positive) else order
        return np.resize(pool, count).astype(np.int64)
    if method == "sample":
        total = w.sum()
        p = w / total if total > 0 else np.full(len(w), 1.0 / len(w))
        return rng.choice(len(w), size=count, replace=True, p=p).astype(np.int64)
    raise ValueError(f"selection must be 'rank' or 'sample', got {method!r}")
