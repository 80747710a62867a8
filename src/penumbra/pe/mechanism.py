"""The discrete Gaussian mechanism on integer vote histograms, thresholding and selection.

Everything draws from an explicit source of randomness: the caller decides where it comes from
(the OS CSPRNG in real runs, see penumbra.privacy.noise).
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

from penumbra.privacy.dgauss import sample_discrete_gaussian

Selection = Literal["rank", "sample", "proportional"]


def add_discrete_gaussian_noise(
    votes: np.ndarray, sigma: Fraction, rng: random.Random
) -> npt.NDArray[np.int64]:
    """votes + N_Z(0, σ²) independently on every bin: the DP release, integers in and out.

    Integer votes and an exact sampler leave no floating-point trace of the clean count
    (Mironov 2012; Haney et al. 2022); σ is the exact rational parameter on integer votes
    (`penumbra.privacy.sampling_sigma`). `rng` is the OS CSPRNG in real runs."""
    clean = np.asarray(votes)
    if clean.ndim != 1 or not np.issubdtype(clean.dtype, np.integer):
        raise ValueError("votes must be a 1-D array of integer vote counts")
    if not isinstance(sigma, Fraction) or sigma <= 0:
        raise ValueError(f"sigma must be a positive Fraction, got {sigma!r}")
    noise = sample_discrete_gaussian(sigma, len(clean), rng)
    result: npt.NDArray[np.int64] = clean.astype(np.int64) + noise
    return result


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
    round-robin when fewer bins have weight; sample: `count` draws ∝ weight, with replacement;
    proportional: each bin gets its largest-remainder share of `count` (`apportion`), so the
    mix of outputs follows the histogram without sampling noise. All-zero weights fall back to
    uniform, so a run never stalls on an empty histogram.
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
    if method == "proportional":
        shares = apportion(w, count)
        return np.repeat(np.arange(len(w)), shares).astype(np.int64)
    raise ValueError(f"selection must be 'rank', 'sample' or 'proportional', got {method!r}")


def apportion(weights: np.ndarray, count: int) -> np.ndarray:
    """Integer shares of `count` ∝ weights by the largest-remainder (Hamilton) method: each bin
    gets ⌊count·w/Σw⌋ and the remaining units go to the largest fractional parts, ties to the
    lowest index. Shares sum to `count` and differ from count·w/Σw by less than 1."""
    w = np.asarray(weights, dtype=np.float64)
    if count < 0 or w.ndim != 1 or len(w) == 0 or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("apportion needs count >= 0 and a non-empty 1-D array of weights >= 0")
    total = w.sum()
    quota = count * (w / total if total > 0 else np.full(len(w), 1.0 / len(w)))
    shares: np.ndarray = np.floor(quota).astype(np.int64)
    left = count - int(shares.sum())
    if left > 0:
        order = np.lexsort((np.arange(len(w)), -(quota - shares)))
        shares[order[:left]] += 1
    return shares
