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
