"""Nearest-neighbour vote histograms: the only place private embeddings are read.

Each private sample adds 1/√k to each of its k nearest candidates, so its contribution to the
histogram has L2 norm exactly 1 (DESIGN.md invariant 5). Candidates are ranked with a fast
fp32 (or bf16) GEMM; a row's fast top-k is kept only when the gap to its (k+1)-th candidate is
larger than the rounding-error bound of the scores, and every other row (near-ties, exact
ties) is recomputed in float64 against all candidates. So the votes equal a brute-force float64
reference exactly, ties going to the lowest candidate index, and memory stays bounded: blocks
of private rows against all candidates, never the full n×m matrix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

Metric = Literal["l2", "cosine"]
Backend = Literal["auto", "torch", "faiss", "triton"]
Voter = Callable[[np.ndarray], np.ndarray]

_DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
_SHORTLIST = 32  # fast-path candidates kept per row for the exact re-rank of near-ties


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
    if not np.isfinite(candidates).all():
        raise ValueError("candidate embeddings contain NaN or infinity")


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
    per_row = 4 * m + 16 * d + 64  # fp32 scores + the row in fp32/float64
    return int(max(1, min(65536, budget // max(per_row, 1))))


def _unit_roundoff(device: torch.device, low_precision: bool) -> float:
    if low_precision:
        return 2.0**-8  # bf16
    if device.type == "cuda" and torch.get_float32_matmul_precision() != "highest":
        return 2.0**-11  # TF32 tensor cores
    return 2.0**-24


class _Shortlister:
    """Approximate scores ||x − c||² for the `width` best candidates of each private row."""

    def __init__(
        self, candidates: np.ndarray, backend: str, device: torch.device, low_precision: bool
    ) -> None:
        self.backend = backend
        self.device = device
        c32 = np.ascontiguousarray(candidates, dtype=np.float32)
        if backend == "faiss":
            import faiss

            self.index = faiss.IndexFlatL2(c32.shape[1])
            self.index.add(c32)
        else:  # torch, and triton (whose wider shortlists for near-tie rows use torch)
            self.c = torch.from_numpy(c32).to(device)
            self.c_sq = (self.c * self.c).sum(dim=1)
            self.c_gemm = self.c.to(torch.bfloat16) if low_precision else self.c

    def __call__(self, x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if self.backend == "faiss":
            dist, idx = self.index.search(x32, width)
            return idx.astype(np.int64), dist.astype(np.float64)
        xt = torch.from_numpy(x32).to(self.device)
        if self.backend == "triton" and width == 2:
            from penumbra.pe.triton_nn import nearest_two

            best_idx, best, second = nearest_two(xt, self.c, self.c_sq)
            x_sq = (xt * xt).sum(dim=1)
            pair = torch.stack([best_idx, torch.full_like(best_idx, -1)], dim=1)
            pair_values = torch.stack([best + x_sq, second + x_sq], dim=1)
            return pair.cpu().numpy(), pair_values.double().cpu().numpy()
        # ||x||² is constant per row, so ranking by ||c||² − 2x·c ranks by distance; addmm
        # writes the score block once instead of three temporaries.
        if self.c_gemm.dtype == torch.float32:
            scores = torch.addmm(self.c_sq[None, :], xt, self.c_gemm.T, alpha=-2.0)
        else:
            scores = self.c_sq[None, :] - 2.0 * (xt.to(self.c_gemm.dtype) @ self.c_gemm.T).float()
        top = torch.topk(scores, width, dim=1, largest=False, sorted=True)
        del scores
        values = top.values + (xt * xt).sum(dim=1, keepdim=True)
        return top.indices.cpu().numpy(), values.double().cpu().numpy()


def _exact_topk_rows(
    x: np.ndarray, c: np.ndarray, k: int, max_elements: int = 1 << 22
) -> np.ndarray:
    """Exact k nearest (float64, ties to the lowest index) for a few rows, chunked over c."""
    x = np.asarray(x, dtype=np.float64)
    chunk = max(1, max_elements // max(1, x.shape[0] * x.shape[1]))
    best_d = np.full((x.shape[0], 0), np.inf)
    best_i = np.zeros((x.shape[0], 0), dtype=np.int64)
    for start in range(0, c.shape[0], chunk):
        d = exact_sq_distances(x, np.asarray(c[start : start + chunk], dtype=np.float64))
        i = np.broadcast_to(np.arange(start, start + d.shape[1]), d.shape)
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, i], axis=1)
        order = np.lexsort((all_i, all_d), axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_i = np.take_along_axis(all_i, order, axis=1)
    return best_i


def _rerank_shortlist(
    x: np.ndarray,
    c: np.ndarray,
    idx: np.ndarray,
    approx: np.ndarray,
    bound: np.ndarray,
    k: int,
) -> np.ndarray:
    """Exact top-k of rows from their shortlist, or from all candidates when the shortlist
    might have missed one (its last fast score is within the error bound of the k-th)."""
    x64 = np.asarray(x, dtype=np.float64)
    exact = np.full(idx.shape, np.inf)
    # A candidate whose fast score exceeds the k-th by more than 2·bound has at least k
    # candidates certainly closer: it cannot win, so only the rest are computed exactly.
    contender = approx <= approx[:, k - 1 : k] + 2.0 * bound[:, None]
    for j in range(idx.shape[1]):  # column by column: memory stays at rows × d
        rows = np.flatnonzero(contender[:, j])
        if len(rows) == 0:
            continue
        diff = x64[rows] - np.asarray(c[idx[rows, j]], dtype=np.float64)
        exact[rows, j] = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((idx, exact), axis=1)[:, :k]
    chosen = np.take_along_axis(idx, order, axis=1)
    if idx.shape[1] < c.shape[0]:
        kth = np.take_along_axis(exact, order[:, -1:], axis=1)[:, 0]
        missed = approx[:, -1] - bound <= kth
        if missed.any():
            chosen[missed] = _exact_topk_rows(x64[missed], c, k)
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
    """Exact k nearest candidates of each private row, as a set per row: [n, k] indices.

    A row's fast (fp32 or bf16) top-k is accepted only when the gap between its k-th and
    (k+1)-th score exceeds twice the rounding-error bound of the scores; otherwise (near-ties,
    exact ties) the row is recomputed in float64 against all candidates, ties to the lowest
    index. The result is the brute-force float64 answer, whatever the fast path's precision.
    """
    _check_inputs(private, candidates, k, metric)
    if backend == "auto":
        backend = "torch"
    if backend not in ("torch", "faiss", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch', 'faiss' or 'triton', got {backend!r}")
    if backend == "triton":
        from penumbra.pe.triton_nn import triton_available

        if k != 1 or low_precision:
            raise ValueError("the triton backend computes exact 1-NN votes: use k=1, fp32")
        if not triton_available():
            raise ValueError("the triton backend needs the triton package: pip install triton")
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    n, m = private.shape[0], candidates.shape[0]
    if n == 0:
        return np.zeros((0, k), dtype=np.int64)
    if k == m:
        return np.broadcast_to(np.arange(m), (n, m)).copy()
    c = _normalise(candidates) if metric == "cosine" else candidates
    dev = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    if backend == "faiss":
        low_precision = False
    unit = _unit_roundoff(dev, low_precision)
    shortlister = _Shortlister(c, backend, dev, low_precision)
    c_sq_max = float(np.max(np.einsum("ij,ij->i", c, c, dtype=np.float64)))
    d = c.shape[1]
    rows = block_size or default_block_size(m, d, dev)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, rows):
        xb = private[start : start + rows]
        if metric == "cosine":
            xb = _normalise(xb)
        idx, approx = shortlister(xb, k + 1)
        # Rounding error of an fp32 score ||x||² + ||c||² − 2x·c (inputs rounded to fp32, a GEMM
        # of length d) is below (2d + 4)·u·(||x||² + ||c||²); use twice that.
        x_sq = np.einsum("ij,ij->i", xb, xb, dtype=np.float64)
        if not np.isfinite(x_sq).all():
            raise ValueError("private embeddings contain NaN or infinity")
        scale = x_sq + c_sq_max
        bound = 4.0 * (d + 2) * unit * scale
        unsafe = approx[:, k] - approx[:, k - 1] <= 2.0 * bound
        chosen = idx[:, :k]
        if unsafe.any():
            # Near-ties are rare: only their rows get a wider shortlist and an exact re-rank.
            x_unsafe = xb[unsafe]
            wide_idx, wide_approx = shortlister(x_unsafe, min(m, k + _SHORTLIST))
            chosen[unsafe] = _rerank_shortlist(x_unsafe, c, wide_idx, wide_approx, bound[unsafe], k)
        out[start : start + len(xb)] = chosen
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
