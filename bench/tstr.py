"""Train-on-synthetic / test-on-real accuracy of the labelled demo vs ε, with its anchors.

Each (ε, seed) is a full `penumbra demo --labelled` run (the labelled demo config with `seed`
set; DP noise is always fresh) followed by `penumbra.evaluate.tstr`: logistic regression on
EffNet-Lite0 features, trained on the 1000 synthetic images and tested on the 1000 held-out real
images. Two anchors are measured in the same run, with the same classifier and test set:

- bare class names: 1000 renders (100 per class, one seed each) of "a photo of a {class}" by
  the same generator at the same size: what the public model gives with no private data;
- real: as many real private images (a stratified draw of 1000 of the 4000, with the seed).

Runs already finished are reused, so an interrupted bench resumes.

    .venv/bin/python bench/tstr.py --epsilon 1 4 inf --seeds 0 1 2 [--out runs/tstr]
    .venv/bin/python bench/tstr.py --collect     # table + plot into RESULTS.md / results/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import splice_section

from penumbra.data.demo import demo_holdout_set
from penumbra.data.imagefolder import write_imagefolder
from penumbra.evaluate.tstr import tstr
from penumbra.spti.demo import (
    CLASS_WORDS,
    DEMO_PRIVATE,
    DEMO_SET,
    HOLDOUT_SET,
    labelled_demo_config,
    materialise_private,
)
from penumbra.spti.pipeline import Run, synthesize

INFINITY = 1e6  # ε = ∞: σ at the accountant's floor, noise only breaks ties
PLOT = Path(__file__).resolve().parent / "results" / "tstr.png"


def _accuracy(result: dict[str, Any], key: str) -> float:
    return float(result[key]["accuracy"])


def bare_names_anchor(root: Path, seed: int, per_class: int = 100) -> Path:
    """'a photo of a {class}' rendered `per_class` times per class (no private data)."""
    folder = root / f"anchor-bare-names-seed-{seed}"
    if (folder / "metadata.jsonl").exists():
        return folder
    from penumbra.models import load

    generator: Any = load("builtin:fashion-t2i", role="image-generator")
    items = []
    for c, word in enumerate(CLASS_WORDS):
        caption = f"a photo of a {word}"
        for j in range(per_class):
            image = generator.generate([caption], seed=seed * 1_000_003 + c * per_class + j)[0]
            items.append((image, {"label": c, "class_name": word, "caption": caption}))
    write_imagefolder(folder, items, overwrite=True)
    return folder


def _pixels(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Grey 28×28 pixels and class names (a larger image is centre-cropped: fashion-t2i version
    1 drew 28×28 items with a 2-pixel border at 32 px; version 2 renders 28 px)."""
    from PIL import Image

    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    images = []
    for row in rows:
        image = Image.open(folder / row["file_name"]).convert("L")
        left = (image.size[0] - 28) // 2
        image = image.crop((left, left, left + 28, left + 28))
        images.append(np.asarray(image, dtype=np.float32).ravel() / 255.0)
    return np.stack(images), np.array([row["class_name"] for row in rows])


