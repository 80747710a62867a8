"""How far a fast (fp32, TF32 or bf16) score can be from the float64 reference.

penumbra.pe.voting keeps a row's fast top-k only when the gap to its (k+1)-th candidate is
larger than these bounds, so its votes equal the brute-force float64 answer exactly.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

_U32 = 2.0**-24  # unit roundoffs
_U64 = 2.0**-53
_MAX_NORM = 2.0**50  # larger norms could overflow fp32 scores: such rows are ranked in float64


def _gemm_input_roundoff(device: torch.device) -> float:
    """Relative error with which torch's fp32 matmul may round its inputs on `device`: none in
    true fp32, but torch.set_float32_matmul_precision or a backend's fp32_precision let it
    multiply in TF32 or bf16 (on CPUs too, through oneDNN), and the bound must cover that."""
    if device.type == "cuda":
        matmul: object = torch.backends.cuda.matmul
    else:  # torch >= 2.9; older versions only have the legacy setting
        matmul = getattr(torch.backends.mkldnn, "matmul", None)
    settings = {str(getattr(matmul, "fp32_precision", "none"))}
    with contextlib.suppress(RuntimeError):  # raised when legacy and new APIs were mixed
        settings.add(torch.get_float32_matmul_precision())
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        settings.add("tf32")
    if settings & {"bf16", "medium"}:
        return 2.0**-8
    if settings & {"tf32", "high"}:
        return 2.0**-11
    return 0.0


def _unit_roundoff(device: torch.device, low_precision: bool) -> float:
    if low_precision:
        return 2.0**-8  # bf16
    return max(_U32, _gemm_input_roundoff(device))


def score_error_bound(
    x_norm: np.ndarray, c_norm: float, d: int, input_roundoff: float = 0.0
) -> np.ndarray:
    """Per row, E with |s̃_j − s_j| + (error of the float64 reference) ≤ E for every candidate
    j, where s_j = ||c_j||² − 2x·c_j from the float64 inputs and s̃_j is `_CpuRanker`'s fp32
    score; so a fast gap between the k-th and (k+1)-th score above 2E decides the top-k set
    exactly as the float64 reference does, ties included.

    x_norm ≥ ||x|| per row and c_norm ≥ every ||c_j||. Each GEMM input (x, c and the bias
    fl(||c||²)) is rounded to fp32 and maybe to TF32/bf16 by torch: relative error δ. The
    score is a sum of d+1 terms (the products x_i·c_ji times −2, an exact scaling, and the
    bias) in fp32, in whatever order and blocking, so its error is at most γ·Σ|terms| with
    γ = γ_{d+1} (Higham, Accuracy and Stability, §3.1); Cauchy–Schwarz bounds Σ|x_i·c_ji| by
    ||x||·||c_j||:
        E_fast = (δ + γ(1+δ))·C² + 2(2δ + δ² + γ(1+δ)²)·X·C.
    The reference's float64 distances are within (d+4)·u64·(X+C)² of exact; that is counted
    twice (both compared distances), and an absolute term covers fp32 underflow (flushed
    denormals, at most 2^-126 per operation).
    """
    x = np.asarray(x_norm, dtype=np.float64)
    delta = (1.0 + _U32) * (1.0 + input_roundoff) * (1.0 + (d + 4) * _U64) - 1.0
    gamma = (d + 1) * _U32 / (1.0 - (d + 1) * _U32)
    fast = (delta + gamma * (1.0 + delta)) * c_norm**2 + 2.0 * (
        2.0 * delta + delta**2 + gamma * (1.0 + delta) ** 2
    ) * x * c_norm
    reference = 2.0 * (d + 4) * _U64 * (x + c_norm) ** 2
    underflow = (d + 2) * 2.0**-118 * (1.0 + x) * (1.0 + c_norm)
    bound: np.ndarray = (fast + reference + underflow) * (1.0 + 2.0**-30)
    return bound
