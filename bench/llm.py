"""Captions per second of the builtin LLM: free-form captions on transformers (the old path)
and on CTranslate2 int8, against slot-form captions (constrained decoding, `spti.slot_api`).

The same prompts to both, built by the demo's own caption API (`spti.text_api.LLMCaptionAPI`
with the demo's public categories and attributes): variation prompts of 128 public captions
and 64 random-API prompts, 20 new tokens, temperature 0.9, one seed. Reported per runtime:
model load seconds, captions per second, the share of replies that are a clean caption of the
prompt's category (what `LLMCaptionAPI` keeps without a retry), and whether a second call with
the same seed repeats the captions (the same call twice). Needs `pip install ctranslate2`. Run it
on an idle machine. The slot form is measured through its caption API end to end, as PE
calls it (64 random captions, which need no LLM, and 128 variations of slot-form parents, each
an LLM choice among a slot's public words), with the demo's slots; well-formed there means the
caption parses back into the slot form.


    uptime; .venv/bin/python bench/llm.py; uptime
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from penumbra.models.registry import load
from penumbra.spti.demo import DEMO_CONFIG
from penumbra.spti.text_api import LLMCaptionAPI, clean_caption, mentions

# The free-form demo's public attribute words (before the demo moved to slot-form captions).
FREE_ATTRIBUTES = ["black", "dark grey", "grey", "white", "light grey", "beige", "brown", "navy",
                   "red", "patterned"]  # fmt: skip


def _prompts(n_vary: int, n_random: int) -> tuple[list[str], list[list[list[str]]]]:
    prompts_cfg: dict[str, Any] = DEMO_CONFIG["prompts"]  # type: ignore[assignment]
    from penumbra.config import PromptsConfig

    free = {"categories": prompts_cfg["categories"], "attributes": FREE_ATTRIBUTES}
    cfg = PromptsConfig.model_validate(free)
    api = LLMCaptionAPI(
        None,  # type: ignore[arg-type]  # only builds prompts
        domain=str(DEMO_CONFIG["domain"]), random_template=cfg.random,
        variation_template=cfg.variation, examples=cfg.examples, max_words=cfg.max_words,
        categories=cfg.categories, attributes=cfg.attributes, steer=cfg.steer,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    captions = [
        f"a {cfg.attributes[int(rng.integers(len(cfg.attributes)))]} {c}"
        for c in (cfg.categories[int(i)] for i in rng.integers(len(cfg.categories), size=n_vary))
    ]
    vary = api.vary_prompts(captions)
    fresh = api.random_prompts(n_random, seed=1)
    both = vary + fresh
    assert both.required is not None
    return both.prompts, both.required


def _measure(generator: Any, prompts: list[str], required: list[list[list[str]]]) -> dict:
    start = time.perf_counter()
    replies = generator.generate(prompts, max_new_tokens=20, temperature=0.9, seed=0)
    seconds = time.perf_counter() - start
    clean = [clean_caption(r, 12) for r in replies]
    ok = [c is not None and all(mentions(c, g) for g in req)
          for c, req in zip(clean, required, strict=True)]  # fmt: skip
    first = generator.generate(prompts[:64], max_new_tokens=20, temperature=0.9, seed=5)
    again = generator.generate(prompts[:64], max_new_tokens=20, temperature=0.9, seed=5)
    return {
        "seconds": round(seconds, 2),
        "captions_per_s": round(len(prompts) / seconds, 2),
        "well_formed": round(float(np.mean(ok)), 3),
        "same_seed_repeats": again == first,
        "usable_per_s": round(len(prompts) * float(np.mean(ok)) / seconds, 2),
        "examples": [c for c in clean if c][:6],
    }


def _measure_slots(generator: Any, n_vary: int, n_random: int) -> dict:
    from penumbra.config import PromptsConfig
    from penumbra.spti.slot_api import SlotCaptionAPI, SlotForm, SlotFormError

    cfg = PromptsConfig.model_validate(DEMO_CONFIG["prompts"])
    assert cfg.slots is not None
    form = SlotForm(tuple((k, tuple(v)) for k, v in cfg.slots.items()), tuple(cfg.templates))
    api = SlotCaptionAPI(generator, form, domain=str(DEMO_CONFIG["domain"]),
                         categories=cfg.categories, prompt=cfg.slot_variation,
                         temperature=0.9)  # fmt: skip
    parents = api.random(n_vary, seed=0)
    start = time.perf_counter()
    captions = api.random(n_random, seed=1) + api.vary(parents, seed=2)
    seconds = time.perf_counter() - start

    def parses(caption: str) -> bool:
        try:
            form.parse(caption, cfg.categories)
        except SlotFormError:
            return False
        return True

    ok = float(np.mean([parses(c) for c in captions]))
    return {
        "seconds": round(seconds, 2),
        "captions_per_s": round(len(captions) / seconds, 2),
        "well_formed": round(ok, 3),
        "same_seed_repeats": api.vary(parents[:64], seed=5) == api.vary(parents[:64], seed=5),
        "usable_per_s": round(len(captions) * ok / seconds, 2),
        "examples": captions[n_random : n_random + 6],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vary", type=int, default=128)
    parser.add_argument("--random", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/results/llm.json"))
    args = parser.parse_args()
    prompts, required = _prompts(args.vary, args.random)
    results = {}
    runs = [("free form, transformers (old path)", "transformers", False),
            ("free form, ctranslate2 int8", "ctranslate2", False),
            ("slot form, transformers (constrained)", "transformers", True)]  # fmt: skip
    for label, runtime, slots in runs:
        if runtime == "ctranslate2" and importlib.util.find_spec("ctranslate2") is None:
            print(f"{label}: skipped (pip install ctranslate2)", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        model = load("builtin:smollm2-135m", role="text-generator", runtime=runtime)
        load_s = round(time.perf_counter() - t0, 1)
        measured = (_measure_slots(model, args.vary, args.random) if slots
                    else _measure(model, prompts, required))  # fmt: skip
        results[label] = {"load_s": load_s,
                          "fingerprint": model.fingerprint[-40:], **measured}  # fmt: skip
        del model
    base = results[runs[0][0]]
    for label, _, _ in runs[1:]:
        if label in results:
            new = results[label]
            new["speedup"] = round(new["captions_per_s"] / base["captions_per_s"], 2)
            new["usable_speedup"] = round(new["usable_per_s"] / base["usable_per_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
