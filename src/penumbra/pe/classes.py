"""Class-conditional PE: how many outputs (and candidates) each class gets.

With labels, PE runs once per class on that class's private samples only: the subsets are
disjoint, so by parallel composition the run's ε is one class's ε. How many outputs a class gets
must not come silently from its exact private count; it comes from a DP release of the class
counts (accounted: one more composition at the votes' noise) or from fractions the user gives
as public knowledge. Everything here is post-processing of those public numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from penumbra.pe.mechanism import apportion


def class_weights(
    classes: Sequence[str],
    *,
    noisy_counts: Sequence[int] | None = None,
    fractions: Mapping[str, float] | None = None,
) -> list[float]:
    """Each class's share of the outputs: its public fraction, or its noisy count clipped at 0
    (a DP release: using it costs nothing more)."""
    if (noisy_counts is None) == (fractions is None):
        raise ValueError("give exactly one of noisy_counts and fractions")
    if fractions is not None:
        return [float(fractions[name]) for name in classes]
    assert noisy_counts is not None
    if len(noisy_counts) != len(classes):
        raise ValueError(f"{len(noisy_counts)} noisy counts for {len(classes)} classes")
    return [float(max(0, int(c))) for c in noisy_counts]


def class_output_counts(weights: Sequence[float], num_outputs: int) -> list[int]:
    """Outputs per class: one for every class (each class is present), the rest in
    largest-remainder shares of the weights. `verify` recomputes this from the ledger."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0 or (w < 0).any() or not np.isfinite(w).all():
        raise ValueError("class weights must be a non-empty list of finite numbers >= 0")
    if num_outputs < len(w):
        raise ValueError(
            f"{num_outputs} outputs cannot hold one image of each of the {len(w)} classes"
        )
    return [int(1 + s) for s in apportion(w, num_outputs - len(w))]


def class_sizes(
    classes: Sequence[str],
    *,
    noisy_counts: Sequence[int] | None = None,
    fractions: Mapping[str, float] | None = None,
    n_accounted: int = 0,
) -> list[float]:
    """A public estimate of each class's size: its noisy count (clipped at 0), or its public
    fraction of the accounted N."""
    weights = class_weights(classes, noisy_counts=noisy_counts, fractions=fractions)
    if noisy_counts is not None:
        return weights
    return [n_accounted * w for w in weights]


def class_population(
    size_estimate: float, sigma: float, most: int, *, votes_over_sigma: float = 2.0
) -> int:
    """Candidates so that each expects `votes_over_sigma`·σ votes, from a public size estimate
    (a class's noisy count or fraction × N; for a whole run, the accounted N); at least 2, at
    most `most`."""
    ideal = math.floor(max(0.0, size_estimate) / (votes_over_sigma * sigma))
    return int(max(2, min(most, ideal)))


def class_seed(seed: int, label: int) -> int:
    """Class `label`'s public generation seed: distinct per class, the same on resume."""
    return int(np.random.SeedSequence([seed, label, 0xC1A55]).generate_state(1)[0])
