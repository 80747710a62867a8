"""Where the demo's dark-share gap comes from: which render each private item votes for.

For finished demo runs (`bench/demo_quality.py` folders), every render the run made is embedded
with `builtin:effnet-lite0` (or `--deep fashion-cnn`: `builtin:fashion-cnn`) and every private
item votes, exactly (no noise), for
its nearest render, with a G×G grey grid (G = 28: the raw pixels) scaled to w / G appended
to the unit-length EffNet features (`--grids`). Per (G, w):
- same class: the render is of the private item's class (the shipped classifier);
- dark → dark: a dark private item's render is dark by that class's cut (the demo's ruler);
- votes' class-mix TV and largest per-class dark-share gap: what a final set drawn exactly in
  proportion to these votes would score, the best PE's selection could do with these renders.

    .venv/bin/python bench/vote_purity.py runs/demo-prop/eps-1-seed-0 runs/demo-prop/eps-1-seed-1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_md import splice_section

from penumbra.data.demo import demo_private_set, tone_cuts
from penumbra.data.fashion import measure
from penumbra.evaluate.fashion_classifier import predict
from penumbra.evaluate.fashion_tones import as_fashion_mnist, tone_levels
from penumbra.models.effnet import EffNetImageEmbedder
from penumbra.spti.demo import DEMO_PRIVATE

WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
FEATURES = 1280


def grid(images: list[Image.Image], g: int) -> np.ndarray:
    """`builtin:pixels` at grid G (the G×G mean grey levels scaled by 1/G, as
    `EffNetImageEmbedder` scales its tone grid, so w means the same at every G; G = 28 is the
    raw pixels): column w of the table is `builtin:composite` with parts effnet-lite0
    (weight 1) and pixels (weight w, `normalise: false`)."""
    from penumbra.models.composite import PixelEmbedder

    return PixelEmbedder(grid=g).embed(images)


def deep_features(name: str, images: list[Image.Image]) -> np.ndarray:
    """Unit-length features of the deep part: effnet-lite0 (1280) or fashion-cnn (64)."""
    if name == "effnet-lite0":
        return EffNetImageEmbedder(tone_grid=8, tone_weight=2.0).embed(images)[:, :FEATURES]
    from penumbra.models import load

    return load(f"builtin:{name}").embed(images)  # type: ignore[attr-defined, no-any-return]


def purity(run: Path, private: np.ndarray, labels: np.ndarray, levels: np.ndarray,
           deep: str, private_images: list[Image.Image],
           grids: list[int]) -> list[dict[str, float]]:  # fmt: skip
    files = sorted(run.glob("renders/*.png"))
    images = [Image.open(f).convert("RGB") for f in files]
    renders = deep_features(deep, images)
    render_class = predict(images)
    render_intensity = measure(np.stack([as_fashion_mnist(i) for i in images]))[0]
    rows = []
    for g in grids:
        p = np.hstack([private, grid(private_images, g)])
        r = np.hstack([renders, grid(images, g)])
        at = _purity_at(p, r, labels, levels, render_class, render_intensity, renders.shape[1])
        for row in at:
            rows.append({"grid": g, **row})
    return rows


def _purity_at(private: np.ndarray, renders: np.ndarray, labels: np.ndarray,
               levels: np.ndarray, render_class: np.ndarray, render_intensity: np.ndarray,
               deep_dim: int) -> list[dict[str, float]]:  # fmt: skip
    cuts = tone_cuts()
    private_mix = np.bincount(labels, minlength=10) / len(labels)
    rows = []
    for w in WEIGHTS:
        scale = w
        p = np.hstack([private[:, :deep_dim], private[:, deep_dim:] * scale])
        r = np.hstack([renders[:, :deep_dim], renders[:, deep_dim:] * scale])
        nearest = ((p**2).sum(1)[:, None] - 2 * p @ r.T + (r**2).sum(1)[None, :]).argmin(1)
        voted_dark = render_intensity[nearest] < cuts[labels, 0]
        classes = render_class[nearest]
        gaps = [
            abs(float((render_intensity[nearest][classes == c] < cuts[c, 0]).mean())
                - float((levels[labels == c] == 0).mean()))
            for c in range(10) if (classes == c).any()
        ]  # fmt: skip
        rows.append({
            "w": w, "renders": len(renders),
            "same_class": float((classes == labels).mean()),
            "dark_to_dark": float(voted_dark[levels == 0].mean()),
            "tv": 0.5 * float(np.abs(np.bincount(classes, minlength=10) / len(classes)
                                     - private_mix).sum()),
            "gap": max(gaps),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--grids", default="8", help="grey-grid sizes G, e.g. 8,14,28")
    parser.add_argument("--section", default="vote-purity", help="RESULTS.md section to write")
    parser.add_argument("--title", default="Vote purity vs tone weight")
    parser.add_argument(
        "--deep",
        default="effnet-lite0",
        choices=("effnet-lite0", "fashion-cnn"),
        help="the deep part of the embedding (unit length, weight 1)",
    )
    args = parser.parse_args()
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    demo = demo_private_set(DEMO_PRIVATE)
    labels = np.asarray(demo.labels)
    images = list(demo.images)
    private = deep_features(args.deep, images)
    levels = tone_levels(images, labels)
    lines = [
        f"## {args.title} (`bench/vote_purity.py`)",
        "",
        f"Exact nearest-render votes of the 4000 demo private items (deep part: {args.deep}) "
        "over every render a finished demo run made, the grey-grid features scaled to w. "
        "Largest dark gap: per class, the dark share of the voted renders vs the private set's "
        "(held-out real images: 0.097). Command: `.venv/bin/python bench/vote_purity.py "
        + " ".join(str(r) for r in args.runs)
        + f" --deep {args.deep} --grids {args.grids}"
        + f"`. Load before: `{before}`.",
        "",
        "| run | renders | G | w | same class | dark → dark | votes' class-mix TV | largest dark "
        "gap |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        grids = [int(g) for g in args.grids.split(",")]
        for row in purity(run, private, labels, levels, args.deep, images, grids):
            lines.append(
                f"| {run.name} | {row['renders']:.0f} | {row['grid']:.0f} | {row['w']:g} | "
                f"{row['same_class']:.3f} | {row['dark_to_dark']:.3f} | {row['tv']:.3f} | "
                f"{row['gap']:.3f} |"
            )
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines.append(f"\nLoad after: `{after}`.")
    block = "\n".join(lines)
    splice_section(args.section, block)
    sys.stdout.write(block + "\n")


if __name__ == "__main__":
    main()
