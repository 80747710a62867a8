"""Slot-form captions: the grammar round-trips, the random API covers the vocabulary, and a
variation (the shipped LLM choosing the word) changes exactly one slot of its parent."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from penumbra.models import load
from penumbra.spti.slot_api import Parsed, SlotCaptionAPI, SlotForm, SlotFormError
from penumbra.spti.text_api import CaptionStats

CATEGORIES = ["t-shirt", "shirt", "pair of trousers", "ankle boot", "pair of ankle boots", "bag"]
FORM = SlotForm(
    (
        ("tone", ("", "dark", "dark grey", "grey", "light", "white")),
        ("fit", ("", "slim", "wide")),
        ("pattern", ("plain", "patterned")),
    ),
    ("a photo of {item}", "{item}", "an image of {item} on black"),
)
PROMPT = "Here is a description of {domain}: {caption}. Suggest a different {slot} for it."


def _api(chooser: Any = None, stats: CaptionStats | None = None) -> SlotCaptionAPI:
    return SlotCaptionAPI(
        chooser, FORM, domain="a clothing item", categories=CATEGORIES, prompt=PROMPT,
        temperature=0.9, stats=stats,
    )  # fmt: skip


def test_every_caption_parses_back_to_its_slots() -> None:
    seen = set()
    for t in range(3):
        for tone in FORM.slots[0][1]:
            for fit in FORM.slots[1][1]:
                for category in CATEGORIES:
                    parsed = Parsed(t, (tone, fit, "patterned"), category)
                    caption = FORM.caption(parsed)
                    assert FORM.parse(caption, CATEGORIES) == parsed, caption
                    seen.add(caption)
    assert len(seen) == 3 * 6 * 3 * len(CATEGORIES)  # no two slot choices print alike
    assert FORM.caption(Parsed(1, ("", "", "plain"), "ankle boot")) == "a plain ankle boot"
    assert FORM.caption(Parsed(2, ("", "", "plain"), "ankle boot")).startswith("an image of a ")


@pytest.mark.parametrize(
    "caption",
    [
        "a photo of a red coat",  # not a category
        "a photo of a navy plain bag",  # not a tone
        "a plain dark bag",  # slots out of order
        "a photo of dark plain bag",  # no article
        "a dark bag",  # the pattern slot cannot be left out
        "Here is a dark plain bag",  # not a template
    ],
)
def test_a_caption_of_another_form_is_refused(caption: str) -> None:
    with pytest.raises(SlotFormError, match="not of this run's slot form"):
        FORM.parse(caption, CATEGORIES)


def test_a_bad_form_is_refused() -> None:
    with pytest.raises(ValueError, match="hold \\{item\\} once"):
        SlotForm((("tone", ("dark",)),), ("a photo",))
    with pytest.raises(ValueError, match="slot 'tone' needs at least one word"):
        SlotForm((("tone", ("",)),), ("{item}",))
    with pytest.raises(ValueError, match="need categories"):
        SlotCaptionAPI(None, FORM, domain="x", categories=[], prompt=PROMPT, temperature=1.0)  # type: ignore[arg-type]


def test_the_random_api_covers_categories_in_equal_shares_without_the_llm() -> None:
    api = _api(chooser=None)  # the random API never calls the LLM
    captions = api.random(60, seed=4)
    assert captions == api.random(60, seed=4)
    parsed = [FORM.parse(c, CATEGORIES) for c in captions]
    assert Counter(p.category for p in parsed) == {c: 10 for c in CATEGORIES}
    assert {p.words[0] for p in parsed} == set(FORM.slots[0][1])
    assert {p.template for p in parsed} == {0, 1, 2}


@pytest.mark.slow
def test_a_variation_changes_one_slot_and_keeps_the_category() -> None:
    stats = CaptionStats()
    api = _api(load("builtin:smollm2-135m"), stats)
    parents = api.random(48, seed=1)
    children = api.vary(parents, seed=2)
    assert children == api.vary(parents, seed=2)
    assert stats.prompts == 48 * 3 and stats.retried == 0 and stats.fell_back == 0
    changed = Counter()
    for parent, child in zip(parents, children, strict=True):
        p, c = FORM.parse(parent, CATEGORIES), FORM.parse(child, CATEGORIES)
        assert c.category == p.category
        diffs = [i for i in range(3) if p.words[i] != c.words[i]] + (
            ["template"] if p.template != c.template else []
        )
        assert len(diffs) == 1, (parent, child)
        changed[diffs[0]] += 1
    assert set(changed) == {0, 1, 2, "template"}  # every slot is varied


def test_slot_config_errors_are_one_line_before_anything_runs(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from penumbra.cli import main
    from penumbra.data import demo_private_set

    private = demo_private_set(6, seed=0).write(tmp_path / "images")
    args = ["synthesize", "--private", str(private), "--epsilon", "4"]
    slots = ["--set", "prompts.slots={tone: [dark, light]}"]
    assert main([*args, "--out", str(tmp_path / "a"), *slots]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prompts.slots needs prompts.categories" in err
    assert not (tmp_path / "a").exists()
    bad = ["--set", "prompts.templates=[a photo]"]
    assert main([*args, "--out", str(tmp_path / "b"), *slots, *bad]) == 2
    assert "prompts.templates" in capsys.readouterr().err


def test_a_generator_that_cannot_choose_is_refused_by_name() -> None:
    from penumbra.config import RunConfig
    from penumbra.errors import ConfigError
    from penumbra.spti.slot_api import check_slot_generator

    remote = load("openai:m@http://127.0.0.1:9/v1", role="text-generator", max_retries=0)
    cfg = RunConfig.model_validate(
        {"prompts": {"slots": {"tone": ["dark"]}, "categories": ["coat"]},
         "models": {"text_generator": "openai:m@http://127.0.0.1:9/v1"}}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="openai:m@.* cannot choose among options"):
        check_slot_generator(cfg, remote)
    cfg.prompts.slots = None
    assert check_slot_generator(cfg, remote) is None


def test_a_word_left_out_of_one_slot_parses_into_the_next() -> None:
    """Backtracking: with an optional first slot, a word may belong to a later slot."""
    form = SlotForm((("shade", ("", "deep")), ("tone", ("deep-toned", "dark"))), ("{item}",))
    for words in (("", "dark"), ("deep", "dark"), ("", "deep-toned"), ("deep", "deep-toned")):
        parsed = Parsed(0, words, "coat")
        assert form.parse(form.caption(parsed), ["coat"]) == parsed


@pytest.mark.parametrize(
    ("slots", "categories", "message"),
    [
        ((("shade", ("", "light")), ("tone", ("light", "dark"))), ["coat"], "in slots 'shade'"),
        ((("style", ("", "rain", "wool")),), ["coat", "rain coat"], "category 'rain coat'"),
        ((("fit", ("slim",)),), ["coat"], "nothing to vary"),
    ],
)
def test_an_ambiguous_or_frozen_grammar_is_refused(
    slots: Any, categories: list[str], message: str
) -> None:
    form = SlotForm(slots, ("{item}",))
    assert message in (form.problem(categories) or "")
    with pytest.raises(ValueError, match=message):
        SlotCaptionAPI(None, form, domain="x", categories=categories, prompt=PROMPT,  # type: ignore[arg-type]
                       temperature=1.0)  # fmt: skip


def test_a_one_word_slot_is_never_varied_out_of_the_grammar() -> None:
    """fit has one word and no '': variations change the template only (no LLM call)."""
    form = SlotForm((("fit", ("slim",)),), ("{item}", "a photo of {item}"))
    api = SlotCaptionAPI(None, form, domain="x", categories=["coat", "bag"], prompt=PROMPT,  # type: ignore[arg-type]
                         temperature=1.0)  # fmt: skip
    parents = api.random(20, seed=0)
    children = api.vary(parents, seed=1)
    for parent, child in zip(parents, children, strict=True):
        p, c = form.parse(parent, ["coat", "bag"]), form.parse(child, ["coat", "bag"])
        assert c.words == ("slim",) and c.category == p.category and c.template != p.template


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prompts.slots={}", "name at least one slot"),
        ("prompts.slots={tone: [' dark', light]}", "extra spaces"),
        ("prompts.slots={tone: [' ', dark]}", "extra spaces"),
        ("prompts.templates=['{item}', '{item}']", "listed twice"),
        ("prompts.templates=['{item} in {colour}']", "only {item} may be in braces"),
        ("prompts.slot_variation=Pick a {word}", "only {domain}, {caption}, {slot} may"),
    ],
)
def test_bad_slot_settings_are_one_line_errors(override: str, message: str) -> None:
    from penumbra.config import load_config
    from penumbra.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides=[override])


def test_shared_words_and_a_remote_llm_are_refused_before_the_run(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from penumbra.cli import main
    from penumbra.data import demo_private_set

    private = demo_private_set(6, seed=0).write(tmp_path / "images")
    args = ["synthesize", "--private", str(private), "--epsilon", "4", "--set",
            "prompts.categories=[coat, rain coat]"]  # fmt: skip
    shared = ["--set", "prompts.slots={style: ['', rain, wool]}"]
    assert main([*args, "--out", str(tmp_path / "a"), *shared]) == 2
    assert "the word 'rain' is in slot 'style' and category 'rain coat'" in capsys.readouterr().err
    remote = ["--set", "prompts.slots={tone: [dark, light]}",
              "--set", "models.text_generator=openai:m@http://127.0.0.1:9/v1"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "b"), *remote]) == 2
    assert "cannot choose among options" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
