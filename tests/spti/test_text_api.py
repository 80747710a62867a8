"""The caption APIs keep the population on the public domain: categories in equal shares,
complete captions within max_words, off-domain and cut-off replies retried (issue 14)."""

from __future__ import annotations

import re
from collections import Counter

from penumbra.spti.text_api import LLMCaptionAPI, clean_caption, head_word, mentions

CATEGORIES = ["t-shirt", "trousers", "dress", "ankle boots", "bag"]


class ScriptedLLM:
    """A TextGenerator whose replies are a function of the prompt (what the tests control)."""

    fingerprint = "scripted"

    def __init__(self, reply) -> None:  # type: ignore[no-untyped-def]
        self.reply = reply
        self.prompts: list[str] = []

    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float,
                 seed: int) -> list[str]:  # fmt: skip
        self.prompts += prompts
        return [self.reply(p, seed) for p in prompts]


def _api(llm: ScriptedLLM, **extra: object) -> LLMCaptionAPI:
    return LLMCaptionAPI(
        llm,  # type: ignore[arg-type]
        domain="a photo of a clothing item",
        random_template="Examples: {examples}. Write one about {domain}.",
        variation_template="Vary: {caption}",
        examples=["a red dress", "a black bag", "white sneakers"],
        max_words=8,
        retries=2,
        **extra,  # type: ignore[arg-type]
    )


def test_clean_caption_keeps_complete_short_captions_only() -> None:
    assert clean_caption("Sure! Here is one: a dark wool coat.", 8) == "a dark wool coat"
    assert clean_caption("a pair of black leather boots with a", 12) is None  # cut off
    assert clean_caption("one two three four five six seven eight nine", 8) is None  # too long
    assert clean_caption("a grey knit sweater. And more text after it", 8) == "a grey knit sweater"


def test_head_words_match_singular_and_plural() -> None:
    assert [head_word(c) for c in CATEGORIES] == ["t-shirt", "trouser", "dress", "boot", "bag"]
    assert mentions("Black Ankle Boots.", ["boot"]) and mentions("a silk dress", ["dress"])
    assert not mentions("a scooter in the city", ["boot", "dress"])


def test_random_covers_every_category_in_equal_shares() -> None:
    def reply(prompt: str, seed: int) -> str:
        subject = re.search(r"It must describe (.*)\.", prompt)
        assert subject is not None
        return f"a soft {subject.group(1)} for {seed % 97}"[:60] + " outfit"

    llm = ScriptedLLM(reply)
    api = _api(
        llm,
        categories=CATEGORIES,
        attributes=["dark", "light"],
        steer="It must describe {subject}.",
    )
    captions = api.random(20, seed=5)
    assert len(captions) == 20
    named = Counter(
        next(c for c in CATEGORIES if head_word(c) in caption.lower()) for caption in captions
    )
    assert named == {c: 4 for c in CATEGORIES}
    assert all(("dark " in p or "light " in p) for p in llm.prompts)


def test_random_gives_every_category_every_attribute() -> None:
    def reply(prompt: str, seed: int) -> str:
        subject = re.search(r"It must describe (.*)\.", prompt)
        assert subject is not None
        return f"a {subject.group(1)} number {seed % 997}"

    llm = ScriptedLLM(reply)
    tones = ["dark", "light", "grey"]
    api = _api(llm, categories=CATEGORIES, attributes=tones, steer="It must describe {subject}.")
    api.random(30, seed=11)
    subjects = [re.search(r"It must describe (.*)\.", p).group(1) for p in llm.prompts[:30]]
    # 6 prompts per category, 3 tones: each (category, tone) pair exactly twice
    pairs = Counter((s.split(" ", 1)[1], s.split(" ", 1)[0]) for s in subjects)
    assert pairs == {(c, t): 2 for c in CATEGORIES for t in tones}


