"""Quality and speed of builtin:fashion-t2i (needs Debian's dataset-fashion-mnist).

    .venv/bin/python bench/fashion_t2i.py [--n-fid 10000] [--json out.json]

1. Class following: a softmax-regression classifier trained on real train pixels labels images
   generated from held-out caption phrasings (templates and synonyms never seen in training).
2. Attribute following: "dark …" vs "light …" prompts, mean garment intensity per class.
3. Fréchet distance in builtin:effnet-lite0 feature space: generated (captions drawn like the
   training captions, from the test split's attributes) vs the real test split, beside real
   train vs real test.
4. Speed: images/s at 32×32, batches of 64, default steps, on this machine.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

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
    """Generated 32×32 RGB → the 28×28 grayscale frame the real data lives in."""
    arr = np.stack([np.asarray(im.convert("L").resize((32, 32))) for im in images])
    return arr[:, 2:30, 2:30]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-fid", type=int, default=10000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    console = Console()
    results: dict[str, object] = {}
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    gen = load("builtin:fashion-t2i")
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
    f_test = feats(np.pad(test_x[:n], ((0, 0), (2, 2), (2, 2))))
    f_train = feats(np.pad(train_x[rng.permutation(len(train_x))[:n]], ((0, 0), (2, 2), (2, 2))))
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
