"""Information loss and runtime of Mondrian anonymization vs k on a synthetic census table.

For each k in {2, 5, 10, 20, 50} and each setting (k only; k + distinct 3-diversity;
k + t-closeness 0.25), anonymize a seeded 20,000-row census-like table (age, zipcode, sex,
education; sensitive: disease), record NCP, discernibility and runtime, and confirm the
achieved k / l / t with the independent checker pycanon. Writes
bench/results/anonymize_tables.md and bench/results/anonymize_tables.png.

    .venv/bin/python bench/anonymize_tables.py            # ~ a few minutes on 2 cores
    .venv/bin/python bench/anonymize_tables.py --rows 2000 --ks 5 10   # quick look
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

QI = ["age", "zipcode", "sex", "education"]
SETTINGS: dict[str, dict[str, object]] = {
    "k": {},
    "k + l=3 (distinct)": {"l": 3},
    "k + t=0.25": {"t": 0.25},
}
OUT = Path(__file__).resolve().parent / "results"


def census(n: int, seed: int = 0) -> pd.DataFrame:
    """Census-like rows (the same generator as the tests): skewed ages, 100 zipcodes."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": np.clip(rng.normal(40, 13, n).round(), 17, 90).astype(int),
            "zipcode": rng.choice(np.arange(47600, 47700), n),
            "sex": rng.choice(["F", "M"], n),
            "education": rng.choice(
                ["HS", "Bachelors", "Masters", "PhD", "None"], n, p=[0.35, 0.3, 0.15, 0.05, 0.15]
            ),
            "disease": rng.choice(
                ["flu", "cancer", "hiv", "diabetes", "asthma", "none"],
                n,
                p=[0.2, 0.1, 0.05, 0.15, 0.1, 0.4],
            ),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--repeats", type=int, default=3, help="runtime = best of N")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pycanon import anonymity
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from penumbra.anonymize.tables import anonymize_table

    frame = census(args.rows)
    rows = []
    jobs = [(name, k) for name in SETTINGS for k in args.ks]
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn()) as progress:
        task = progress.add_task("anonymize + pycanon", total=len(jobs))
        for name, k in jobs:
            progress.update(task, description=f"{name}, k={k}")
            extra = SETTINGS[name]
            best = math.inf
            for _ in range(args.repeats):
                start = time.perf_counter()
                result = anonymize_table(
                    frame,
                    QI,
                    "disease",
                    k,
                    categorical=["sex", "education"],
                    **extra,  # type: ignore[arg-type]
                )
                best = min(best, time.perf_counter() - start)
            r, out = result.report, result.table
            start = time.perf_counter()
            checked = {
                "k": anonymity.k_anonymity(out, QI),
                "l": anonymity.l_diversity(out, QI, ["disease"]),
                "t": anonymity.t_closeness(out, QI, ["disease"]),
            }
            check_s = time.perf_counter() - start
            ok = (
                checked["k"] == r.k >= k
                and checked["l"] == r.l_distinct >= int(extra.get("l", 1))  # type: ignore[call-overload]
                and abs(checked["t"] - r.t) < 1e-9
                and r.t <= float(extra.get("t", 1.0)) + 1e-12  # type: ignore[arg-type]
            )
            rows.append(
                {
                    "setting": name, "k": k, "classes": r.partitions, "achieved k": r.k,
                    "l (distinct)": r.l_distinct, "l (entropy)": r.l_entropy, "t": r.t,
                    "NCP": r.ncp, "discernibility": r.discernibility, "seconds": best,
                    "pycanon k/l/t": f"{checked['k']}/{checked['l']}/{checked['t']:.3f}",
                    "pycanon agrees": "yes" if ok else "NO", "pycanon s": check_s,
                }
            )  # fmt: skip
            progress.advance(task)

    table = pd.DataFrame(rows)
    lines = [
        "# Mondrian anonymization: information loss and runtime vs k",
        "",
        f"Synthetic census table, {args.rows} rows (seed 0), QIs {', '.join(QI)} "
        "(sex, education categorical), sensitive: disease (6 values). NCP is the mean normalised "
        "certainty penalty (0 = nothing generalised, 1 = everything); discernibility is the sum "
        "of squared class sizes. Runtime is the best of "
        f"{args.repeats} runs of `anonymize_table` (CSV I/O excluded). The last columns are the "
        "independent check by pycanon 1.3.6.",
        "",
        "| setting | k | classes | achieved k | l (distinct) | l (entropy) | t | NCP | "
        "discernibility | seconds | pycanon k/l/t | agrees |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['k']} | {row['classes']} | {row['achieved k']} | "
            f"{row['l (distinct)']} | {row['l (entropy)']:.2f} | {row['t']:.3f} | "
            f"{row['NCP']:.4f} | {row['discernibility']:,} | {row['seconds']:.2f} | "
            f"{row['pycanon k/l/t']} | {row['pycanon agrees']} |"
        )
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [x for x in cpuinfo.read_text().splitlines() if x.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    lines += [
        "",
        f"Machine: {os.cpu_count()} CPU cores ({cpu}), {platform.system()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}.",
        "",
        f"Command: `{' '.join(['.venv/bin/python bench/anonymize_tables.py', *sys.argv[1:]])}`",
        "",
        "![NCP and runtime vs k](anonymize_tables.png)",
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "anonymize_tables.md").write_text("\n".join(lines), encoding="utf-8")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name in SETTINGS:
        part = table[table["setting"] == name]
        ax1.plot(part["k"], part["NCP"], marker="o", label=name)
        ax2.plot(part["k"], part["seconds"], marker="o", label=name)
    for ax, label in ((ax1, "NCP (mean)"), (ax2, "seconds")):
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel(label)
        ax.set_xticks(args.ks, [str(k) for k in args.ks])
        ax.grid(alpha=0.3)
    ax1.legend()
    fig.suptitle(f"Mondrian on {args.rows} census rows")
    fig.tight_layout()
    fig.savefig(OUT / "anonymize_tables.png", dpi=120)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