def test_off_domain_replies_are_retried_then_fall_back() -> None:
    def reply(prompt: str, seed: int) -> str:
        if "dress" in prompt and seed % 2 == 0:
            return "Scooter made it up the old classic road."  # off-domain
        if "dress" in prompt:
            return "a long blue evening dress"
        return "In 1980s style fashion is fashion"  # names no category: always off-domain

    api = _api(ScriptedLLM(reply), categories=["dress", "bag"], steer="It must describe {subject}.")
    captions = api.random(4, seed=0)
    # the first dress prompt gets the on-domain reply; the second gets it too, but as a
    # duplicate it is retried, meets only off-domain replies and falls back to its subject;
    # the bag prompts never get an on-domain reply
    assert sorted(captions) == ["a long blue evening dress", "bag", "bag", "dress"]


def test_variation_that_leaves_the_domain_keeps_its_parent() -> None:
    def reply(prompt: str, seed: int) -> str:
        return "a red car on the road" if "boots" in prompt else "a green silk dress"

    api = _api(ScriptedLLM(reply), categories=CATEGORIES)
    assert api.vary(["black ankle boots", "a red dress"], seed=1) == [
        "black ankle boots",
        "a green silk dress",
    ]


def test_variation_keeps_the_attributes_its_parent_names() -> None:
    """With keep_attributes, a variation that drops its parent's tone is retried, then falls
    back to the parent; one that keeps it (and any unnamed attribute changes) is taken."""

    def reply(prompt: str, seed: int) -> str:
        if "dark grey" in prompt:
            return "a stylish pullover"  # drops "dark" and "grey"
        if "black" in prompt:
            return "a black leather bag with a strap"
        return "a white dress"  # the parent named no attribute: anything on-domain goes

    api = _api(ScriptedLLM(reply), categories=[*CATEGORIES, "pullover"],
               attributes=["black", "dark grey", "white"], keep_attributes=True)  # fmt: skip
    parents = ["a dark grey pullover", "a black bag", "a long dress"]
    assert api.vary(parents, seed=3) == [
        "a dark grey pullover",
        "a black leather bag with a strap",
        "a white dress",
    ]
    drifting = _api(ScriptedLLM(reply), categories=[*CATEGORIES, "pullover"],
                    attributes=["black", "dark grey", "white"])  # fmt: skip
    assert drifting.vary(parents[:1], seed=3) == ["a stylish pullover"]  # off by default


def test_without_categories_nothing_is_steered_or_filtered() -> None:
    llm = ScriptedLLM(lambda p, s: "a red car parked outside")
    api = _api(llm)
    assert api.random(3, seed=0) == ["a red car parked outside"] * 3
    assert not any("must describe" in p for p in llm.prompts)


def test_variation_keeps_its_parents_category() -> None:
    def reply(prompt: str, seed: int) -> str:
        return "a small black leather bag" if "boots" in prompt else "a plain grey t-shirt"

    api = _api(ScriptedLLM(reply), categories=CATEGORIES)
    # boots → bag would move a vote-winning candidate to another category: kept as the parent
    assert api.vary(["black ankle boots", "a red t-shirt"], seed=1) == [
        "black ankle boots",
        "a plain grey t-shirt",
    ]


def test_retries_and_fallbacks_are_counted() -> None:
    """Issue 25 item 3: the share of captions that needed a retry is reported."""

    def reply(prompt: str, seed: int) -> str:
        return "a red car on the road" if "boots" in prompt else "a green silk dress"

    api = _api(ScriptedLLM(reply), categories=CATEGORIES)
    api.vary(["black ankle boots", "a red dress", "a blue dress"], seed=1)
    # the boots prompt is retried twice and falls back; the second dress reply is a
    # duplicate of the first, retried, and accepted on the last attempt
    assert api.stats.as_dict() == {"prompts": 3, "retried": 2, "fell_back": 1,
                                   "retried_share": 0.6667, "fell_back_share": 0.3333}  # fmt: skip
