"""Quality vs ε on the demo private set, over seeds: SPTI (image and text voting) against
image-domain PE, with error bars.

For each method, ε in {0.5, 1, 2, 4, ∞} and seed, a synthetic set is made from the same 4000
"private" demo images (the demo config with that seed: generation, render and selection seeds
change; DP noise is always fresh). The first random population of each (method, seed) is the
floor (what the public models give with no private signal), and 1000 held-out real images from
the private set's own distribution are the ceiling (what a perfect generator's sample of that
size shows). Every set is measured against the private images:
- class-mix total variation (shipped Fashion-MNIST classifier vs the demo labels);
- dark/mid/light mix within classes (total variation averaged over classes, train-split
  ruler) and the largest gap in the share of dark items;
- KID and precision/recall (k=3) on EffNet-Lite0 features; membership-inference AUC against
  the 1000 held-out images.
Rows give mean ± std over the seeds; the check under the table says whether each metric is
monotone in ε within the error bars and whether ε = ∞ is the best row. ∞ runs at ε = 10⁶
(σ ≈ 0.001 votes: noise only breaks ties). Everything here is evaluation, not DP.

    .venv/bin/python bench/quality.py [--seeds 0,1,2] [--epsilons 0.5,1,2,4,inf] \
        [--methods spti-image,spti-text,image-domain] [--num-images 1000] ...
    .venv/bin/python bench/quality.py --collect    # table, plot and RESULTS.md from finished runs

One JSON per run under OUT/runs, so an interrupted bench resumes; the table goes to
OUT/quality.md, the plot to OUT/quality.png and the section to bench/RESULTS.md.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
INF = 1e6
PROMPTS = [f"a photo of a {name}" for name in (
    "t-shirt", "pair of trousers", "pullover", "dress", "coat", "pair of sandals", "shirt",
    "pair of sneakers", "bag", "pair of ankle boots")]  # fmt: skip
METHODS = {
    "spti-image": "SPTI, image voting",
    "spti-text": "SPTI, text voting",
    "image-domain": "image-domain PE (baseline)",
    "oracle": "oracle captions from the private images (evaluation only, not DP)",
}
# (key, title, lower is better)
METRICS = [
    ("class_tv", "class-mix TV", True),
    ("tone_tv", "dark/mid/light TV", True),
    ("dark_gap", "largest dark-share gap", True),
    ("kid", "KID", True),
    ("precision", "precision", False),
    ("recall", "recall", False),
    ("frechet", "Fréchet distance", True),
    ("distinct", "distinct captions", False),
    ("tv_rise", "class-mix TV rise after iteration 1", True),
    ("mia_auc", "MIA AUC", None),
]


def _label(eps: float) -> str:
    return "∞" if eps >= INF else f"{eps:g}"


def _eps_value(label: str) -> float:
    return {"floor": -1.0, "∞": INF, "oracle": 1.5 * INF, "real": 2 * INF}.get(label) or float(
        label
    )


class Reference:
    """The private (member) and held-out sets: features, labels and tone mixes, computed once."""

    def __init__(self, root: Path) -> None:
        from penumbra.data.demo import demo_holdout_set
        from penumbra.evaluate.evaluation import _embedder
        from penumbra.evaluate.fashion_classifier import class_mix
        from penumbra.evaluate.fashion_tones import tone_levels, tone_mix_by_class
        from penumbra.evaluate.features import embed_folder
        from penumbra.spti.demo import DEMO_PRIVATE, materialise_private

        self.private = root / "private"
        self.holdout = root / "holdout"
        materialise_private(self.private)
        materialise_private(self.holdout, demo_holdout_set(DEMO_PRIVATE))
        self.embed, _ = _embedder("builtin:effnet-lite0", None)
        self.members = embed_folder(self.private, self.embed, name="private")
        self.nonmembers = embed_folder(self.holdout, self.embed, name="holdout")
        rows = {r["file_name"]: r["label"] for r in _metadata(self.private)}
        self.labels = np.array([rows[p] for p in self.members.relpaths])
        self.class_mix = class_mix(self.labels)
        images = [Image.open(self.private / p) for p in self.members.relpaths]
        self.tone_mix = tone_mix_by_class(tone_levels(images, self.labels), self.labels)

    def measure(self, synthetic: Path, *, labelled: bool = False) -> dict[str, Any]:
        """Metrics of one set; `labelled` uses the set's own labels (the held-out real images)
        instead of the classifier's."""
        from penumbra.evaluate.audit import membership_inference
        from penumbra.evaluate.evaluation import fidelity
        from penumbra.evaluate.fashion_classifier import class_mix, predict, total_variation
        from penumbra.evaluate.fashion_tones import (
            tone_levels,
            tone_mix_by_class,
            tone_mix_distance,
        )
        from penumbra.evaluate.features import embed_folder

        syn = embed_folder(synthetic, self.embed, name="synthetic")
        fid = fidelity(syn.features, self.members.features, k=3, kid_subsets=20,
                       kid_subset_size=1000, seed=0)  # fmt: skip
        images = [Image.open(synthetic / p) for p in syn.relpaths]
        if labelled:
            rows = {r["file_name"]: r["label"] for r in _metadata(synthetic)}
            labels = np.array([rows[p] for p in syn.relpaths])
        else:
            labels = predict(images)
        tones = tone_mix_by_class(tone_levels(images, labels), labels)
        gaps = [abs(a[0] - b[0]) for a, b in zip(self.tone_mix, tones, strict=True)
                if a is not None and b is not None]  # fmt: skip
        # the held-out images are the audit's non-members themselves: no MIA for them
        mia = {"auc": float("nan")} if labelled else membership_inference(
            syn.features, self.members.features, self.nonmembers.features, seed=0, bootstrap=100
        )  # fmt: skip
        return {
            "class_tv": total_variation(class_mix(labels), self.class_mix),
            "tone_tv": tone_mix_distance(self.tone_mix, tones, self.class_mix),
            "dark_gap": max(gaps) if gaps else 1.0,
            "kid": fid["kid"],
            "precision": fid["precision"],
            "recall": fid["recall"],
            "frechet": fid["frechet_distance"],
            # the held-out images and a floor (renders copied out of a run) have no captions
            "distinct": float(len({r.get("caption") for r in _metadata(synthetic)}))
            if not labelled and (synthetic / "metadata.jsonl").exists()
            else float("nan"),
            "mia_auc": mia["auc"],
            "images": len(syn),
        }


