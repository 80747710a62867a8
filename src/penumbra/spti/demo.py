"""`penumbra demo`: the whole method offline, on the shipped demo set and builtin models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console

from penumbra.config import RunConfig
from penumbra.data.demo import DemoPrivateSet, demo_holdout_set, demo_private_set
from penumbra.data.imagefolder import read_imagefolder_metadata, write_imagefolder
from penumbra.spti.pipeline import Run, synthesize
from penumbra.spti.render import CaptionRenderer

DEMO_CONFIG = {
    "domain": "a photo of a clothing item",
    "voting": "image",
    "seed": 0,
    # population: the pre-flight's N/2σ (257 at ε = 1: each candidate expects 2σ votes),
    # capped at 300 so that a large ε stays within the demo's ~10 minutes on 2 cores. Parents
    # are drawn in proportion to the votes, as in the PE paper, so the population gathers
    # where the private data is dense.
    "pe": {"iterations": 5, "population": "auto", "max_population": 300, "k": 1,
           "selection": "proportional", "metric": "l2"},
    # votes in builtin:fashion-cnn's space (trained on public data: a real garment and a
    # render of its class meet) plus an 8×8 grid of grey levels at weight 4 (how light it
    # is); chosen with bench/vote_purity.py (bench/RESULTS.md, "Vote purity with
    # builtin:fashion-cnn"): EfficientNet-Lite0's ImageNet features sent one vote in five to
    # another class
    "models": {"image_embedder": "builtin:composite", "options": {"builtin:composite": {
        "parts": [{"uri": "builtin:fashion-cnn", "weight": 1.0},
                  {"uri": "builtin:pixels", "weight": 4.0, "options": {"grid": 8},
                   "normalise": False}]}}},
    # Slot-form captions (spti.slot_api), public words only (the Fashion-MNIST class names,
    # common tone, fit and pattern words, catalogue phrasings; invariant 4): the random API
    # covers them uniformly, a variation changes one slot and the LLM picks its word among
    # the options, so no caption is malformed and a variation costs a few tokens (free-form
    # captions: bench/RESULTS.md, "LLM").
    "prompts": {
        "categories": ["t-shirt", "pair of trousers", "pullover", "dress", "coat",
                       "pair of sandals", "shirt", "pair of sneakers", "bag",
                       "pair of ankle boots"],
        "slots": {"style": ["", "classic", "casual", "modern", "stylish"],
                  "tone": ["", "dark", "light", "black", "white", "grey"],
                  "fit": ["", "slim", "wide"],
                  "pattern": ["", "plain", "patterned"]},
        "templates": ["a photo of {item}", "{item}", "a picture of {item}",
                      "product photo of {item}", "an image of {item}",
                      "{item} on a black background"],
    },
    # final: a final population, as in PE: each output a fresh variation of a parent drawn
    # in proportion to the last release (1000 distinct-ish captions, no privacy cost)
    "output": {"num_images": 1000, "image_size": 28, "selection": "proportional",
               "final": "variations"},
}  # fmt: skip


# The demo's public class list: the Fashion-MNIST classes in the words captions use (a
# labelled run writes each class's candidates about its own words).
CLASS_WORDS: list[str] = list(DEMO_CONFIG["prompts"]["categories"])  # type: ignore[index]


def labelled_demo_config(epsilon: float) -> RunConfig:
    """The demo as a labelled run: one PE per class, outputs per class from DP class counts.
    Per-class populations are N_c/2σ from the noisy counts (about 26 per class at ε = 1, so
    each candidate expects 2σ votes), capped at 30; each class's captions are slot-form
    captions of its own class word. The classes' LLM calls share one batch per iteration
    (`pe.lockstep`)."""
    data = json.loads(json.dumps(DEMO_CONFIG))
    data["prompts"].pop("categories")
    data["pe"]["max_population"] = 30
    data["data"] = {"labels": "metadata", "classes": CLASS_WORDS}
    data["privacy"] = {"epsilon": epsilon}
    return RunConfig.model_validate(data)


def demo_config(epsilon: float) -> RunConfig:
    data = json.loads(json.dumps(DEMO_CONFIG))
    data["privacy"] = {"epsilon": epsilon}
    return RunConfig.model_validate(data)


# 4000 of the 5000 pool images are the "private" set; the other 1000 are the held-out
# non-members that the privacy audit compares against.
DEMO_PRIVATE = 4000
# Both sets sit inside the run's private/ (mode 0700), which is never published: a run folder
# holds no private image outside it (verify checks every other file against the ledger).
DEMO_SET = Path("private") / "demo_private"
HOLDOUT_SET = Path("private") / "demo_holdout"


def materialise_private(folder: Path, demo: DemoPrivateSet | None = None) -> None:
    """The demo set as an imagefolder with its labels (public demo data: fine to copy)."""
    if (folder / "metadata.jsonl").exists():
        return
    demo = demo if demo is not None else demo_private_set(DEMO_PRIVATE)
    items = [
        (image, {"label": int(label), "class_name": CLASS_WORDS[int(label)]})
        for image, label in zip(demo.images, demo.labels, strict=True)
    ]
    write_imagefolder(folder, items, overwrite=True)


def demo_renderer(out: Path) -> CaptionRenderer:
    """The voting renderer of a demo run (its renders are cached in the run folder, under
    the run's own seed)."""
    import yaml

    from penumbra.models import load

    seed = int(DEMO_CONFIG["seed"])  # type: ignore[call-overload]
    if (out / "run.yaml").is_file():
        seed = int(yaml.safe_load((out / "run.yaml").read_text(encoding="utf-8"))["seed"])

    generator = load("builtin:fashion-t2i", role="image-generator")
    embedder = load("builtin:effnet-lite0", role="image-embedder")
    return CaptionRenderer(
        generator,  # type: ignore[arg-type]
        embedder,  # type: ignore[arg-type]
        out,
        seed=seed,
        settings=json.dumps({}, sort_keys=True),
    )


def class_mix_report(out: Path, private_labels: np.ndarray | None = None) -> dict[str, float]:
    """TV distance to the private class mix: the first random population, each iteration's
    population weighted by its noisy thresholded votes (what a final draw at that iteration
    would give), and the synthetic images. Uses the demo set's labels (or `private_labels`)
    and a shipped classifier: evaluation only, not DP."""
    from penumbra.evaluate.fashion_classifier import class_mix, predict, total_variation
    from penumbra.pe.mechanism import apply_threshold
    from penumbra.pe.store import read_json, read_population

    if private_labels is None:
        rows = read_imagefolder_metadata(out / DEMO_SET)
        private_labels = np.array([row["label"] for row in rows])
    target = class_mix(private_labels)
    synthetic = read_imagefolder_metadata(out / "synthetic")
    synth_labels = predict([Image.open(out / "synthetic" / m["file_name"]) for m in synthetic])
    renderer = demo_renderer(out)
    report: dict[str, float] = {}
    releases = sorted((out / "candidates").glob("release-*.json"))
    for t, path in enumerate(releases):
        payloads = read_population(out / "candidates" / f"population-{t:03d}.parquet")["payload"]
        labels = predict([Image.open(p) for p in renderer.render(list(payloads))])
        if t == 0:
            report["first random population"] = total_variation(class_mix(labels), target)
        release = read_json(path)
        weights = apply_threshold(np.array(release["noisy"]), release["threshold"])
        mix = np.bincount(labels, weights=weights, minlength=10)
        if mix.sum() > 0:
            report[f"iteration {t + 1}: population by votes"] = total_variation(
                mix / mix.sum(), target
            )
    report["synthetic images"] = total_variation(class_mix(synth_labels), target)
    report["uniform mix"] = total_variation(np.full(10, 0.1), target)
    return report


def dark_share_report(out: Path) -> dict[str, Any]:
    """Share of dark items within each class: private, synthetic, and the held-out real images
    (non-members from the private set's own distribution: what a perfect generator's sample of
    that size would show, sampling noise included), and the dark/mid/light mix distance. One
    ruler for all (`penumbra.evaluate.fashion_tones`); classes of synthetic images come from the
    shipped classifier. Evaluation only, not DP."""
    from penumbra.evaluate.fashion_classifier import class_mix, predict
    from penumbra.evaluate.fashion_tones import tone_levels, tone_mix_by_class, tone_mix_distance

    def mixes(folder: Path, classify: bool) -> tuple[list[list[float] | None], np.ndarray]:
        meta = read_imagefolder_metadata(folder)
        images: list[Image.Image] = [Image.open(folder / m["file_name"]) for m in meta]
        labels = predict(images) if classify else np.array([m["label"] for m in meta])
        return tone_mix_by_class(tone_levels(images, labels), labels), labels

    def dark(mix: list[list[float] | None]) -> list[float | None]:
        return [None if m is None else m[0] for m in mix]

    def max_gap(a: list[float | None], b: list[float | None]) -> float | None:
        gaps = [abs(x - y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        return max(gaps) if gaps else None

    private, private_labels = mixes(out / DEMO_SET, classify=False)
    synthetic, _ = mixes(out / "synthetic", classify=True)
    held_out, _ = mixes(out / HOLDOUT_SET, classify=False)
    weights = class_mix(private_labels)
    return {
        "private": dark(private),
        "synthetic": dark(synthetic),
        "held_out": dark(held_out),
        "max_gap": max_gap(dark(private), dark(synthetic)),
        "max_gap_held_out": max_gap(dark(private), dark(held_out)),
        "tone_mix_tv": tone_mix_distance(private, synthetic, weights),
        "tone_mix_tv_held_out": tone_mix_distance(private, held_out, weights),
    }


TSTR_PICTURE = Path("evaluation") / "tstr_confusion.png"


def _demo_run(
    out: Path, config: RunConfig, console: Console | None, overrides: Sequence[str]
) -> Run:
    """The demo sets materialised, then the run (resumed, with its own config, if started)."""
    resume = (out / "run.yaml").exists()
    from penumbra.spti.private_embeddings import private_folder

    private_folder(out)
    materialise_private(out / DEMO_SET)
    materialise_private(out / HOLDOUT_SET, demo_holdout_set(DEMO_PRIVATE))
    run = synthesize(
        out / DEMO_SET, None if resume else config.privacy.epsilon, out=out,
        config=None if resume else config, resume=resume, console=console,
        overrides=overrides,
    )  # fmt: skip
    assert isinstance(run, Run)
    return run


def run_labelled_demo(
    out: Path, *, epsilon: float, console: Console | None, overrides: Sequence[str] = ()
) -> tuple[Run, dict[str, Any]]:
    """The demo set with its labels as a labelled run, then train-on-synthetic / test-on-real
    against the held-out images, beside the same classifier trained on as many real private
    images (evaluation: uses private labels, not DP)."""
    out = Path(out)
    run = _demo_run(out, labelled_demo_config(epsilon), console, overrides)
    from penumbra.evaluate.run_eval import evaluate_run
    from penumbra.evaluate.tstr import confusion_picture, tstr

    result = tstr(out / "synthetic", out / HOLDOUT_SET, real_train=out / DEMO_SET)
    confusion_picture(result, out / TSTR_PICTURE)
    evaluation = evaluate_run(
        out, holdout=out / HOLDOUT_SET, classifier="builtin:fashion-classifier",
        extra={"tstr": result, "public_artifacts": {"tstr_confusion": TSTR_PICTURE.as_posix()}},
    )  # fmt: skip
    _report(out)
    return run, evaluation


def run_demo(
    out: Path, *, epsilon: float, console: Console | None, overrides: Sequence[str] = ()
) -> tuple[Run, dict[str, float], dict[str, Any]]:
    """The demo run; `overrides` may say where to compute (`compute.*`, e.g. from --ray)."""
    out = Path(out)
    run = _demo_run(out, demo_config(epsilon), console, overrides)
    from penumbra.evaluate.run_eval import evaluate_run

    mix = class_mix_report(out)
    # aggregates (labelled not DP) in evaluation.json, the rest in private/evaluation.json
    evaluation = evaluate_run(
        out, holdout=out / HOLDOUT_SET, classifier="builtin:fashion-classifier",
        extra={"class_mix_total_variation_to_private": mix,
               "dark_share_within_class": dark_share_report(out)},
    )  # fmt: skip
    _report(out)
    return run, mix, evaluation


def _report(out: Path) -> None:
    """The report with the evaluation, both logged in the run's published tree."""
    from penumbra.ledger.tree import record_published
    from penumbra.report.html import write_report

    write_report(out, renderer=demo_renderer(out))  # may render a top candidate anew
    record_published(
        out, "evaluation", written=("report.html", "evaluation.json", "evaluation/", "renders/")
    )
