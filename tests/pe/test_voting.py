"""count_votes is exact: equal to a brute-force float64 reference, ties to the lowest index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from penumbra.pe import voting
from penumbra.pe.voting import count_votes, local_voter


def reference_votes(private: np.ndarray, candidates: np.ndarray, k: int, metric: str) -> np.ndarray:
    x = private.astype(np.float64)
    c = candidates.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
    counts = np.zeros(len(c))
    for row in x:
        d = ((row[None, :] - c) ** 2).sum(axis=1)
        order = np.lexsort((np.arange(len(c)), d))[:k]  # distance, then lowest index
        counts[order] += 1
    return counts / math.sqrt(k)


@pytest.mark.parametrize("backend", ["torch", "faiss"])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_brute_force(backend: str, metric: str, k: int) -> None:
    rng = np.random.default_rng(7)
    private = rng.standard_normal((1003, 24)).astype(np.float32)
    candidates = rng.standard_normal((57, 24)).astype(np.float32)
    votes = count_votes(private, candidates, k=k, metric=metric, backend=backend, block_size=100)
    assert votes.dtype == np.float64 and votes.shape == (57,)
    np.testing.assert_array_equal(votes, reference_votes(private, candidates, k, metric))
    assert votes.sum() == pytest.approx(1003 * math.sqrt(k))


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_ties_go_to_lowest_index(backend: str) -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((5, 8)).astype(np.float32)
    candidates = np.concatenate([base, base[::-1], base])  # every point three times
    private = np.concatenate([base, base + 1e-3]).astype(np.float32)
    for k in (1, 2, 4):
        votes = count_votes(private, candidates, k=k, backend=backend, block_size=3)
        np.testing.assert_array_equal(votes, reference_votes(private, candidates, k, "l2"))
    assert count_votes(private, candidates, k=1, backend=backend)[5:].sum() == 0


def test_lattice_near_ties_force_the_exact_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Integer points far from the origin: many exact ties, and distances fp32 cannot resolve,
    # so most rows must go through the exact fallback.
    calls: list[int] = []
    exact = voting._exact_topk_rows
    monkeypatch.setattr(
        voting, "_exact_topk_rows", lambda x, c, k: calls.append(len(x)) or exact(x, c, k)
    )
    rng = np.random.default_rng(3)
    candidates = (rng.integers(-3, 4, size=(60, 6)) + 3000).astype(np.float32)
    private = (rng.integers(-3, 4, size=(400, 6)) + 3000).astype(np.float32)
    for k in (1, 3):
        np.testing.assert_array_equal(
            count_votes(private, candidates, k=k, block_size=64),
            reference_votes(private, candidates, k, "l2"),
        )
    assert sum(calls) > 100


def test_low_precision_path_is_still_exact() -> None:
    rng = np.random.default_rng(5)
    private = rng.standard_normal((300, 32)).astype(np.float32)
    candidates = rng.standard_normal((40, 32)).astype(np.float32)
    nearest = voting.nearest_candidates(private, candidates, k=2, low_precision=True)
    votes = np.bincount(nearest.ravel(), minlength=40) / math.sqrt(2)
    np.testing.assert_array_equal(votes, reference_votes(private, candidates, 2, "l2"))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_neighbouring_datasets_differ_by_at_most_one_in_l2(k: int) -> None:
    rng = np.random.default_rng(11)
    private = rng.standard_normal((200, 16)).astype(np.float32)
    candidates = rng.standard_normal((30, 16)).astype(np.float32)
    base = count_votes(private, candidates, k=k)
    for extra in rng.standard_normal((20, 16)).astype(np.float32):
        plus = count_votes(np.vstack([private, extra]), candidates, k=k)
        assert np.linalg.norm(plus - base) == pytest.approx(1.0)


def test_default_block_size_bounds_memory() -> None:
    import torch

    rows = voting.default_block_size(100_000, 1280, torch.device("cpu"))
    assert rows >= 1
    assert rows * 100_000 * 4 <= 256 * 1024 * 1024  # the score block fits the budget


def test_bad_inputs() -> None:
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="embedding sizes differ"):
        count_votes(x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="k must be in"):
        count_votes(x, np.zeros((2, 3), np.float32), k=3)
    with pytest.raises(ValueError, match="metric"):
        count_votes(x, np.zeros((2, 3), np.float32), metric="dot")
    with pytest.raises(ValueError, match="NaN"):
        count_votes(np.full((1, 3), np.nan, np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="backend"):
        count_votes(x, np.zeros((2, 3), np.float32), backend="gpu-magic")
    assert count_votes(np.zeros((0, 3), np.float32), np.zeros((2, 3), np.float32)).sum() == 0


def test_local_voter_hides_private_data() -> None:
    rng = np.random.default_rng(2)
    private = rng.standard_normal((50, 4)).astype(np.float32)
    voter = local_voter(private, k=1)
    candidates = rng.standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_array_equal(voter(candidates), reference_votes(private, candidates, 1, "l2"))


TRITON_CHECK = """
import numpy as np
from tests.pe.test_voting import reference_votes
from penumbra.pe.voting import count_votes
rng = np.random.default_rng(8)
private = rng.standard_normal((150, 20)).astype(np.float32)
candidates = rng.standard_normal((70, 20)).astype(np.float32)
candidates[7] = candidates[3]  # an exact tie: the kernel cannot decide it, the host must
private[:5] = candidates[3]
votes = count_votes(private, candidates, k=1, backend="triton", block_size=64)
np.testing.assert_array_equal(votes, reference_votes(private, candidates, 1, "l2"))
print("exact", int(votes.sum()))
"""


def test_triton_kernel_under_the_interpreter() -> None:
    """The fused GEMM + top-2 kernel, run by Triton's CPU interpreter (no GPU here). The
    interpreter is chosen when triton is imported, so this runs in a fresh process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK],
        cwd=root,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "exact 150"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="k=1"):
        count_votes(x, x, k=2, backend="triton")


