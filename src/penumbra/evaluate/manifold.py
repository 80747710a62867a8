"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019) and density/coverage
(Naeem et al. 2020).

Each real sample's manifold ball has the radius of its k-th nearest real neighbour (itself
excluded). Precision asks how much of the synthetic set lies inside the real manifold
(fidelity); recall how much of the real set lies inside the synthetic one (diversity).
Density counts how many real balls hold each synthetic sample (robust to real outliers);
coverage is the share of real balls that hold at least one synthetic sample. Membership is
`distance <= radius`. Distances are exact, computed in blocks so memory stays bounded.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 2048


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64), rows of `a` × rows of `b`."""
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    y = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))
    out = [torch.cdist(x[i : i + BLOCK], y).numpy() for i in range(0, len(x), BLOCK)]
    return np.concatenate(out) if out else np.zeros((0, len(b)))


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in [1, {len(features) - 1}] for {len(features)} samples")
    radii = []
    for i in range(0, len(features), BLOCK):
        d = pairwise_distances(features[i : i + BLOCK], features)
        # column k of the sorted row: index 0 is the sample itself at distance 0
        radii.append(np.partition(d, k, axis=1)[:, k])
    return np.concatenate(radii)


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """counts[i, j] = points[i] lies in ball j, as a boolean matrix in blocks."""
    return np.concatenate(
        [pairwise_distances(points[i : i + BLOCK], centres) <= radii[None, :]
         for i in range(0, len(points), BLOCK)]
    )  # fmt: skip


def manifold_metrics(real: np.ndarray, fake: np.ndarray, *, k: int = 3) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` features."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be 2-D with equal widths: {real.shape}, {fake.shape}")
    real_radii = knn_radii(real, k)
    fake_radii = knn_radii(fake, k)
    fake_in_real = _inside(fake, real, real_radii)  # [n_fake, n_real]
    real_in_fake = _inside(real, fake, fake_radii)  # [n_real, n_fake]
    return {
        "precision": float(fake_in_real.any(axis=1).mean()),
        "recall": float(real_in_fake.any(axis=1).mean()),
        "density": float(fake_in_real.sum() / (k * len(fake))),
        "coverage": float(fake_in_real.any(axis=0).mean()),
        "k": float(k),
    }
