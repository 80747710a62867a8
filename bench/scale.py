"""The demo's stages on engine: local vs Ray (1 and 2 workers), in one run; and an estimate of
the paper-scale run from measured per-item costs.

Each engine runs the demo config (ε = 1, same seed) in its own subprocess, from a fresh run
folder, so model loading and Ray's start are counted as a user would meet them. Ratios are
against `local` measured in the same run. Ray's 1-worker run gives its actor all of this
machine's threads (`compute.cpus_per_worker` = CPUs), the same compute as local: its ratio is
Ray's overhead. The 2-worker run uses one thread per actor (the layout that scales out).

    .venv/bin/python bench/scale.py                          # the demo's size (~20 min, 2 cores)
    .venv/bin/python bench/scale.py --private 1000 --images 250 --population 30   # quicker
    .venv/bin/python bench/scale.py --collect                # table + estimate into RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent
STAGES = ["load models", "embed private set", "private evolution", "final render", "report"]


def engines(cpus: int) -> dict[str, list[str]]:
    return {
        "local": [],
        "ray, 1 worker": [
            "compute.engine=ray", "compute.address=local", "compute.workers=1",
            f"compute.cpus_per_worker={cpus}",
        ],
        "ray, 2 workers": [
            "compute.engine=ray", "compute.address=local", "compute.workers=2",
            "compute.cpus_per_worker=1",
        ],
    }  # fmt: skip


def run_one(out: Path, private: int, images: int, population: int, sets: list[str]) -> dict:
    """One demo-config run in this process (called in a subprocess by `main`)."""
    from penumbra.data.demo import demo_private_set
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import synthesize

    folder = out.parent / f"private-{private}"
    if not folder.exists():
        demo_private_set(private, seed=0).write(folder)
    config = demo_config(1.0)
    config.output.num_images = images
    config.pe.max_population = population
    from penumbra.config import RunConfig, apply_overrides, load_config

    config = RunConfig.model_validate(apply_overrides(config.model_dump(mode="json"), sets))
    start = time.monotonic()
    run = synthesize(folder, None, out=out, config=config)
    wall = time.monotonic() - start
    resolved = load_config(out / "run.yaml")
    return {
        "wall_s": wall,
        "stages": run.stage_seconds,  # type: ignore[union-attr]
        "population": resolved.pe.population,  # `auto` as the pre-flight resolved it
        "iterations": config.pe.iterations,
        "images": images,
        "private": private,
    }


def measure(args: argparse.Namespace) -> dict:
    cpus = os.cpu_count() or 1
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    # the private set is written and read once before any engine is timed: the first engine
    # must not pay for a cold page cache (a first version of this bench charged local 30 s)
    subprocess.run(
        [sys.executable, "-c", "from penumbra.data.demo import demo_private_set; "
         f"demo_private_set({args.private}, seed=0).write('{root / f'private-{args.private}'}')"],
        check=True, capture_output=True,
    ) if not (root / f"private-{args.private}").exists() else None  # fmt: skip
    for path in sorted((root / f"private-{args.private}").rglob("*")):
        if path.is_file():
            path.read_bytes()
    before = os.getloadavg()
    rows = {}
    for name, sets in engines(cpus).items():
        out = root / name.replace(", ", "-").replace(" ", "")
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(out), "--private", str(args.private),
             "--images", str(args.images), "--population", str(args.population),
             *[a for s in sets for a in ("--set", s)]],
            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name, f"{rows[name]['wall_s']:.1f} s", flush=True)
        same = _same_outputs(root / "local", out)
        rows[name]["same_outputs_as_local"] = same
    after = os.getloadavg()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {cpus} cores",
        "python": platform.python_version(),
        "load_before": before,
        "load_after": after,
        "command": " ".join(sys.argv),
        "rows": rows,
        "per_item": per_item_costs(rows["local"]),
    }
    (root / "scale.json").write_text(json.dumps(result, indent=2))
    return result


def _same_outputs(a: Path, b: Path) -> bool | None:
    """Candidates of the first population (before any noise) equal: the engines computed the
    same thing. Later populations follow fresh DP noise, so they differ by design."""
    first = Path("candidates") / "population-000.parquet"
    if not ((a / first).exists() and (b / first).exists()):
        return None
    import pyarrow.parquet as pq

    def payloads(run: Path) -> list[str]:
        return list(pq.read_table(run / first).column("payload").to_pylist())

    return payloads(a) == payloads(b)


def per_item_costs(local: dict) -> dict[str, float]:
    """Seconds per item on this machine's CPU, from the local run's stage times."""
    stages, pop, its = local["stages"], local["population"], local["iterations"]
    return {
        "embed one private image": stages["embed private set"] / local["private"],
        "PE per candidate (LLM + render + embed + vote)": stages["private evolution"] / (pop * its),
        "final render per image": stages["final render"] / local["images"],
    }


def estimate(overhead: float) -> list[str]:
    """Paper-scale SPTI (300k private images, 14k candidates × 9 iterations, SDXL-turbo voting
    renders, 50k final images) on 1, 8 and 64 GPUs. No GPU here: the per-item GPU costs are
    stated assumptions, the engine overhead is this bench's measured Ray 1-worker ratio."""
    n_private, candidates, iterations, finals = 300_000, 14_000, 9, 50_000
    costs = {  # seconds per item on one A100-class GPU (assumptions, sources in RESULTS.md)
        "render (SDXL-turbo 512², 1 step, fp16; Stability AI: 207 ms on an A100)": 0.207,
        "LLM variation (8B model, ~40 tokens, batched serving at ~2,000 tokens/s)": 0.02,
        "image embedding (Inception/CLIP class, batched)": 0.001,
    }
    render, llm, embed = costs.values()
    vote = 2 * n_private * candidates * 2048 / 50e12  # exact votes, d = 2048, 50 TFLOP/s
    stages = {
        "embed the private set": n_private * embed,
        "render + embed candidates": iterations * candidates * (render + embed),
        "LLM calls": iterations * candidates * llm,
        "vote counting": iterations * vote,
        "final render": finals * render,
    }
    total = sum(stages.values())
    lines = [f"- assumed: {name}: {value * 1000:g} ms per item" for name, value in costs.items()]
    lines += [f"- {name}: {sec / 3600:.2f} GPU-hours" for name, sec in stages.items()]
    lines += [
        "",
        f"| GPUs | hours, ideal | hours with the measured engine overhead ({overhead:.2f}x) |",
        "|---|---|---|",
    ]
    for gpus in (1, 8, 64):
        ideal = total / gpus / 3600
        lines.append(f"| {gpus} | {ideal:.2f} | {ideal * overhead:.2f} |")
    return lines


