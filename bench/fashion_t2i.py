"""Quality and speed of builtin:fashion-t2i (needs Debian's dataset-fashion-mnist).

    .venv/bin/python bench/fashion_t2i.py [--n-fid 10000] [--json out.json]

1. Class following: a softmax-regression classifier trained on real train pixels labels images
   generated from held-out caption phrasings (templates and synonyms never seen in training).
2. Attribute following: "dark …" vs "light …" prompts, mean garment intensity per class.
3. Fréchet distance in builtin:effnet-lite0 feature space: generated (captions drawn like the
   training captions, from the test split's attributes) vs the real test split, beside real
   train vs real test.
4. Speed: images/s at the default size, batches of 64, default steps, on this machine.
5. `--oracle`: the ceiling of every caption-choosing pipeline: 1000 captions made from private
   images' own class and attributes (`bench/quality.py`'s oracle, evaluation only, not DP),
   rendered and measured against the demo's 4000 private images with `bench/quality.py`'s
   metrics (EffNet-Lite0 recall/precision/Fréchet, class-mix TV by the shipped classifier, tone
   TV), per seed, for version 1 (the 32-px canvas with its border, as shipped before) and
   version 2 (the data's 28-px frame) of the same weights, and over guidance and steps.
   `--oracle-only` skips 1-4 (they need Debian's dataset-fashion-mnist; 5 does not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from penumbra.data.fashion import (
    ADJECTIVES,
    CLASS_NAMES,
    HELD_OUT_TEMPLATES,
    NOUNS,
    attributes,
    class_thresholds,
    load_fashion_mnist,
    make_caption,
    measure,
)
from penumbra.evaluate.fashion_classifier import train as train_classifier
from penumbra.evaluate.frechet import frechet_between
from penumbra.models import load


def to28(images: list[Image.Image]) -> np.ndarray:
    """Generated RGB (the data's frame at any size) → 28×28 grayscale."""
    return np.stack([np.asarray(im.convert("L").resize((28, 28))) for im in images])


def canvas_renders(gen: Any, captions: list[str], seed: int) -> list[Image.Image]:
    """Version 1's output: the UNet's whole 32×32 canvas, border kept (same noise as
    `generate` with this seed)."""
    from penumbra.models.fashion_t2i import sample

    out: list[Image.Image] = []
    for offset in range(0, len(captions), gen.batch_size):
        batch = captions[offset : offset + gen.batch_size]
        noise = torch.Generator().manual_seed(seed * 1_000_003 + offset)
        x = sample(gen._model, gen._embed(batch), steps=gen.steps, guidance=gen.guidance,
                   generator=noise)  # fmt: skip
        arr = ((x[:, 0].numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        out.extend(Image.fromarray(a, mode="L").convert("RGB") for a in arr)
    return out


ORACLE_VARIANTS = (  # (label, version, guidance, steps)
    ("v1: 32-px canvas, border kept, guidance 3 (shipped before)", 1, 3.0, 12),
    ("v2 frame, v1's sampler (guidance 3)", 2, 3.0, 12),
    ("v2: 28-px frame, guidance 2 (default)", 2, 2.0, 12),
    ("v2, guidance 1.5", 2, 1.5, 12),
    ("v2, guidance 2, 6 steps", 2, 2.0, 6),
    ("v2, guidance 2, 24 steps", 2, 2.0, 24),
)


def oracle_table(work: Path, seeds: list[int], num_images: int) -> list[dict[str, Any]]:
    """Oracle-caption renders of each variant, measured like `bench/quality.py` measures runs."""
    from quality import Reference, oracle_captions

    from penumbra.data.imagefolder import write_imagefolder

    ref = Reference(work / "reference")
    rows = []
    for label, version, guidance, steps in ORACLE_VARIANTS:
        gen = load("builtin:fashion-t2i", guidance=guidance, steps=steps)
        for seed in seeds:
            captions = oracle_captions(seed, num_images)
            start = time.perf_counter()
            if version == 1:
                images = canvas_renders(gen, captions, seed)
            else:
                images = gen.generate(captions, seed=seed)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - start
            folder = work / f"oracle-v{version}-g{guidance}-s{steps}-seed{seed}"
            items = [(im, {"caption": c}) for im, c in zip(images, captions, strict=True)]
            write_imagefolder(folder, items, overwrite=True)
            m = ref.measure(folder)
            if version == 1:  # class and tone as version 1's rulers read it: border cropped
                cropped = folder.with_name(folder.name + "-cropped")
                crops = [(im.crop((2, 2, 30, 30)), meta) for im, meta in items]
                write_imagefolder(cropped, crops, overwrite=True)
                as_v1 = ref.measure(cropped)
                m.update(class_tv=as_v1["class_tv"], tone_tv=as_v1["tone_tv"])
            kept = {k: m[k] for k in ("recall", "precision", "frechet", "class_tv", "tone_tv")}
            per_image = seconds / num_images
            rows.append({"variant": label, "seed": seed, "seconds_per_image": per_image, **kept})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def oracle_markdown(rows: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds per variant."""
    keys = ("recall", "precision", "frechet", "class_tv", "tone_tv", "seconds_per_image")
    lines = ["| oracle captions, 1000 renders | recall | precision | Fréchet | class-mix TV | "
             "tone TV | s/image |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, *_ in ORACLE_VARIANTS:
        mine = [r for r in rows if r["variant"] == label]
        cells = []
        for k in keys:
            v = np.array([r[k] for r in mine])
            fmt = ".1f" if k == "frechet" else ".4f" if k == "seconds_per_image" else ".3f"
            cells.append(f"{v.mean():{fmt}} ± {v.std(ddof=1) if len(v) > 1 else 0:{fmt}}")
        lines.append(f"| {label} ({len(mine)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-fid", type=int, default=10000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--json")
    parser.add_argument("--oracle", action="store_true", help="add the oracle-caption table")
    parser.add_argument("--oracle-only", action="store_true", help="only the oracle table")
    parser.add_argument("--oracle-seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, default=Path("runs/fashion-t2i-oracle"))
    parser.add_argument("--guidance", type=float, help="sections 1-4: not the shipped default")
    args = parser.parse_args()
    console = Console()
    results: dict[str, object] = {}
    if args.oracle or args.oracle_only:
        before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        seeds = [int(s) for s in args.oracle_seeds.split(",")]
        rows = oracle_table(args.work, seeds, 1000)
        after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        results["oracle"] = rows
        sys.stdout.write(f"{oracle_markdown(rows)}\n\nload before: {before}\nafter: {after}\n")
        if args.oracle_only:
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
            return
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    gen = load(
        "builtin:fashion-t2i", **({} if args.guidance is None else {"guidance": args.guidance})
    )
    results["guidance"] = gen.guidance  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)

    clf, real_accuracy = train_classifier()  # the shipped evaluation classifier's recipe
    results["classifier_real_test_accuracy"] = real_accuracy

    def predict(images: list[Image.Image]) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(to28(images).reshape(len(images), -1).astype(np.float32) / 255.0)
            labels: np.ndarray = clf(x).argmax(1).numpy()
        return labels

    def class_following(unseen_words: bool) -> tuple[float, dict[str, float]]:
        prompts, labels = [], []
        for c in range(10):
            for j in range(args.per_class):
                if unseen_words:  # held-out templates AND synonyms never seen in training
                    levels = tuple(int(v) for v in rng.integers(-1, 2, size=3))
                    prompts.append(make_caption(c, levels, rng, held_out=True))  # type: ignore[arg-type]
                else:  # held-out templates with the training vocabulary
                    noun = NOUNS[c][j % (len(NOUNS[c]) - 1)]
                    template = HELD_OUT_TEMPLATES[j % len(HELD_OUT_TEMPLATES)]
                    prompts.append(template.format(a="an" if noun[0] in "aeiou" else "a",
                                                   adj="", noun=noun))  # fmt: skip
                labels.append(c)
        y = np.array(labels)
        pred = predict(gen.generate(prompts, seed=1))  # type: ignore[attr-defined]
        per_class = {CLASS_NAMES[c]: float((pred[y == c] == c).mean()) for c in range(10)}
        return float((pred == y).mean()), per_class

    acc, per_class = class_following(unseen_words=False)
    results["heldout_templates_accuracy"] = acc
    results["heldout_templates_per_class"] = per_class
    acc, per_class = class_following(unseen_words=True)
    results["unseen_synonyms_accuracy"] = acc
    results["unseen_synonyms_per_class"] = per_class

    def intensity(prompt: str) -> float:
        return float(measure(to28(gen.generate([prompt] * 50, seed=2)))[0].mean())  # type: ignore[attr-defined]

    word_pairs = {
        "trained": ("dark", "light"),
        "unseen": (ADJECTIVES["dark"][-1], ADJECTIVES["light"][-1]),
    }
    for label, (dark, light) in word_pairs.items():
        pairs = {
            CLASS_NAMES[c]: (intensity(f"a photo of a {dark} {NOUNS[c][0]}"),
                             intensity(f"a photo of a {light} {NOUNS[c][0]}"))
            for c in range(10)
        }  # fmt: skip
        results[f"dark_vs_light_{label}_words"] = pairs
        results[f"dark_darker_in_classes_{label}_words"] = sum(d < lt for d, lt in pairs.values())

    emb = load("builtin:effnet-lite0", image_size=96)
    cuts = class_thresholds(train_x, train_y)
    n = min(args.n_fid, len(test_x))
    attrs = attributes(test_x[:n], test_y[:n], cuts)
    fid_prompts = [
        make_caption(int(test_y[i]), (int(attrs.intensity_level[i]), int(attrs.area_level[i]),
                                      int(attrs.texture_level[i])), rng)
        for i in range(n)
    ]  # fmt: skip
    start = time.perf_counter()
    fid_images = gen.generate(fid_prompts, seed=3)  # type: ignore[attr-defined]
    results["generate_10k_seconds"] = time.perf_counter() - start

    def feats(arr: np.ndarray) -> np.ndarray:
        return emb.embed([Image.fromarray(a).convert("RGB") for a in arr])  # type: ignore[attr-defined]

    f_gen = emb.embed([im.convert("L").convert("RGB") for im in fid_images])  # type: ignore[attr-defined]
    # real images in their own 28-px frame, as version 2 renders (version 1's runs padded them
    # to its 32-px canvas here)
    f_test = feats(test_x[:n])
    f_train = feats(train_x[rng.permutation(len(train_x))[:n]])
    results["frechet_generated_vs_test"] = frechet_between(f_gen, f_test)
    results["frechet_train_vs_test"] = frechet_between(f_train, f_test)

    batch = [make_caption(7, (0, 0, 0), rng) for _ in range(64)]
    gen.generate(batch, seed=0)  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i in range(5):
        gen.generate(batch, seed=i)  # type: ignore[attr-defined]
    results["images_per_second_batch64"] = 5 * 64 / (time.perf_counter() - start)
    results["threads"] = torch.get_num_threads()

    table = Table(title="builtin:fashion-t2i")
    table.add_column("metric")
    table.add_column("value")
    for key, value in results.items():
        table.add_row(key, json.dumps(value, indent=None)[:120])
    console.print(table)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
