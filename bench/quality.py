"""Quality vs ε on the demo private set: SPTI (image and text voting) against image-domain PE.

For ε in {0.5, 1, 2, 4, ∞} each method makes a synthetic set from the same 4000 "private"
demo images; the first random population of each method is the floor (what the public models
give with no private signal). Every set is measured against the private images (EffNet-Lite0
features): Fréchet distance, class-mix total variation (shipped Fashion-MNIST classifier vs the
demo labels), precision/recall (k=3), and the distance-based membership-inference AUC against
the 1000 held-out pool images. ∞ runs at ε = 10⁶ (σ ≈ 0.0014 votes: noise only breaks ties).

    .venv/bin/python bench/quality.py [--out bench/results/quality] [--iterations 4] ...

Results (one JSON per run, so an interrupted bench resumes) go under --out; the table is
printed and written to OUT/quality.md, the plot to OUT/quality.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
INF = 1e6
PROMPTS = [f"a photo of a {name}" for name in (
    "t-shirt", "pair of trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
    "bag", "ankle boot")]  # fmt: skip


def _label(eps: float) -> str:
    return "∞" if eps >= INF else f"{eps:g}"


class Reference:
    """Features of the private (member) and held-out sets, computed once."""

    def __init__(self, root: Path) -> None:
        from penumbra.data.demo import demo_holdout_set
        from penumbra.evaluate.evaluation import _embedder
        from penumbra.evaluate.features import embed_folder
        from penumbra.spti.demo import DEMO_PRIVATE, materialise_private

        self.private = root / "private"
        self.holdout = root / "holdout"
        materialise_private(self.private)
        materialise_private(self.holdout, demo_holdout_set(DEMO_PRIVATE))
        self.embed, _ = _embedder("builtin:effnet-lite0")
        self.members = embed_folder(self.private, self.embed, name="private")
        self.nonmembers = embed_folder(self.holdout, self.embed, name="holdout")
        rows = {r["file_name"]: r["label"] for r in _metadata(self.private)}
        self.labels = np.array([rows[p] for p in self.members.relpaths])

    def measure(self, synthetic: Path) -> dict[str, float]:
        from penumbra.evaluate.audit import membership_inference
        from penumbra.evaluate.evaluation import fidelity
        from penumbra.evaluate.fashion_classifier import class_mix, predict, total_variation
        from penumbra.evaluate.features import embed_folder

        syn = embed_folder(synthetic, self.embed, name="synthetic")
        fid = fidelity(syn.features, self.members.features, k=3, kid_subsets=20,
                       kid_subset_size=1000, seed=0)  # fmt: skip
        predicted = predict([Image.open(synthetic / p) for p in syn.relpaths])
        mia = membership_inference(syn.features, self.members.features,
                                   self.nonmembers.features, seed=0, bootstrap=100)  # fmt: skip
        return {
            "frechet": fid["frechet_distance"],
            "kid": fid["kid"],
            "precision": fid["precision"],
            "recall": fid["recall"],
            "class_tv": total_variation(class_mix(predicted), class_mix(self.labels)),
            "mia_auc": mia["auc"],
            "mia_auc_ci": [mia["auc_ci95_low"], mia["auc_ci95_high"]],
            "tpr_at_1pct_fpr": mia["tpr_at_1pct_fpr"],
            "images": len(syn),
        }


def _metadata(folder: Path) -> list[dict[str, Any]]:
    from penumbra.data.imagefolder import read_imagefolder_metadata

    return read_imagefolder_metadata(folder)


def run_spti(ref: Reference, out: Path, eps: float, voting: str, args: argparse.Namespace) -> Path:
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import synthesize

    cfg = demo_config(eps).model_copy(deep=True)
    data = cfg.model_dump(mode="json")
    data["voting"] = voting
    data["pe"].update(iterations=args.iterations, population=args.population)
    data["output"]["num_images"] = args.num_images
    from penumbra.config import RunConfig

    if out.exists() and not (out / "synthetic" / "metadata.jsonl").exists():
        shutil.rmtree(out)  # an interrupted run: start it again
    if not out.exists():
        run = synthesize(ref.private, None, out=out, config=RunConfig.model_validate(data))
        stages = {k: round(v, 1) for k, v in getattr(run, "stage_seconds", {}).items()}
        (out / "stage_seconds.json").write_text(json.dumps(stages))
    return out / "synthetic"


def spti_floor(run: Path, dest: Path) -> Path:
    """The first random population, rendered as the run renders its outputs."""
    from penumbra.pe.store import read_population
    from penumbra.spti.demo import demo_renderer

    if not dest.exists():
        captions = list(read_population(run / "candidates" / "population-000.parquet")["payload"])
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(demo_renderer(run).render(captions)):
            shutil.copy(path, tmp / f"{i:04d}.png")
        tmp.rename(dest)
    return dest


def run_image_domain(ref: Reference, out: Path, eps: float, args: argparse.Namespace) -> Path:
    from penumbra.models import load
    from penumbra.pe.evolve import EvolveSettings, evolve
    from penumbra.pe.image_domain import ImageFileAPI
    from penumbra.pe.voting import local_voter
    from penumbra.privacy import default_delta

    synthetic = out / "synthetic"
    if synthetic.exists():
        return synthetic
    shutil.rmtree(out, ignore_errors=True)
    generator = load("builtin:fashion-t2i", role="image-generator")
    embedder = load("builtin:effnet-lite0", role="image-embedder")
    private = embedder.embed([Image.open(ref.private / p) for p in ref.members.relpaths])
    api = ImageFileAPI(generator, out / "candidates", PROMPTS, strength=0.5)  # type: ignore[arg-type]
    n = len(private)
    result = evolve(
        out / "candidates", random_api=api, variation_api=api, embed=api.embedder(embedder),
        voter=local_voter(private, k=1),
        settings=EvolveSettings(epsilon=eps, delta=default_delta(n), iterations=args.iterations,
                                population=(args.population,), num_outputs=args.num_images,
                                seed=0),
    )  # fmt: skip
    tmp = out / "synthetic.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for i, payload in enumerate(result.outputs["payload"]):
        shutil.copy(out / "candidates" / payload, tmp / f"{i:04d}.png")
    tmp.rename(synthetic)
    return synthetic


def image_domain_floor(run: Path, dest: Path) -> Path:
    from penumbra.pe.store import read_population

    if not dest.exists():
        rows = read_population(run / "candidates" / "population-000.parquet")["payload"]
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for i, payload in enumerate(rows):
            shutil.copy(run / "candidates" / payload, tmp / f"{i:04d}.png")
        tmp.rename(dest)
    return dest


METHODS = {
    "spti-image": "SPTI, image voting",
    "spti-text": "SPTI, text voting",
    "image-domain": "image-domain PE (baseline)",
}


def write_outputs(results: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> str:
    lines = [
        "| method | ε | Fréchet ↓ | KID×10³ ↓ | class TV ↓ | precision ↑ | recall ↑ | "
        "MIA AUC (95% CI) | TPR@1%FPR | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lo, hi = r["mia_auc_ci"]
        lines.append(
            f"| {METHODS[r['method']]} | {r['epsilon']} | {r['frechet']:.1f} | "
            f"{1e3 * r['kid']:.0f} | "
            f"{r['class_tv']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['mia_auc']:.3f} ({lo:.3f}–{hi:.3f}) | {r['tpr_at_1pct_fpr']:.3f} | "
            f"{r['wall_s']:.0f} |"
        )
    table = "\n".join(lines)
    header = (
        f"Machine: developer VM ({platform.machine()}, 2 cores, no GPU)"
        f", Python {platform.python_version()}. Command: `.venv/bin/python bench/quality.py "
        f"--iterations {args.iterations} --population {args.population} --num-images "
        f"{args.num_images}`. Private set: 4000 demo images; held-out: 1000. ∞ = ε 10⁶.\n\n"
    )
    (out / "quality.md").write_text(header + table + "\n")
    _plot(results, out / "quality.png")
    splice_results(header + table + "\n", out / "quality.png")
    return header + table


def splice_results(section: str, png: Path, results: Path = ROOT / "bench" / "RESULTS.md") -> None:
    """Put the table into RESULTS.md between markers (replacing an earlier run's)."""
    from results_md import splice_section

    link = png.relative_to(results.parent).as_posix() if png.is_relative_to(results.parent) else png
    block = f"## Quality vs ε (`bench/quality.py`)\n\n{section}\nPlot: [{link}]({link})\n"
    splice_section("quality", block, results)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("kid", "KID ↓"), ("class_tv", "class-mix TV ↓"),
               ("precision", "precision ↑"), ("recall", "recall ↑"),
               ("mia_auc", "MIA AUC (0.5 = chance)")]  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), dpi=100)
    colours = {"spti-image": "C0", "spti-text": "C1", "image-domain": "C2"}
    for ax, (key, title) in zip(axes, metrics, strict=True):
        for method, colour in colours.items():
            rows = [r for r in results if r["method"] == method and r["epsilon"] != "floor"]
            if not rows:
                continue
            xs = [INF if r["epsilon"] == "∞" else float(r["epsilon"]) for r in rows]
            xs = [16.0 if x >= INF else x for x in xs]  # ∞ drawn at the right edge
            ax.plot(xs, [r[key] for r in rows], "o-", color=colour, label=METHODS[method])
            floor = [r for r in results if r["method"] == method and r["epsilon"] == "floor"]
            if floor:
                ax.axhline(floor[0][key], color=colour, ls="--", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks([0.5, 1, 2, 4, 16], ["0.5", "1", "2", "4", "∞"])
        ax.set_xlabel("ε")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.suptitle("Quality vs ε on the demo set (dashed: first random population)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality")
    parser.add_argument("--epsilons", default="0.5,1,2,4,inf")
    parser.add_argument("--methods", default="spti-image,spti-text,image-domain")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/penumbra-quality"))
    parser.add_argument("--collect", action="store_true", help="Only tabulate finished runs.")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.collect:
        order = {m: i for i, m in enumerate(METHODS)}
        rows = [json.loads(p.read_text()) for p in (args.out / "runs").glob("*.json")]
        key = {"floor": -1.0, "∞": INF}
        rows.sort(
            key=lambda r: (order[r["method"]], key.get(r["epsilon"], 0) or float(r["epsilon"]))
        )
        sys.stdout.write(write_outputs(rows, args.out, args) + "\n")
        return 0
    epsilons = [INF if e == "inf" else float(e) for e in args.epsilons.split(",")]
    ref = Reference(args.work / "data")
    results: list[dict[str, Any]] = []
    for method in args.methods.split(","):
        first_run: Path | None = None
        for eps in epsilons:
            record = args.out / "runs" / f"{method}-eps{_label(eps)}.json"
            run_dir = args.work / f"{method}-eps{_label(eps)}"
            if record.exists():
                row = json.loads(record.read_text())
            else:
                start = time.perf_counter()
                if method == "image-domain":
                    synthetic = run_image_domain(ref, run_dir, eps, args)
                else:
                    synthetic = run_spti(ref, run_dir, eps, method.removeprefix("spti-"), args)
                wall = time.perf_counter() - start
                row = {"method": method, "epsilon": _label(eps), "wall_s": wall,
                       **ref.measure(synthetic)}  # fmt: skip
                record.parent.mkdir(parents=True, exist_ok=True)
                record.write_text(json.dumps(row, indent=2))
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
            results.append(row)
            first_run = first_run or run_dir
        if first_run is not None and first_run.exists():
            record = args.out / "runs" / f"{method}-floor.json"
            if record.exists():
                row = json.loads(record.read_text())
            else:
                floor = (image_domain_floor if method == "image-domain" else spti_floor)(
                    first_run, args.work / f"{method}-floor"
                )
                row = {"method": method, "epsilon": "floor", "wall_s": 0.0, **ref.measure(floor)}
                record.write_text(json.dumps(row, indent=2))
            results.append(row)
    sys.stdout.write(write_outputs(results, args.out, args) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
