"""Vote-counting throughput: penumbra's count_votes against faiss-cpu and a naive baseline.

Each (method, n, m, d) runs in its own subprocess so its peak resident memory is its own.
Throughput is n·m·d per second (and the equivalent GFLOP/s, 2·n·m·d per second); ratios are
against faiss-cpu IndexFlatL2 (exact, k=1) and against a naive torch.cdist + topk that builds
the full n×m matrix, measured in the same run. With --repeats N the methods of a size run
interleaved (penumbra, faiss, naive, penumbra, faiss, ...), N processes each, and the table
shows each method's median; a last line per size gives penumbra's speed relative to faiss.

    .venv/bin/python bench/voting.py                 # CPU sizes (a few minutes on 2 cores)
    .venv/bin/python bench/voting.py --repeats 3     # medians of 3 interleaved runs
    .venv/bin/python bench/voting.py --sizes 1000000x100000x512 --methods penumbra triton  # GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np

DEFAULT_SIZES = ["100000x1000x384", "100000x1000x1280", "200000x10000x384", "1000000x2000x384"]
NAIVE_LIMIT_BYTES = 6 * 1024**3


def _data(n: int, m: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((n, d), dtype=np.float32),
        rng.standard_normal((m, d), dtype=np.float32),
    )


def run_one(method: str, n: int, m: int, d: int) -> dict[str, float | str]:
    private, candidates = _data(n, m, d)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "penumbra":
        from penumbra.pe.voting import count_votes

        start = time.perf_counter()
        votes = count_votes(private, candidates, k=1)
    elif method == "triton":
        from penumbra.pe.voting import count_votes

        start = time.perf_counter()
        votes = count_votes(private, candidates, k=1, backend="triton")
    elif method == "faiss":
        import faiss

        start = time.perf_counter()
        index = faiss.IndexFlatL2(d)
        index.add(candidates)
        _, idx = index.search(private, 1)
        votes = np.bincount(idx[:, 0], minlength=m).astype(np.float64)
    elif method == "naive":
        import torch

        start = time.perf_counter()
        dist = torch.cdist(torch.from_numpy(private), torch.from_numpy(candidates))
        idx = dist.topk(1, dim=1, largest=False).indices[:, 0].numpy()
        votes = np.bincount(idx, minlength=m).astype(np.float64)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    return {
        "method": method,
        "seconds": seconds,
        "throughput": n * m * d / seconds,
        "gflops": 2 * n * m * d / seconds / 1e9,
        "extra_peak_mib": peak / 1024,
        "checksum": float(votes @ np.arange(m)),
    }


def _median_run(runs: list[dict[str, float | str]]) -> dict[str, float | str]:
    """The run with the median time (the upper one of an even count), kept whole so that its
    memory and checksum stay with its time."""
    return sorted(runs, key=lambda r: float(r["seconds"]))[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, help="NxMxD")
    parser.add_argument("--methods", nargs="*", default=["penumbra", "faiss", "naive"])
    parser.add_argument(
        "--repeats", type=int, default=1, help="interleaved runs per method and size (median)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.one:
        method, size = args.one.split(":")
        n, m, d = (int(v) for v in size.split("x"))
        sys.stdout.write(json.dumps(run_one(method, n, m, d)) + "\n")
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"count_votes, k=1 ({platform.machine()}, {platform.processor() or ''})")
    for col in ("n×m×d", "method", "seconds", "GFLOP/s", "vs faiss", "vs naive", "extra peak MiB"):
        table.add_column(col)
    results = []
    summary = []
    for size in args.sizes:
        n, m, d = (int(v) for v in size.split("x"))
        methods = [
            method
            for method in args.methods
            # the full matrix would not fit: that is the point of blocking
            if not (method == "naive" and n * m * 4 > NAIVE_LIMIT_BYTES)
        ]
        runs: dict[str, list[dict[str, float | str]]] = {method: [] for method in methods}
        for _ in range(max(1, args.repeats)):
            for method in methods:
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", f"{method}:{size}"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[method].append(json.loads(proc.stdout))
        rows = {method: _median_run(r) for method, r in runs.items()}
        if "penumbra" in rows and "faiss" in rows:
            ratio = float(rows["faiss"]["seconds"]) / float(rows["penumbra"]["seconds"])
            summary.append(
                f"{size}: penumbra {ratio:.2f}x the speed of faiss IndexFlatL2 "
                f"(median of {len(runs['penumbra'])} interleaved run(s) each)"
            )
        checks = {name: r["checksum"] for name, r in rows.items()}
        if len(set(checks.values())) != 1:
            # faiss and the naive baseline rank in fp32 and may break near-ties differently;
            # penumbra re-ranks near-ties exactly (see tests/pe/test_voting.py).
            console.print(f"note {size}: vote checksums differ (near-ties): {checks}")
        naive_missing = "n/a (OOM)" if "naive" in args.methods else "not run"
        for method, r in rows.items():
            vs_faiss = rows["faiss"]["seconds"] / r["seconds"] if "faiss" in rows else float("nan")
            vs_naive = rows["naive"]["seconds"] / r["seconds"] if "naive" in rows else float("nan")
            table.add_row(
                size,
                method,
                f"{r['seconds']:.2f}",
                f"{r['gflops']:.0f}",
                f"{vs_faiss:.2f}x",
                f"{vs_naive:.2f}x" if "naive" in rows else naive_missing,
                f"{r['extra_peak_mib']:.0f}",
            )
            results.append({"size": size, **r})
    console.print(table)
    for line in summary:
        console.print(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
