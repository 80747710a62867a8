"""Nearest-neighbour vote histograms: the only place private embeddings are read.

Each private sample adds 1/√k to each of its k nearest candidates, so its contribution to the
histogram has L2 norm exactly 1 (DESIGN.md invariant 5). Distances are first ranked with a fast
fp32 (or bf16/fp16) GEMM, then the shortlisted candidates are re-ranked with float64 distances
computed the way a brute-force reference would, and any row whose shortlist might have missed
a true neighbour (a near-tie within the fp32 error bound) is recomputed exactly. So the votes
are exact, ties going to the lowest candidate index, and memory stays bounded: blocks of
private rows against all candidates, never the full n×m matrix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

Metric = Literal["l2", "cosine"]
Backend = Literal["auto", "torch", "faiss"]
Voter = Callable[[np.ndarray], np.ndarray]

_SHORTLIST_EXTRA = 8  # candidates beyond k kept for the exact re-rank
_DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024


def _check_inputs(private: np.ndarray, candidates: np.ndarray, k: int, metric: str) -> None:
    if private.ndim != 2 or candidates.ndim != 2:
        raise ValueError("private and candidates must be 2-D arrays [n, d] and [m, d]")
    if private.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"embedding sizes differ: private d={private.shape[1]}, "
            f"candidates d={candidates.shape[1]}"
        )
    if candidates.shape[0] == 0:
        raise ValueError("no candidates to vote for")
    if not 1 <= k <= candidates.shape[0]:
        raise ValueError(f"k must be in [1, {candidates.shape[0]}] (number of candidates), got {k}")
    if metric not in ("l2", "cosine"):
        raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    if not (np.isfinite(private).all() and np.isfinite(candidates).all()):
        raise ValueError("embeddings contain NaN or infinity")


def _normalise(x: np.ndarray) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=1, keepdims=True)
    return x64 / np.where(norms == 0, 1.0, norms)


def exact_sq_distances(private: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """float64 squared distances, (x − c)² summed: the brute-force reference formula."""
    diff = private[:, None, :] - candidates[None, :, :]
    out: np.ndarray = np.einsum("ijk,ijk->ij", diff, diff)
    return out


def _available_memory() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2 * _DEFAULT_BUDGET_BYTES


def default_block_size(m: int, d: int, device: torch.device) -> int:
    """Private rows per block so the block's score matrix and inputs fit a bounded budget."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = min(_DEFAULT_BUDGET_BYTES, _available_memory() // 8)
    per_row = 4 * (m + d) + 8 * d * (_SHORTLIST_EXTRA + 8)
    return int(max(1, min(65536, budget // max(per_row, 1))))


def _shortlist_torch(
    private: np.ndarray,
    candidates: np.ndarray,
    width: int,
    block_size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-`width` candidates per private row (ascending score) and the scores."""
    c = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.float32)).to(device)
    c_sq = (c * c).sum(dim=1)
    c_low = c.to(dtype)
    n = private.shape[0]
    idx_out = np.empty((n, width), dtype=np.int64)
    score_out = np.empty((n, width), dtype=np.float64)
    for start in range(0, n, block_size):
        x = torch.from_numpy(
            np.ascontiguousarray(private[start : start + block_size], dtype=np.float32)
        ).to(device)
        # ||x||² is constant per row, so ranking by ||c||² − 2x·c ranks by distance.
        scores = c_sq[None, :] - 2.0 * (x.to(dtype) @ c_low.T).float()
        top = torch.topk(scores, width, dim=1, largest=False, sorted=True)
        x_sq = (x * x).sum(dim=1, keepdim=True)
        idx_out[start : start + len(x)] = top.indices.cpu().numpy()
        score_out[start : start + len(x)] = (top.values + x_sq).double().cpu().numpy()
    return idx_out, score_out


def _shortlist_faiss(
    private: np.ndarray, candidates: np.ndarray, width: int, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatL2(candidates.shape[1])
    index.add(np.ascontiguousarray(candidates, dtype=np.float32))
    n = private.shape[0]
    idx_out = np.empty((n, width), dtype=np.int64)
    score_out = np.empty((n, width), dtype=np.float64)
    for start in range(0, n, block_size):
        block = np.ascontiguousarray(private[start : start + block_size], dtype=np.float32)
        dist, idx = index.search(block, width)
        idx_out[start : start + len(block)] = idx
        score_out[start : start + len(block)] = dist
    return idx_out, score_out


def _exact_topk_rows(x: np.ndarray, c: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Exact k nearest (float64, ties to the lowest index) for a few rows, chunked over c."""
    best_d = np.full((x.shape[0], 0), np.inf)
    best_i = np.zeros((x.shape[0], 0), dtype=np.int64)
    for start in range(0, c.shape[0], chunk):
        d = exact_sq_distances(x, c[start : start + chunk])
        i = np.broadcast_to(np.arange(start, start + d.shape[1]), d.shape)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, i], axis=1)
        order = np.lexsort((all_i, all_d), axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_i = np.take_along_axis(all_i, order, axis=1)
    return best_i


def _exact_from_shortlist(
    x: np.ndarray,
    c: np.ndarray,
    shortlist: np.ndarray,
    approx: np.ndarray,
    k: int,
    unit: float = 2.0**-24,
) -> np.ndarray:
    """Re-rank a shortlist in float64; recompute rows whose shortlist may be incomplete."""
    width = shortlist.shape[1]
    cand = c[shortlist]  # [n, width, d]
    diff = x[:, None, :] - cand
    exact = np.einsum("ijk,ijk->ij", diff, diff)
    order = np.lexsort((shortlist, exact), axis=1)[:, :k]
    chosen = np.take_along_axis(shortlist, order, axis=1)
    if width >= c.shape[0]:
        return chosen
    kth_exact = np.take_along_axis(exact, order[:, -1:], axis=1)[:, 0]
    # GEMM error on ||x||² + ||c||² − 2x·c is below ~d·u·(||x||² + ||c||²) in size (u: unit
    # roundoff, 2⁻²⁴ for fp32);
    # a candidate outside the shortlist scored at least approx[:, -1], so if that bound still
    # separates it from the k-th exact distance, nothing outside the shortlist can win.
    scale = (x * x).sum(axis=1) + float((c * c).sum(axis=1).max())
    bound = 4.0 * max(x.shape[1], 16) * unit * scale
    unsafe = approx[:, -1] - bound <= kth_exact
    if unsafe.any():
        chosen[unsafe] = _exact_topk_rows(x[unsafe], c, k)
    return chosen


def nearest_candidates(
    private: np.ndarray,
    candidates: np.ndarray,
    *,
    k: int = 1,
    metric: Metric = "l2",
    backend: Backend = "auto",
    block_size: int | None = None,
    low_precision: bool = False,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Exact indices [n, k] of each private row's k nearest candidates, nearest first."""
    _check_inputs(private, candidates, k, metric)
    if metric == "cosine":
        x, c = _normalise(private), _normalise(candidates)
    else:
        x, c = np.asarray(private, np.float64), np.asarray(candidates, np.float64)
    n, m = x.shape[0], c.shape[0]
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)
    dtype = torch.bfloat16 if low_precision else torch.float32
    unit = 2.0**-8 if low_precision else 2.0**-24  # unit roundoff of the ranking GEMM
    width = min(m, k + (4 * _SHORTLIST_EXTRA if low_precision else _SHORTLIST_EXTRA))
    if backend == "auto":
        backend = "torch"
    if backend not in ("torch", "faiss"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    rows = block_size or default_block_size(m, x.shape[1], dev)
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    out = np.empty((n, k), dtype=np.int64)
    # Shortlists are made and re-ranked block by block so memory stays bounded.
    for start in range(0, n, rows):
        xb = x[start : start + rows]
        if backend == "faiss":
            short, approx = _shortlist_faiss(xb, c, width, rows)
        else:
            short, approx = _shortlist_torch(xb, c, width, rows, dev, dtype)
        out[start : start + len(xb)] = _exact_from_shortlist(xb, c, short, approx, k, unit)
    return out


def count_votes(
    private: np.ndarray,
    candidates: np.ndarray,
    *,
    k: int = 1,
    metric: str = "l2",
    backend: str = "auto",
    block_size: int | None = None,
) -> np.ndarray:
    """Exact k-NN vote histogram (float64, one bin per candidate); each sample adds 1/√k to
    each of its k nearest candidates. Ties go to the lowest candidate index."""
    nearest = nearest_candidates(
        private,
        candidates,
        k=k,
        metric=metric,  # type: ignore[arg-type]
        backend=backend,  # type: ignore[arg-type]
        block_size=block_size,
    )
    counts = np.bincount(nearest.ravel(), minlength=candidates.shape[0]).astype(np.float64)
    return counts / math.sqrt(k)


def local_voter(
    private: np.ndarray, *, k: int = 1, metric: str = "l2", backend: str = "auto"
) -> Voter:
    """The voter of a single holder: `votes = voter(candidate_embeddings)`.

    Private embeddings stay inside this closure; the PE loop only ever sees histograms, so a
    secure multi-holder aggregation can replace this callable without touching the loop.
    """

    def voter(candidates: np.ndarray) -> np.ndarray:
        return count_votes(private, candidates, k=k, metric=metric, backend=backend)

    return voter