def oracle_captions(seed: int, num_images: int) -> list[str]:
    """The ceiling of any caption-choosing pipeline with the shipped generator: each caption
    made from one private image's own class and attributes (the generator's training caption
    scheme; dark/light by the shipped train-split cuts, size and texture by private terciles).
    Reads private labels and pixels: evaluation only, never DP."""
    from penumbra.data.demo import demo_private_set, tone_cuts
    from penumbra.data.fashion import attributes, class_thresholds, make_caption, measure
    from penumbra.spti.demo import DEMO_PRIVATE

    demo = demo_private_set(DEMO_PRIVATE)
    pixels = np.stack([np.asarray(image.convert("L")) for image in demo.images])
    labels = np.asarray(demo.labels, dtype=np.int64)
    # dark/mid/light by the shipped train-split intensity cuts (the train split itself is not
    # installed everywhere); size and texture levels by terciles within each private class
    attrs = attributes(pixels, labels, class_thresholds(pixels, labels))
    tones = tone_cuts()[labels]
    intensity = measure(pixels)[0]
    dark = np.where(intensity < tones[:, 0], -1, np.where(intensity > tones[:, 1], 1, 0))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pixels), size=num_images, replace=num_images > len(pixels))
    return [
        make_caption(int(labels[i]), (int(dark[i]), int(attrs.area_level[i]),
                                      int(attrs.texture_level[i])), rng)
        for i in picked
    ]  # fmt: skip


