"""Partition predicates (k, l, t) and information-loss measures for `tables`.

Definitions follow pycanon's so that its independent check agrees: entropy with natural
logarithms and l_entropy = exp(min entropy); EMD with the ordered distance 1/(m-1) between
adjacent distinct values of a numeric sensitive attribute (m = distinct values released) and
half the L1 distance for a categorical one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Floating-point slack for comparing entropies and EMDs with their bounds.
_EPS = 1e-12


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a count vector."""
    total = counts.sum()
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def emd(p: np.ndarray, q: np.ndarray, *, ordered: bool) -> float:
    """Earth mover's distance between two distributions over the same released values."""
    if ordered:
        m = len(p)
        if m < 2:
            return 0.0
        return float(np.abs(np.cumsum(p - q)).sum() / (m - 1))
    return float(0.5 * np.abs(p - q).sum())


@dataclass(frozen=True)
class PartitionCheck:
    """Whether a set of rows may be released as one equivalence class."""

    S: np.ndarray  # sensitive codes per row
    m: int
    k: int
    l: float | None  # noqa: E741
    l_kind: str
    t: float | None
    overall: np.ndarray  # released sensitive distribution (length m)
    present: np.ndarray  # which codes occur in the released table

    ordered: bool

    def distribution(self, rows: np.ndarray) -> np.ndarray:
        counts = np.bincount(self.S[rows], minlength=self.m)
        return np.asarray(counts[self.present] / len(rows), dtype=float)

    def ok(self, rows: np.ndarray) -> bool:
        if len(rows) < self.k:
            return False
        if self.l is None and self.t is None:
            return True
        counts = np.bincount(self.S[rows], minlength=self.m)
        if self.l is not None:
            if self.l_kind == "distinct":
                if np.count_nonzero(counts) < self.l:
                    return False
            elif entropy(counts) < math.log(self.l) - _EPS:
                return False
        if self.t is not None:
            p = counts[self.present] / len(rows)
            if emd(p, self.overall[self.present], ordered=self.ordered) > self.t + _EPS:
                return False
        return True


@dataclass(frozen=True)
class ClassStats:
    k: int
    l_distinct: int
    l_entropy: float
    t: float
    ncp: list[float]  # per partition, averaged over quasi-identifiers


def equivalence_metrics(
    X: np.ndarray,
    is_cat: np.ndarray,
    span: np.ndarray,
    parts: list[np.ndarray],
    S: np.ndarray,
    check: PartitionCheck,
) -> ClassStats:
    """Achieved k, l (both kinds), t and per-class NCP of the released partitions.

    NCP (Xu et al. 2006) of a class on a numeric QI is its range over the column's range; on a
    categorical QI it is (|set| - 1) / (|domain| - 1), 0 for one value and 1 for all of them.
    """
    if not parts:
        return ClassStats(k=0, l_distinct=0, l_entropy=0.0, t=0.0, ncp=[])
    k = min(len(p) for p in parts)
    l_distinct = min(int(np.count_nonzero(np.bincount(S[p]))) for p in parts)
    l_entropy = min(math.exp(entropy(np.bincount(S[p]))) for p in parts)
    reference = check.overall[check.present]
    t = max(emd(check.distribution(p), reference, ordered=check.ordered) for p in parts)
    ncp = []
    for part in parts:
        sub = X[part]
        cost = np.ptp(sub, axis=0) / span
        for j in np.flatnonzero(is_cat):
            cost[j] = (len(np.unique(sub[:, j])) - 1) / span[j]
        ncp.append(float(cost.mean()))
    return ClassStats(k=k, l_distinct=l_distinct, l_entropy=l_entropy, t=t, ncp=ncp)


def format_number(value: float, integer: bool) -> str:
    """A range bound as written in the output: integers without '.0', others shortest repr."""
    if integer:
        return str(round(value))
    return np.format_float_positional(value, trim="-")
