"""σ cost of releasing integer votes with exact discrete Gaussian noise (issue 13 item 3).

Compares, for the same (ε, δ, T, k), the σ the exact discrete-Gaussian accountant
(`penumbra.privacy.discrete`, what runs use now) needs with the σ of the continuous Gaussian's
exact GDP curve (what runs used before), and with the zCDP conversion the aggregators of secure
voting use. Pure computation: the figures do not depend on machine load.

    .venv/bin/python bench/sigma_cost.py            # prints the table and updates RESULTS.md
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import splice_section

from penumbra.privacy import default_delta, discrete_gaussian_sigma, gaussian_sigma
from penumbra.privacy.zcdp import dgauss_sigma

SETTINGS = [  # (label, N, ε, T, k)
    ("demo (N 4000, T 5)", 4000, 0.5, 5, 1),
    ("demo (N 4000, T 5)", 4000, 1.0, 5, 1),
    ("demo (N 4000, T 5)", 4000, 2.0, 5, 1),
    ("demo (N 4000, T 5)", 4000, 4.0, 5, 1),
    ("demo, k = 4", 4000, 1.0, 5, 4),
    ("SPTI-like (N 10^5, T 9)", 100_000, 1.0, 9, 1),
    ("small (N 200, T 3)", 200, 8.0, 3, 1),
    ("large ε (N 100, T 2)", 100, 8.0, 2, 1),
]


def main() -> None:
    rows = ["| setting | ε | k | δ | σ continuous (before) | σ discrete, exact PLD (now) "
            "| ratio | σ zCDP conversion (mpc) | accountant time |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, n, eps, steps, k in SETTINGS:
        delta = default_delta(n)
        before = gaussian_sigma(eps, delta, steps)
        start = time.perf_counter()
        now = discrete_gaussian_sigma(eps, delta, steps, k)
        seconds = time.perf_counter() - start
        zcdp = dgauss_sigma(eps, delta, steps, sensitivity=k**0.5) / k**0.5  # per unit vote
        rows.append(
            f"| {label} | {eps:g} | {k} | {delta:.3g} | {before:.4f} | {now:.4f} | "
            f"{now / before:.4f} | {zcdp:.4f} | {seconds * 1000:.0f} ms |"
        )
    table = "\n".join(rows)
    print(table)
    block = (
        "## σ cost of exact discrete Gaussian noise (`bench/sigma_cost.py`)\n\n"
        "Runs release integer votes plus exact discrete Gaussian noise (CKS 2020 sampler, OS "
        "CSPRNG) and account them with the discrete Gaussian's exact privacy loss distribution; "
        "before, they added `numpy` float noise accounted with the continuous Gaussian's GDP "
        "curve. σ in histogram units (votes of 1/√k). The issue allowed ≤ 10% more σ; the "
        "exact accountant costs at most +0.15% (demo, ε = 4) and needs up to 5% *less* σ where "
        "σ < 1. The zCDP column is the looser conversion the secure-voting aggregators use "
        "(+8–9%).\n\n"
        "Command: `.venv/bin/python bench/sigma_cost.py` (pure computation, load-independent).\n\n"
        + table
    )
    splice_section("sigma-cost", block)


if __name__ == "__main__":
    main()