def run_oracle(dest: Path, seed: int, num_images: int) -> Path:
    """`oracle_captions` rendered by builtin:fashion-t2i (evaluation only, never DP)."""
    from penumbra.data.imagefolder import write_imagefolder
    from penumbra.models import load

    synthetic = dest / "synthetic"
    if (synthetic / "metadata.jsonl").exists():
        return synthetic
    captions = oracle_captions(seed, num_images)
    generator = load("builtin:fashion-t2i", role="image-generator")
    images = generator.generate(captions, seed=seed)  # type: ignore[attr-defined]
    items = [(image, {"caption": c}) for image, c in zip(images, captions, strict=True)]
    write_imagefolder(synthetic, items)
    return synthetic


def _metadata(folder: Path) -> list[dict[str, Any]]:
    from penumbra.data.imagefolder import read_imagefolder_metadata

    return read_imagefolder_metadata(folder)


def run_spti(
    ref: Reference, out: Path, eps: float, seed: int, voting: str, args: argparse.Namespace
) -> Path:
    from penumbra.config import RunConfig
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import synthesize

    data = demo_config(eps).model_dump(mode="json")
    data.update(voting=voting, seed=seed)
    data["pe"].update(iterations=args.iterations, population=args.population,
                      max_population=args.max_population)  # fmt: skip
    data["output"]["num_images"] = args.num_images
    reused = _reusable(args.reuse, eps, seed, data) if voting == "image" else None
    if reused is not None:
        return reused
    if out.exists() and not (out / "synthetic" / "metadata.jsonl").exists():
        shutil.rmtree(out)  # an interrupted run: start it again (its noise was never used)
    if not out.exists():
        synthesize(ref.private, None, out=out, config=RunConfig.model_validate(data))
    return out / "synthetic"


def _reusable(root: Path | None, eps: float, seed: int, data: dict[str, Any]) -> Path | None:
    """A finished `bench/demo_quality.py` run with exactly this config, if there is one."""
    import yaml

    if root is None:
        return None
    run = root / f"eps-{'inf' if eps >= INF else f'{eps:g}'}-seed-{seed}"
    if not (run / "synthetic" / "metadata.jsonl").exists():
        return None
    recorded = yaml.safe_load((run / "run.yaml").read_text())
    pe = ("iterations", "population", "k", "threshold", "selection", "metric", "lookahead")
    same = all(recorded["pe"].get(k) == data["pe"].get(k) for k in pe) and all(
        recorded.get(k) == data.get(k) for k in ("models", "output", "prompts", "seed")
    )
    return run / "synthetic" if same else None


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


def run_image_domain(
    ref: Reference, out: Path, eps: float, seed: int, args: argparse.Namespace
) -> Path:
    from penumbra.models import load
    from penumbra.pe.evolve import EvolveSettings, evolve
    from penumbra.pe.image_domain import ImageFileAPI
    from penumbra.pe.voting import local_voter
    from penumbra.privacy import default_delta, discrete_gaussian_sigma
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import recommended_population

    synthetic = out / "synthetic"
    if synthetic.exists():
        return synthetic
    shutil.rmtree(out, ignore_errors=True)
    generator = load("builtin:fashion-t2i", role="image-generator")
    models = demo_config(eps).models  # the demo's voting embedder
    embedder = load(
        models.image_embedder, role="image-embedder", **models.options_for(models.image_embedder)
    )
    private = embedder.embed([Image.open(ref.private / p) for p in ref.members.relpaths])
    api = ImageFileAPI(generator, out / "candidates", PROMPTS, strength=0.5)  # type: ignore[arg-type]
    n, delta = len(private), default_delta(len(private))
    population = args.population
    if population == "auto":
        sigma = discrete_gaussian_sigma(eps, delta, args.iterations, 1)
        population = recommended_population(n, sigma, most=args.max_population)
    result = evolve(
        out / "candidates", random_api=api, variation_api=api, embed=api.embedder(embedder),
        voter=local_voter(private, k=1),
        settings=EvolveSettings(epsilon=eps, delta=delta, iterations=args.iterations,
                                population=(int(population),), num_outputs=args.num_images,
                                seed=seed),
    )  # fmt: skip
    tmp = out / "synthetic.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
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


