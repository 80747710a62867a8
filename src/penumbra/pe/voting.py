"""Nearest-neighbour vote histograms: the only place private embeddings are read.

Each private sample adds 1/√k to each of its k nearest candidates, so its contribution to the
histogram has L2 norm exactly 1 (DESIGN.md invariant 5). Candidates are ranked with a fast
fp32 (or bf16) GEMM; a row's fast top-k is kept only when the gap to its (k+1)-th candidate is
larger than the rounding-error bound of the scores, and every other row (near-ties, exact
ties) is re-ranked in float64. So the votes equal a brute-force float64 reference exactly,
ties going to the lowest candidate index, and memory stays bounded: blocks of private rows
against all candidates, never the full n×m matrix.

The default CPU path (`_CpuRanker`, fp32) is built for caches and cores: blocks of ~1024 rows
whose scores are still in cache when they are reduced, one block per worker thread (each
running torch single-threaded, so the small reductions never wait on an OpenMP barrier), a
two-level top-k (chunk minima, then only the best chunks), a per-row error bound, and one
float64 re-rank at the end for the few near-tie rows, from shortlists the blocks kept.

Beside this module: score_bounds (the rounding-error bounds a fast gap is checked against),
shortlist (the faiss, triton, bf16 and GPU paths' fast shortlists) and vote_blocks (block
sizes, and the worker threads of the CPU path).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from penumbra.pe.score_bounds import (
    _MAX_NORM,
    _U32,
    _gemm_input_roundoff,
    _unit_roundoff,
    score_error_bound,
)
from penumbra.pe.shortlist import _Shortlister
from penumbra.pe.vote_blocks import _cpu_workers, _run_single_threaded_workers, default_block_size

Metric = Literal["l2", "cosine"]
Backend = Literal["auto", "torch", "faiss", "triton"]
Voter = Callable[[np.ndarray], np.ndarray]

_SHORTLIST = 32  # fast-path candidates kept per row for the exact re-rank of near-ties
_CHUNK = 32  # candidates per chunk of the two-level top-k (chunk minima, then the best chunks)
# near-tie rows wait for one batched re-rank, up to this many float64 values of them; a batch is
# re-ranked this many values at a time, so its temporaries stay small (fresh pages are slow)
_PENDING_VALUES = 1 << 20
_RERANK_VALUES = 1 << 15
_PAD_SCORE = 3.0e38  # fp32 score of the padding candidates, above every score that is trusted


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


class _NearTies:
    """Rows whose fast gap was within the bound, with the shortlists their exact re-rank
    needs; re-ranked together (per-block re-ranks cost more in Python than in arithmetic),
    early once `_PENDING_VALUES` have piled up, so memory stays bounded. The re-ranked rows
    are written by `finish`, after every block has written its fast choices."""

    def __init__(self, c: np.ndarray, k: int) -> None:
        self.c, self.k = c, k
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.values = 0
        self.done: list[tuple[np.ndarray, np.ndarray]] = []
        self.lock = threading.Lock()

    def add(self, *part: np.ndarray) -> None:
        """part: global row numbers, float64 rows, shortlist columns, fp32 scores, bounds."""
        with self.lock:
            self.parts.append(part)
            self.values += part[1].size
            if self.values < _PENDING_VALUES:
                return
            parts, self.parts, self.values = self.parts, [], 0
        resolved = self._resolve(parts)
        with self.lock:
            self.done.append(resolved)

    def finish(self, out: np.ndarray) -> None:
        if self.parts:
            self.done.append(self._resolve(self.parts))
        for rows, chosen in self.done:
            out[rows] = chosen

    def _resolve(self, parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray]:
        rows, x, cols, values, bound = (np.concatenate(p) for p in zip(*parts, strict=True))
        chosen = np.empty((len(rows), self.k), dtype=np.int64)
        step = max(1, _RERANK_VALUES // x.shape[1])
        for lo in range(0, len(rows), step):
            part = slice(lo, lo + step)
            x_sq = np.einsum("ij,ij->i", x[part], x[part])
            approx = values[part].astype(np.float64) + x_sq[:, None]  # ||x||² + s̃: distances
            chosen[part] = _rerank_shortlist(
                x[part], self.c, cols[part], approx, bound[part], self.k
            )
        return rows, chosen


class _CpuRanker:
    """fp32 scores s_j = ||c_j||² − 2x·c_j of a block of private rows against every candidate,
    by one GEMM into a reused per-thread buffer, reduced to each row's k+1 smallest.

    The bias fl(||c||²) is added by the GEMM itself (addmm, alpha = −2: an exact scaling), and
    candidates are padded to whole chunks with zero vectors of bias `_PAD_SCORE`:
    the reduction takes every chunk's minimum in one vectorised pass and a full top-k only
    inside the k+1 chunks with the smallest minima, which must hold the k+1 smallest scores.
    """

    def __init__(self, candidates: np.ndarray, rows: int) -> None:
        m, d = candidates.shape
        self.m, self.d, self.rows = m, d, rows
        self.groups = -(-m // _CHUNK)
        self.chunk = -(-m // self.groups)
        self.padded = self.groups * self.chunk
        c64 = np.asarray(candidates, dtype=np.float64)
        c_sq = np.einsum("ij,ij->i", c64, c64)
        # above every ||c_j||: float64 rounding of the sum and the root is far below 2^-30
        self.c_norm = float(np.sqrt(c_sq.max())) * (1.0 + 2.0**-30)
        self.weights = torch.zeros((self.padded, d), dtype=torch.float32)
        self.weights[:m] = torch.from_numpy(np.asarray(candidates, dtype=np.float32))
        self.bias = torch.full((self.padded,), _PAD_SCORE, dtype=torch.float32)
        self.bias[:m] = torch.from_numpy(c_sq.astype(np.float32))
        self.offsets = torch.arange(self.chunk)
        self.input_roundoff = _gemm_input_roundoff(torch.device("cpu"))
        self.local = threading.local()

    def _buffers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This thread's reused score buffer (a fresh multi-MiB tensor per block would be
        page-faulted in again each time) and row numbers."""
        buffers: tuple[torch.Tensor, torch.Tensor] | None = getattr(self.local, "buffers", None)
        if buffers is None:
            buffers = torch.empty((self.rows, self.padded)), torch.arange(self.rows)
            self.local.buffers = buffers
        return buffers

    def scores(self, x32: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """fl(||c_j||²) − 2x·c_j for every (padded) candidate, written into `out`."""
        return torch.addmm(self.bias, x32, self.weights.T, alpha=-2.0, out=out)

    def block(self, x: np.ndarray, k: int, start: int, near_ties: _NearTies) -> np.ndarray:
        """The exact top-k of a block of rows (starting at row `start`) wherever the fast gap
        exceeds the bound; the other rows are handed to `near_ties` and left to it."""
        b, d = len(x), self.d
        scores, row_numbers = self._buffers()
        x32 = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        s = self.scores(x32, scores[:b])
        norm = torch.linalg.vector_norm(x32, dim=1)  # after the GEMM: x is in cache
        cols, pair = self._top_k_and_next(s, k, row_numbers[:b])
        # torch's fp32 norm: relative error ≤ (d/2 + 2)·u32, and squares below 2^-126 may be
        # flushed (≤ √d·2^-63 in all)
        x_norm = norm.numpy().astype(np.float64) * (1.0 + (d + 4) * _U32)
        x_norm += math.sqrt(d) * 2.0**-62
        bound = score_error_bound(x_norm, self.c_norm, d, self.input_roundoff)
        pair64 = pair.numpy().astype(np.float64)
        # `not >`: NaN is unsafe too, and so are norms whose scores could overflow fp32
        with np.errstate(invalid="ignore"):  # inf − inf from a non-finite row
            safe = (pair64[:, 1] - pair64[:, 0] > 2.0 * bound) & (x_norm < _MAX_NORM)
        chosen: np.ndarray = cols.numpy()
        unsafe = np.flatnonzero(~safe)
        if len(unsafe):
            self._near_ties(x, s, unsafe, x_norm, bound, k, start, near_ties, chosen)
        return chosen

    def _near_ties(
        self,
        x: np.ndarray,
        s: torch.Tensor,
        unsafe: np.ndarray,
        x_norm: np.ndarray,
        bound: np.ndarray,
        k: int,
        start: int,
        near_ties: _NearTies,
        chosen: np.ndarray,
    ) -> None:
        """Rows the fast pass cannot decide: NaN is an error, norms that could overflow fp32
        are ranked in float64 now, the rest go to `near_ties` with a shortlist of the block."""
        x64 = np.asarray(x[unsafe], dtype=np.float64)
        if not np.isfinite(x64).all():
            raise ValueError("private embeddings contain NaN or infinity")
        huge = ~(x_norm[unsafe] < _MAX_NORM)
        if huge.any():
            chosen[unsafe[huge]] = _exact_topk_rows(x64[huge], near_ties.c, k)
            unsafe, x64 = unsafe[~huge], x64[~huge]
        if len(unsafe):
            width = min(self.m, k + _SHORTLIST)
            values, wide = torch.topk(s[unsafe], width, dim=1, largest=False, sorted=True)
            near_ties.add(start + unsafe, x64, wide.numpy(), values.numpy(), bound[unsafe])

    def _top_k_and_next(
        self, s: torch.Tensor, k: int, row_numbers: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Columns of each row's k smallest scores, and the k-th and (k+1)-th smallest [b, 2]:
        exact order statistics of the fp32 scores (columns of tied scores arbitrary)."""
        b = s.shape[0]
        if self.groups <= k + 1:
            values, cols = torch.topk(s, k + 1, dim=1, largest=False, sorted=True)
            return cols[:, :k], values[:, k - 1 :]
        chunks = s.view(b, self.groups, self.chunk)
        minima = chunks.amin(dim=2)
        if k == 1:
            # the best chunk holds the best score; the runner-up is the better of that
            # chunk's second and the other chunks' minima
            best, group = minima.min(dim=1)
            inside = chunks[row_numbers, group]
            j = inside.min(dim=1, keepdim=True).indices
            inside.scatter_(1, j, math.inf)
            minima.scatter_(1, group[:, None], math.inf)
            runner_up = torch.minimum(inside.amin(dim=1), minima.amin(dim=1))
            return group[:, None] * self.chunk + j, torch.stack([best, runner_up], dim=1)
        groups = torch.topk(minima, k + 1, dim=1, largest=False, sorted=False).indices
        cols = (groups[:, :, None] * self.chunk + self.offsets).reshape(b, -1)
        values, j = torch.topk(s.gather(1, cols), k + 1, dim=1, largest=False, sorted=True)
        return cols.gather(1, j[:, :k]), values[:, k - 1 :]


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
        diff = x64[rows] - c[idx[rows, j]]  # float64, without a float64 copy of c's rows
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
    exact ties) the row is re-ranked in float64, ties to the lowest index. The result is the
    brute-force float64 answer, whatever the fast path's precision. `backend="auto"` is the
    torch fp32 path, on the GPU when there is one (on a CPU, `_CpuRanker`).
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
    rows = block_size or default_block_size(m, c.shape[1], dev)
    if backend == "torch" and not low_precision and dev.type == "cpu":
        return _nearest_cpu(private, c, k, metric, rows, block_size is None)
    return _nearest_shortlisted(private, c, k, metric, backend, dev, rows, low_precision)


def _nearest_cpu(
    private: np.ndarray, c: np.ndarray, k: int, metric: str, rows: int, split_for_workers: bool
) -> np.ndarray:
    """The default CPU path: `_CpuRanker` blocks spread over worker threads, then the exact
    re-rank of the near-tie rows."""
    n = private.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    c_sq_max = float(np.max(np.einsum("ij,ij->i", c, c, dtype=np.float64)))
    if not c_sq_max < _MAX_NORM**2:  # fp32 scores could overflow: rank in float64
        return _nearest_float64(private, c, k, metric, rows, out)
    workers = _cpu_workers()
    if split_for_workers:
        rows = min(rows, -(-n // workers))  # every worker gets a block
    ranker = _CpuRanker(c, min(rows, n))
    near_ties = _NearTies(c, k)

    def run(start: int) -> None:
        xb = private[start : start + rows]
        if metric == "cosine":
            xb = _normalise(xb)
        out[start : start + len(xb)] = ranker.block(xb, k, start, near_ties)

    starts = range(0, n, rows)
    if workers > 1 and len(starts) > 1:
        _run_single_threaded_workers(run, starts, workers)
    else:
        for start in starts:
            run(start)
    near_ties.finish(out)
    return out


def _nearest_float64(
    private: np.ndarray, c: np.ndarray, k: int, metric: str, rows: int, out: np.ndarray
) -> np.ndarray:
    """Every row ranked in float64 (candidates too large for fp32 scores)."""
    for start in range(0, private.shape[0], rows):
        xb = np.asarray(private[start : start + rows], dtype=np.float64)
        if metric == "cosine":
            xb = _normalise(xb)
        if not np.isfinite(xb).all():
            raise ValueError("private embeddings contain NaN or infinity")
        out[start : start + len(xb)] = _exact_topk_rows(xb, c, k)
    return out


def _nearest_shortlisted(
    private: np.ndarray,
    c: np.ndarray,
    k: int,
    metric: str,
    backend: str,
    dev: torch.device,
    rows: int,
    low_precision: bool,
) -> np.ndarray:
    """The faiss, triton and bf16 paths: a top-(k+1) shortlist per row from `_Shortlister`,
    checked against a uniform bound on the distance error."""
    n, m = private.shape[0], c.shape[0]
    if backend == "faiss":
        low_precision = False
    unit = _unit_roundoff(dev, low_precision)
    shortlister = _Shortlister(c, backend, dev, low_precision)
    c_sq_max = float(np.max(np.einsum("ij,ij->i", c, c, dtype=np.float64)))
    d = c.shape[1]
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
        unsafe = ~(approx[:, k] - approx[:, k - 1] > 2.0 * bound)  # NaN (overflow) is unsafe
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