def planted(rng: np.random.Generator, n: int, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Random rows with planted exact ties (duplicate candidates, rows on a candidate) and
    near-ties (rows midway between two candidates 1e-6 apart, rows 1e-4 from a candidate)."""
    candidates = rng.standard_normal((m, d)).astype(np.float32)
    private = rng.standard_normal((n, d)).astype(np.float32)
    candidates[m // 3] = candidates[5]
    candidates[m // 2] = candidates[7] + np.float32(1e-6)
    private[:40] = candidates[5]
    private[40:80] = (candidates[7] + candidates[m // 2]) / 2
    private[80:120] = candidates[5] + 1e-4 * rng.standard_normal((40, d)).astype(np.float32)
    return private, candidates


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("block_size", [None, 97])
def test_cpu_path_is_exact_with_chunks_and_workers(
    k: int, metric: str, block_size: int | None
) -> None:
    # 700 candidates: many chunks (not a whole number of them), several blocks over the workers
    private, candidates = planted(np.random.default_rng(21), 2500, 700, 24)
    votes = count_votes(private, candidates, k=k, metric=metric, block_size=block_size)
    np.testing.assert_array_equal(votes, reference_votes(private, candidates, k, metric))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_two_level_top_k_gives_exact_order_statistics(k: int) -> None:
    import torch

    rng = np.random.default_rng(4)
    ranker = voting._CpuRanker(rng.standard_normal((1000, 3)), rows=64)
    assert ranker.padded > 1000  # 1000 candidates fill whole chunks only with padding
    # small integer scores: many ties, inside chunks and across them
    scores = torch.from_numpy(rng.integers(0, 40, size=(64, ranker.padded)).astype(np.float32))
    scores[:, 1000:] = voting._PAD_SCORE
    expected = torch.topk(scores, k + 1, dim=1, largest=False, sorted=True).values
    cols, pair = ranker._top_k_and_next(scores.clone(), k, torch.arange(64))
    np.testing.assert_array_equal(pair.numpy(), expected[:, k - 1 :].numpy())
    chosen = torch.gather(scores, 1, cols)
    assert (chosen <= expected[:, k - 1 : k]).all()  # the k columns hold the k smallest values
    assert all(len(set(row)) == k for row in cols.tolist()) and (cols < 1000).all()


@pytest.mark.parametrize("precision", ["highest", "medium"])
def test_score_error_bound_covers_the_fp32_scores(precision: str) -> None:
    """The bound is proved in score_error_bound's docstring; this checks it against real
    GEMM errors, also when torch may run fp32 matmuls in bf16 (precision "medium")."""
    import torch

    rng = np.random.default_rng(9)
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        for n, m, d, scale in [(200, 150, 384, 1.0), (100, 80, 1280, 1.0), (200, 90, 8, 1e3)]:
            x = (rng.standard_normal((n, d)) * scale).astype(np.float32)
            c = (rng.standard_normal((m, d)) * scale + 0.5 * scale).astype(np.float32)
            ranker = voting._CpuRanker(c, rows=n)
            fast = ranker.scores(torch.from_numpy(x), torch.empty((n, ranker.padded)))
            fast = fast[:, :m].double().numpy()
            x64, c64 = x.astype(np.float64), c.astype(np.float64)
            exact = (c64 * c64).sum(axis=1)[None, :] - 2.0 * x64 @ c64.T
            x_norm = np.linalg.norm(x64, axis=1)
            bound = voting.score_error_bound(x_norm, ranker.c_norm, d, ranker.input_roundoff)
            assert (np.abs(fast - exact).max(axis=1) <= bound).all()
    finally:
        torch.set_float32_matmul_precision(old)


def test_exact_when_fp32_matmuls_run_in_bf16() -> None:
    # torch.set_float32_matmul_precision("medium") makes CPU fp32 matmuls multiply in bf16
    # (oneDNN): the bound must widen, not silently assume fp32
    import torch

    cpu = torch.device("cpu")
    old, before = torch.get_float32_matmul_precision(), voting._gemm_input_roundoff(cpu)
    torch.set_float32_matmul_precision("medium")
    try:
        assert voting._gemm_input_roundoff(cpu) == 2.0**-8
        private, candidates = planted(np.random.default_rng(13), 1500, 300, 32)
        for k, metric in [(1, "l2"), (3, "cosine")]:
            np.testing.assert_array_equal(
                count_votes(private, candidates, k=k, metric=metric),
                reference_votes(private, candidates, k, metric),
            )
    finally:
        torch.set_float32_matmul_precision(old)
    assert voting._gemm_input_roundoff(cpu) == before


def test_extreme_norms_and_input_layouts_stay_exact() -> None:
    rng = np.random.default_rng(17)
    private = rng.standard_normal((400, 5))
    candidates = rng.standard_normal((300, 5))
    private[:10] *= 1e20  # fp32 scores could overflow: these rows are ranked in float64
    huge_candidate = candidates.copy()
    huge_candidate[3] *= 1e20  # ... and so is every row
    for x, c in [
        (private, candidates),
        (private, huge_candidate),
        (private * 1e-30, candidates * 1e-30),  # fp32 underflow
        (private[::-1, ::-1], candidates[:, ::-1]),  # negative strides
        (private[10:].astype(np.float16), candidates),
    ]:
        for k in (1, 2):
            np.testing.assert_array_equal(count_votes(x, c, k=k), reference_votes(x, c, k, "l2"))


def test_nan_in_a_worker_block_raises_and_restores_torch_threads() -> None:
    import torch

    threads = torch.get_num_threads()
    rng = np.random.default_rng(19)
    private = rng.standard_normal((3000, 8)).astype(np.float32)
    private[2500, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        count_votes(private, rng.standard_normal((50, 8)).astype(np.float32), block_size=256)
    assert torch.get_num_threads() == threads


def test_many_near_ties_are_re_ranked_in_bounded_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voting, "_PENDING_VALUES", 300)  # 50 rows of 6
    monkeypatch.setattr(voting, "_RERANK_VALUES", 100)
    rng = np.random.default_rng(23)
    candidates = (rng.integers(-3, 4, size=(200, 6)) + 3000).astype(np.float32)
    private = (rng.integers(-3, 4, size=(2000, 6)) + 3000).astype(np.float32)
    for k in (1, 3):
        np.testing.assert_array_equal(
            count_votes(private, candidates, k=k, block_size=128),
            reference_votes(private, candidates, k, "l2"),
        )