def tv_by_iteration(run: Path, private: Path) -> list[float]:
    """Class-mix TV of each iteration's population weighted by its noisy votes (the demo's
    `class_mix_report`, classifier on the run's cached renders)."""
    from penumbra.spti.demo import class_mix_report

    labels = np.array([r["label"] for r in _metadata(private)])
    report = class_mix_report(run, private_labels=labels)
    return [v for k, v in report.items() if k.startswith("iteration ")]


def tv_rise(tvs: list[float]) -> float:
    """The largest rise of the class-mix TV after iteration 1 above its best value so far."""
    return max([tvs[t] - min(tvs[:t]) for t in range(1, len(tvs))], default=0.0)


def add_iteration_tvs(runs: Path, work: Path) -> None:
    """Per-iteration TVs for finished SPTI runs whose record lacks them (older records)."""
    for record in sorted(runs.glob("spti-*-eps*.json")):
        row = json.loads(record.read_text())
        folder = work / record.stem
        if "tv_by_iteration" in row or not (folder / "candidates").is_dir():
            continue
        row["tv_by_iteration"] = tv_by_iteration(folder, work / "data" / "private")
        row["tv_rise"] = tv_rise(row["tv_by_iteration"])
        record.write_text(json.dumps(row, indent=2))


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, ε label) → per metric (mean, std, n) over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["epsilon"]), []).append(row)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, group in groups.items():
        stats: dict[str, Any] = {"seeds": sorted(int(r["seed"]) for r in group)}
        for metric, _, _ in METRICS:
            values = np.array([r.get(metric, np.nan) for r in group], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            stats[metric] = (float(values.mean()), std, len(values))
        stats["wall_s"] = float(np.mean([r.get("wall_s", 0.0) for r in group]))
        out[key] = stats
    return out


def monotonicity(summary: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Per method and metric: does quality improve (or hold, within one std of either side)
    as ε grows, and is ε = ∞ the best row (within its std)?"""
    lines = []
    for method in METHODS:
        labels = sorted((e for m, e in summary
                         if m == method and e not in ("floor", "real", "oracle")),
                        key=_eps_value)  # fmt: skip
        if len(labels) < 2:
            continue
        verdicts = []
        for metric, title, lower in METRICS:
            if lower is None:
                continue
            sign = 1.0 if lower else -1.0
            cells = [summary[(method, e)][metric] for e in labels]
            breaks = [
                f"{labels[i]}→{labels[i + 1]}"
                for i in range(len(cells) - 1)
                if sign * (cells[i + 1][0] - cells[i][0]) > cells[i][1] + cells[i + 1][1]
            ]
            best = min(sign * c[0] for c in cells)
            inf_ok = labels[-1] != "∞" or sign * cells[-1][0] - cells[-1][1] <= best
            verdicts.append(
                f"{title}: {'monotone' if not breaks else 'worse at ' + ', '.join(breaks)}"
                f"{'' if inf_ok else '; ∞ not best'}"
            )
        lines.append(f"- {METHODS[method]}: " + "; ".join(verdicts))
    return lines


def _cell(stat: tuple[float, float, int], scale: float = 1.0, fmt: str = ".3f") -> str:
    mean, std, _ = stat
    if not np.isfinite(mean):
        return "n/a"
    return f"{scale * mean:{fmt}} ± {scale * std:{fmt}}"


def table(summary: dict[tuple[str, str], dict[str, Any]]) -> str:
    lines = [
        "| method | ε | seeds | class-mix TV ↓ | dark/mid/light TV ↓ | largest dark gap ↓ | "
        "KID×10³ ↓ | precision ↑ | recall ↑ | Fréchet ↓ | distinct captions ↑ | "
        "TV rise after it. 1 ↓ | MIA AUC | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {m: i for i, m in enumerate([*METHODS, "real"])}
    keys = sorted(summary, key=lambda key: (order[key[0]], _eps_value(key[1])))
    for method, eps in keys:
        s = summary[(method, eps)]
        name = METHODS.get(method, "held-out real images (ceiling)")
        lines.append(
            f"| {name} | {eps} | {len(s['seeds'])} | {_cell(s['class_tv'])} | "
            f"{_cell(s['tone_tv'])} | {_cell(s['dark_gap'], fmt='.2f')} | "
            f"{_cell(s['kid'], 1e3, '.0f')} | {_cell(s['precision'])} | {_cell(s['recall'])} | "
            f"{_cell(s['frechet'], fmt='.0f')} | {_cell(s['distinct'], fmt='.0f')} | "
            f"{_cell(s['tv_rise'])} | {_cell(s['mia_auc'])} | {s['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def write_outputs(rows: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> str:
    summary = summarise(rows)
    header = (
        f"Machine: developer VM ({platform.machine()}, 2 cores, no GPU), Python "
        f"{platform.python_version()}. Command: `.venv/bin/python bench/quality.py --out "
        f"{_shown(args.out)} --methods {args.methods} --epsilons {args.epsilons} --seeds "
        f"{args.seeds} --iterations {args.iterations} --population {args.population} "
        f"--max-population {args.max_population} --num-images {args.num_images}` "
        "(then `--collect`). Private set: 4000 demo images; held-out: 1000. Mean ± std over "
        "the seeds listed; floor = each seed's first random population; ∞ = ε 10⁶. Quality "
        "figures only: runs shared the machine, so wall times are indicative.\n\n"
    )
    text = header + table(summary) + "\n\nMonotone in ε (within ± one std on both sides):\n\n"
    text += "\n".join(monotonicity(summary)) + "\n"
    (out / "quality.md").write_text(text)
    _plot(summary, out / "quality.png")
    splice_results(text, out / "quality.png", name=args.section, title=args.title)
    return text


def _shown(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def splice_results(
    section: str,
    png: Path,
    results: Path = ROOT / "bench" / "RESULTS.md",
    *,
    name: str = "quality",
    title: str = "Quality vs ε",
) -> None:
    """Put the table into RESULTS.md between markers (replacing an earlier run's)."""
    from results_md import splice_section

    link = png.relative_to(results.parent).as_posix() if png.is_relative_to(results.parent) else png
    block = f"## {title} (`bench/quality.py`)\n\n{section}\nPlot: [{link}]({link})\n"
    splice_section(name, block, results)


def _plot(summary: dict[tuple[str, str], dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in METRICS if m[0] != "dark_gap"]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.4), dpi=100)
    colours = {"spti-image": "C0", "spti-text": "C1", "image-domain": "C2"}
    for ax, (key, title, lower) in zip(axes, shown, strict=True):
        for method, colour in colours.items():
            labels = sorted((e for m, e in summary if m == method and e != "floor"),
                            key=_eps_value)  # fmt: skip
            if not labels:
                continue
            xs = [16.0 if e == "∞" else float(e) for e in labels]  # ∞ drawn at the right edge
            means = [summary[(method, e)][key][0] for e in labels]
            stds = [summary[(method, e)][key][1] for e in labels]
            ax.errorbar(xs, means, yerr=stds, fmt="o-", color=colour, capsize=3,
                        label=METHODS[method])  # fmt: skip
            if (method, "floor") in summary:
                ax.axhline(summary[(method, "floor")][key][0], color=colour, ls="--", lw=0.8)
        if ("real", "real") in summary:
            ax.axhline(summary[("real", "real")][key][0], color="k", ls=":", lw=1.0)
        ax.set_xscale("log", base=2)
        ax.set_xticks([0.5, 1, 2, 4, 16], ["0.5", "1", "2", "4", "∞"])
        ax.set_xlabel("ε")
        arrow = "" if lower is None else (" ↓" if lower else " ↑")
        ax.set_title(title + arrow, fontsize=10)
    axes[0].legend(fontsize=7)
    fig.suptitle("Quality vs ε on the demo set, mean ± std over seeds (dashed: first random "
                 "population; dotted: held-out real images)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _population(value: str) -> int | str:
    return value if value == "auto" else int(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality")
    parser.add_argument("--epsilons", default="0.5,1,2,4,inf")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="spti-image,spti-text,image-domain")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--population", type=_population, default=60, help="a number or auto")
    parser.add_argument("--max-population", type=int, default=240)
    parser.add_argument("--num-images", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/penumbra-quality"))
    parser.add_argument(
        "--reuse", type=Path, default=None, help="demo_quality.py runs to reuse (image voting)"
    )
    parser.add_argument("--collect", action="store_true", help="Only tabulate finished runs.")
    parser.add_argument("--section", default="quality", help="RESULTS.md section to write")
    parser.add_argument("--title", default="Quality vs ε", help="that section's title")
    args = parser.parse_args(argv)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.collect:
        ref = Reference(args.work / "data")
        record = runs / "real.json"
        if not record.exists():
            row = {"method": "real", "epsilon": "real", "seed": 0,
                   **ref.measure(ref.holdout, labelled=True)}  # fmt: skip
            record.write_text(json.dumps(row, indent=2))
        epsilons = [INF if e == "inf" else float(e) for e in args.epsilons.split(",")]
        for seed in (int(s) for s in args.seeds.split(",")):
            for method in args.methods.split(","):
                for eps in epsilons:
                    name = f"{method}-eps{_label(eps)}-seed{seed}"
                    record = runs / f"{name}.json"
                    if record.exists():
                        continue
                    if method == "oracle" and eps != epsilons[0]:
                        continue  # ε plays no part: one oracle row per seed
                    if method == "oracle":
                        name, record = f"oracle-seed{seed}", runs / f"oracle-seed{seed}.json"
                        if record.exists():
                            continue
                    start = time.perf_counter()
                    if method == "oracle":
                        synthetic = run_oracle(args.work / name, seed, args.num_images)
                    elif method == "image-domain":
                        synthetic = run_image_domain(ref, args.work / name, eps, seed, args)
                    else:
                        voting = method.removeprefix("spti-")
                        synthetic = run_spti(ref, args.work / name, eps, seed, voting, args)
                    label = "oracle" if method == "oracle" else _label(eps)
                    row = {"method": method, "epsilon": label, "seed": seed,
                           "wall_s": time.perf_counter() - start,
                           **ref.measure(synthetic)}  # fmt: skip
                    record.write_text(json.dumps(row, indent=2))
                    sys.stdout.write(json.dumps(row) + "\n")
                    sys.stdout.flush()
                    floor_record = runs / f"{method}-floor-seed{seed}.json"
                    if method != "oracle" and not floor_record.exists():
                        floor = (image_domain_floor if method == "image-domain" else spti_floor)(
                            synthetic.parent, args.work / f"{method}-floor-seed{seed}"
                        )
                        floor_row = {"method": method, "epsilon": "floor", "seed": seed,
                                     **ref.measure(floor)}  # fmt: skip
                        floor_record.write_text(json.dumps(floor_row, indent=2))
    add_iteration_tvs(runs, args.work)
    rows = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
    rows = [r for r in rows if "seed" in r]  # records of the one-seed bench are not comparable
    sys.stdout.write(write_outputs(rows, args.out, args) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