def pixel_tstr(run: Path, anchor: Path, seed: int) -> dict[str, float]:
    """The issue's outside yardstick: logistic regression on pixels (standardised), trained on
    1000 images, tested on the 1000 held-out ones; for synthetic, bare names and real."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    test_x, test_y = _pixels(run / HOLDOUT_SET)
    real_x, real_y = _pixels(run / DEMO_SET)
    pick = np.random.default_rng(seed).permutation(len(real_y))[:1000]
    out = {}
    for key, (x, y) in {"synthetic": _pixels(run / "synthetic"), "bare_names": _pixels(anchor),
                        "real_same_number": (real_x[pick], real_y[pick])}.items():  # fmt: skip
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(max_iter=2000, random_state=seed).fit(scaler.transform(x), y)
        out[key] = float((model.predict(scaler.transform(test_x)) == test_y).mean())
    return out


def _with_pixels(root: Path, summary: Path) -> dict[str, Any]:
    row = dict(json.loads(summary.read_text()))
    if "pixels" not in row:
        row["pixels"] = pixel_tstr(summary.parent, bare_names_anchor(root, row["seed"]),
                                   row["seed"])  # fmt: skip
        summary.write_text(json.dumps(row, indent=2))
    return row


def run_one(root: Path, epsilon: float, seed: int) -> dict[str, Any]:
    label = "inf" if epsilon >= INFINITY else f"{epsilon:g}"
    out = root / f"eps-{label}-seed-{seed}"
    summary = out / "tstr.json"
    if summary.exists():
        return _with_pixels(root, summary)
    # inside the run's private/, as the demo keeps them: a run never publishes a private image
    from penumbra.spti.private_embeddings import private_folder

    private_folder(out)
    materialise_private(out / DEMO_SET)
    materialise_private(out / HOLDOUT_SET, demo_holdout_set(DEMO_PRIVATE))
    config = labelled_demo_config(epsilon)
    config.seed = seed
    start = time.monotonic()
    resume = (out / "run.yaml").exists()
    run = synthesize(
        out / DEMO_SET, None, out=out, config=None if resume else config, resume=resume
    )
    assert isinstance(run, Run)
    seconds = time.monotonic() - start
    holdout, private = out / HOLDOUT_SET, out / DEMO_SET
    synthetic = tstr(out / "synthetic", holdout, real_train=private, seed=seed)
    anchor = tstr(bare_names_anchor(root, seed), holdout, real_train=private, seed=seed)
    result = {
        "epsilon": epsilon,
        "seed": seed,
        "sigma": run.sigma,
        "epsilon_spent": run.epsilon_spent,
        "synthetic": _accuracy(synthetic, "synthetic"),
        "synthetic_recall": synthetic["synthetic"]["per_class_recall"],
        "bare_names": _accuracy(anchor, "synthetic"),
        "real_same_number": _accuracy(synthetic, "real_same_number"),
        "chance": synthetic["chance"],
        "test_images": synthetic["test_images"],
        "run_seconds": seconds,
    }
    summary.write_text(json.dumps(result, indent=2))
    return _with_pixels(root, summary)


def _stat(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0:.3f}"


def collect(root: Path) -> str:
    rows = [_with_pixels(root, p) for p in sorted(root.glob("eps-*/tstr.json"))]
    by_eps: dict[float, list[dict[str, Any]]] = {}
    for row in rows:
        by_eps.setdefault(row["epsilon"], []).append(row)
    lines = [
        "| ε | seeds | classifier | trained on synthetic | bare class names (anchor) | as many "
        "real images (anchor) | synthetic − bare names |",
        "|---|---|---|---|---|---|---|",
    ]
    for eps in sorted(by_eps):
        group = by_eps[eps]
        label = "∞" if eps >= INFINITY else f"{eps:g}"
        seeds = ", ".join(str(r["seed"]) for r in group)
        for name, part in (("LR on EffNet features", lambda r: r),
                           ("LR on pixels", lambda r: r["pixels"])):  # fmt: skip
            values = [part(r) for r in group]
            diff = [v["synthetic"] - v["bare_names"] for v in values]
            lines.append(
                f"| {label} | {seeds} | {name} | {_stat([v['synthetic'] for v in values])} | "
                f"{_stat([v['bare_names'] for v in values])} | "
                f"{_stat([v['real_same_number'] for v in values])} | {_stat(diff)} |"
            )
    _plot(by_eps)
    return "\n".join(lines)


def _plot(by_eps: dict[float, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(by_eps)
    xs = np.arange(len(order))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120, layout="constrained",
                             sharey=True)  # fmt: skip
    panels = (("LR on EffNet-Lite0 features", lambda r: r),
              ("LR on pixels (the issue's yardstick)", lambda r: r["pixels"]))  # fmt: skip
    for ax, (title, part) in zip(axes, panels, strict=True):
        for key, name, colour in (("synthetic", "trained on DP synthetic", "C0"),
                                  ("bare_names", "bare class names (no private data)", "C3"),
                                  ("real_same_number", "as many real images", "C2")):  # fmt: skip
            values = [[part(r)[key] for r in by_eps[e]] for e in order]
            means = [np.mean(v) for v in values]
            stds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in values]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=name, color=colour)
        ax.set_xticks(xs, ["∞" if e >= INFINITY else f"{e:g}" for e in order])
        ax.set_xlabel("ε (labelled demo, 4000 private images)")
        ax.set_title(f"{title}; mean ± std over seeds", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on 1000 held-out real images")
    axes[0].legend(fontsize=7)
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epsilon", nargs="*", default=["1", "4", "inf"])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/tstr"))
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs")
    args = parser.parse_args(argv)
    if not args.collect:
        for text in args.epsilon:
            eps = INFINITY if text == "inf" else float(text)
            for seed in args.seeds:
                print(json.dumps(run_one(args.out, eps, seed)), flush=True)
    table = collect(args.out)
    print(table)
    if args.collect:
        splice_section(
            "tstr",
            "## Train on synthetic, test on real (`bench/tstr.py`)\n\n"
            "Labelled demo runs (`penumbra demo --labelled` config: 4000 private images in 10 "
            "classes, one PE per class, 5 iterations, per-class population N_c/2σ from the DP "
            "class counts capped at 20, 1000 outputs split by the DP counts), each followed by "
            "logistic regression trained on the 1000 outputs and tested on the 1000 held-out "
            "real images, on EffNet-Lite0 features (`penumbra evaluate --tstr`) and on "
            "standardised grey pixels (28×28; the generator's 32-px images centre-cropped), "
            "the yardstick of the issue's outside measurement. Anchors with the same "
            "classifiers and test set, measured in the same run: 1000 renders of the bare "
            "class names by the same generator, and 1000 real private images. Mean ± std "
            "over the seeds listed. Evaluation only (uses the labels of private and held-out "
            "images), not DP.\n\n" + table + "\n\n![TSTR accuracy vs ε](results/tstr.png)",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
