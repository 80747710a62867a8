"""The builtin LLM on CTranslate2 (`runtime: ctranslate2`, optional extra `penumbra[ct2]`)."""

from __future__ import annotations

import pytest

from penumbra.models.ct2 import _shared_prefix


def test_shared_prefix_is_the_common_start_of_every_prompt() -> None:
    assert _shared_prefix([["a", "b", "c"], ["a", "b", "d"], ["a", "b"]]) == 2
    assert _shared_prefix([["x"], ["y"]]) == 0
    assert _shared_prefix([["a", "b"]]) == 2


def test_same_prompts_and_seed_give_the_same_captions() -> None:
    """CTranslate2 seeds a thread's sampler once (OpenNMT/CTranslate2#1757); each call opens
    its generator after seeding, so a call repeats exactly."""
    pytest.importorskip("ctranslate2")
    from penumbra.models import load

    llm = load("builtin:smollm2-135m", role="text-generator", runtime="ctranslate2")
    assert llm.fingerprint.endswith("+ctranslate2-int8")
    prompts = [f"Change one word in this description: a {c} coat" for c in ("red", "navy", "grey")]
    first = llm.generate(prompts, max_new_tokens=8, temperature=0.9, seed=3)  # type: ignore[union-attr]
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert llm.generate(prompts, max_new_tokens=8, temperature=0.9, seed=3) == first  # type: ignore[union-attr]
    others = [llm.generate(prompts, max_new_tokens=8, temperature=0.9, seed=s)  # type: ignore[union-attr]
              for s in (4, 5)]  # fmt: skip
    assert any(o != first for o in others)