def collect(root: Path) -> None:
    from results_md import splice_section

    result = json.loads((root / "scale.json").read_text())
    rows = result["rows"]
    local = rows["local"]
    lines = [
        "## Scale-out on Ray (`bench/scale.py`)",
        "",
        f"Machine: {result['machine']}, Python {result['python']}. Command: "
        f"`{result['command']}`. Load average before "
        f"{', '.join(f'{x:.2f}' for x in result['load_before'])}, after "
        f"{', '.join(f'{x:.2f}' for x in result['load_after'])} (the bench's own processes "
        "raise it during the run). One "
        f"run per engine: the demo config at ε = 1, {local['private']} private images, "
        f"population {local['population']} × {local['iterations']} iterations, "
        f"{local['images']} output images; each engine in its own process from a fresh folder "
        "(model loading and Ray's start included).",
        "",
        "| engine | " + " | ".join(STAGES) + " | total (s) | vs local | first population equal |",
        "|---|" + "---|" * (len(STAGES) + 3),
    ]
    for name, row in rows.items():
        cells = [f"{row['stages'].get(s, 0.0):.1f}" for s in STAGES]
        ratio = row["wall_s"] / local["wall_s"]
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {row['wall_s']:.1f} | {ratio:.2f}x | {row['same_outputs_as_local']} |"
        )  # fmt: skip
    lines += ["", "Per-item costs on this CPU (local run):", ""]
    lines += [f"- {k}: {v * 1000:.1f} ms" for k, v in result["per_item"].items()]
    lines += ["", "Paper-scale estimate (no GPU here: GPU costs are assumptions):", ""]
    lines += estimate(rows["ray, 1 worker"]["wall_s"] / local["wall_s"])
    splice_section("scale", "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "scale"))
    parser.add_argument("--private", type=int, default=4000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--population", type=int, default=60)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--collect", action="store_true")
    args = parser.parse_args()
    if args.one:
        row = run_one(Path(args.one), args.private, args.images, args.population, args.set)
        print(json.dumps(row))
        return
    if args.collect:
        collect(Path(args.out))
        return
    measure(args)
    collect(Path(args.out))


if __name__ == "__main__":
    main()
