"""The fast shortlist of nearest candidates for the faiss, triton, bf16 and GPU vote paths.

Approximate: penumbra.pe.voting checks each row's shortlist against the rounding-error bound
and re-ranks the rows it cannot trust in float64.
"""

from __future__ import annotations

import numpy as np
import torch


class _Shortlister:
    """Approximate scores ||x − c||² for the `width` best candidates of each private row: the
    faiss, triton, bf16 and GPU paths (the default CPU path is `_CpuRanker`)."""

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
