"""Constrained decoding on the shipped LLM: every reply is an option, and options are drawn
with the model's own (per-step renormalised) probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from penumbra.models import load
from penumbra.models.constrained import _trie, option_tokens
from penumbra.models.protocols import OptionChooser

OPTIONS = ["dark grey", "dark", "white", "red", "light grey"]  # "dark" prefixes "dark grey"
PROMPT = "Here is a description of a clothing item: a coat. Suggest a colour for it."
PREFIX = "Colour:"


@pytest.fixture(scope="module")
def smollm() -> Any:
    return load("builtin:smollm2-135m")


def _exact_probabilities(model: Any, text: str, options: list[str]) -> np.ndarray:
    """P(option) = ∏ softmax over the tokens the trie allows at each step (EOS where an option
    may end), from the model's logits: what sampling at temperature 1 should give."""
    lm, tok = model._model, model._tokenizer
    eos = tok.eos_token_id
    base = tok(text, return_tensors="pt")["input_ids"][0].tolist()
    probs = np.ones(len(options))
    paths = option_tokens(tok, options, text)
    # byte-level BPE: an option's tokens after the reply prefix are those of " option" alone
    assert paths == option_tokens(tok, options)
    root = _trie(paths)
    for index, path in enumerate(paths):
        node, prefix = root, []
        for token in [*path, eos]:
            allowed = list(node.children) + ([eos] if node.option is not None else [])
            if len(allowed) > 1:
                with torch.inference_mode():
                    logits = lm(torch.tensor([base + prefix])).logits[0, -1]
                p = torch.softmax(logits[allowed].double(), dim=0)
                probs[index] *= float(p[allowed.index(token)])
            if token == eos:
                break
            prefix.append(token)
            node = node.children[token]
    return probs


@pytest.mark.slow
def test_choices_follow_the_models_probabilities(smollm: Any) -> None:
    assert isinstance(smollm, OptionChooser)
    n = 160
    picks = smollm.choose(
        [PROMPT] * n, [OPTIONS] * n, reply_prefixes=[PREFIX] * n, temperature=1.0, seed=5
    )
    assert all(0 <= p < len(OPTIONS) for p in picks)
    expected = _exact_probabilities(smollm, smollm._format(PROMPT) + PREFIX, OPTIONS)
    assert expected.sum() == pytest.approx(1.0, abs=1e-6)
    counts = np.bincount(picks, minlength=len(OPTIONS))
    # Pool options expected fewer than 5 times (chi-square needs expected counts >= 5).
    order = np.argsort(-expected)
    exp_n, got = expected[order] * n, counts[order]
    keep = exp_n >= 5
    exp_pooled = np.append(exp_n[keep], exp_n[~keep].sum())
    got_pooled = np.append(got[keep], got[~keep].sum())
    if exp_pooled[-1] < 5:
        exp_pooled[-2] += exp_pooled[-1]
        got_pooled[-2] += got_pooled[-1]
        exp_pooled, got_pooled = exp_pooled[:-1], got_pooled[:-1]
    # False-failure rate 1e-3 if sampling is right; a sampler that ignored the model (uniform)
    # or the trie's renormalisation fails it.
    assert stats.chisquare(got_pooled, exp_pooled).pvalue > 1e-3
    uniform = np.full(len(OPTIONS), n / len(OPTIONS))
    assert stats.chisquare(counts, uniform).pvalue < 1e-3, "the model's preferences vanished"


@pytest.mark.slow
def test_choices_are_options_reproducible_and_greedy_at_zero(smollm: Any) -> None:
    prompts = [f"Pick a word for a {c}." for c in ("coat", "bag", "dress", "pair of sandals")]
    options = [OPTIONS, ["slim", "wide"], ["plain", "patterned", "striped"], OPTIONS[:2]]
    hot = smollm.choose(prompts, options, temperature=2.0, seed=1)
    assert hot == smollm.choose(prompts, options, temperature=2.0, seed=1)
    assert all(0 <= p < len(o) for p, o in zip(hot, options, strict=True))
    greedy = smollm.choose(prompts, options, temperature=0.0, seed=None)
    again = smollm.choose(prompts, options, temperature=0.0, seed=123)
    assert greedy == again
    # left padding: each prompt alone picks what it picks inside the batch of other lengths
    alone = [smollm.choose([p], [o], temperature=0.0, seed=None)[0]
             for p, o in zip(prompts, options, strict=True)]  # fmt: skip
    assert alone == greedy
    with pytest.raises(ValueError, match="2 texts but 1 option lists"):
        smollm.choose(prompts[:2], options[:1], temperature=1.0, seed=0)
