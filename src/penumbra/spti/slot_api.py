"""PE's random and variation APIs over slot-form captions: a public template holding an
article, one public word per slot (a tone, a fit, a pattern...) and a public category, e.g.
"a photo of a dark slim coat".

Why not free text: the builtin 135M LLM writes a free caption in ~0.5 s and most first replies
are broken or off the domain ("SmolLAM: Navy boots", "The image above uses...") and need a
retry (bench/RESULTS.md). Here a variation changes ONE slot of its parent, and the LLM only
picks the new word among the slot's public options (`models.constrained`: its own distribution
restricted to the options), so every caption is well-formed by construction, a reply costs a
few tokens, and the category never drifts. The random API needs no LLM at all: categories in
equal shares and every slot's options uniformly, so the first population covers the vocabulary
instead of what the LLM writes most readily. Everything here is public text (invariant 4):
the config's words, and parents that are themselves outputs of this API chosen through DP
releases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from penumbra.config import RunConfig
from penumbra.errors import ConfigError, PenumbraError
from penumbra.models.protocols import OptionChooser
from penumbra.spti.text_api import CaptionStats


class SlotFormError(PenumbraError):
    """A caption that is not of the run's slot form (another config's population?)."""


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


@dataclass(frozen=True)
class Parsed:
    template: int
    words: tuple[str, ...]  # one per slot; "" where the slot is left out
    category: str


@dataclass(frozen=True)
class SlotForm:
    """The caption grammar: `templates` (each holds {item}), `slots` in caption order (name,
    options; "" lets a caption leave the slot out) and the categories, which end the item."""

    slots: tuple[tuple[str, tuple[str, ...]], ...]
    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.templates or any(t.count("{item}") != 1 for t in self.templates):
            raise ValueError("every caption template must hold {item} once")
        for name, options in self.slots:
            if not [o for o in options if o.strip()]:
                raise ValueError(f"slot {name!r} needs at least one word")

    def problem(self, categories: Sequence[str]) -> str | None:
        """Why this grammar could print one caption for two slot choices (then a caption would
        not parse back to what was written), or leaves nothing to vary; None if it is sound."""
        owner: dict[str, str] = {}
        for name, options in self.slots:
            for word in (w for option in options for w in option.split()):
                if owner.get(word, name) != name:
                    return f"the word {word!r} is in slots {owner[word]!r} and {name!r}"
                owner[word] = name
        for category in categories:
            for word in category.split():
                if word in owner:
                    return f"the word {word!r} is in slot {owner[word]!r} and category {category!r}"
        if not self.changeable():
            return "no slot has two options and there is one template: nothing to vary"
        return None

    def changeable(self) -> list[int]:
        """The slots a variation may change (two options or more), then the template (as
        len(slots)) when there are two templates or more."""
        out = [i for i, (_, options) in enumerate(self.slots) if len(options) > 1]
        return out + ([len(self.slots)] if len(set(self.templates)) > 1 else [])

    def caption(self, parsed: Parsed) -> str:
        phrase = " ".join([w for w in parsed.words if w] + [parsed.category])
        return self.templates[parsed.template].format(item=f"{_article(phrase)} {phrase}")

    def parse(self, caption: str, categories: Sequence[str]) -> Parsed:
        """The template, words and category of a caption this form wrote; SlotFormError if
        it wrote no such caption."""
        for t in sorted(range(len(self.templates)), key=lambda i: -len(self.templates[i])):
            before, after = self.templates[t].split("{item}")
            match = re.fullmatch(re.escape(before) + r"an? (.+)" + re.escape(after), caption)
            if match is None:
                continue
            parsed = self._parse_item(match.group(1), categories, t)
            if parsed is not None and self.caption(parsed) == caption:
                return parsed
        raise SlotFormError(
            f"caption {caption!r} is not of this run's slot form (prompts.slots/templates and "
            "categories): a population written under another config cannot be varied here"
        )

    def _parse_item(self, item: str, categories: Sequence[str], template: int) -> Parsed | None:
        for category in sorted(categories, key=len, reverse=True):
            if item != category and not item.endswith(" " + category):
                continue
            words = self._parse_words(item[: len(item) - len(category)].strip(), 0)
            if words is not None:
                return Parsed(template, words, category)
        return None

    def _parse_words(self, rest: str, slot: int) -> tuple[str, ...] | None:
        """The slot words that print `rest` from slot `slot` on (backtracking: a word may
        belong to this slot or, if this one is left out, to a later one)."""
        if slot == len(self.slots):
            return () if not rest else None
        for option in sorted(self.slots[slot][1], key=len, reverse=True):
            if option and rest != option and not rest.startswith(option + " "):
                continue
            tail = self._parse_words(rest[len(option) :].strip(), slot + 1)
            if tail is not None:
                return (option, *tail)
        return None


@dataclass
class SlotRequests:
    """Captions asked of the APIs, in order: finished ones (random) and parents to vary. Several
    classes' requests add up into one batch (`spti.labelled.generate_together`)."""

    done: list[str | None] = field(default_factory=list)
    parents: list[Parsed | None] = field(default_factory=list)

    def __add__(self, other: SlotRequests) -> SlotRequests:
        return SlotRequests(self.done + other.done, self.parents + other.parents)

    @property
    def prompts(self) -> list[str | None]:
        return self.done  # its length is the number of captions asked (generate_together)


class SlotCaptionAPI:
    """PE's random API (uniform over the vocabulary) and variation API (one slot changed, the
    new word picked by the LLM among the slot's options)."""

    def __init__(
        self,
        chooser: OptionChooser,
        form: SlotForm,
        *,
        domain: str,
        categories: list[str],
        prompt: str,
        temperature: float,
        stats: CaptionStats | None = None,
    ) -> None:
        if not categories:
            raise ValueError("slot-form captions need categories (prompts.categories)")
        problem = form.problem(categories)
        if problem is not None:
            raise ValueError(f"prompts.slots: {problem}")
        self.chooser = chooser
        self.form = form
        self.domain = domain
        self.categories = list(categories)
        self.prompt = prompt
        self.temperature = temperature
        self.stats = stats if stats is not None else CaptionStats()

    def random(self, count: int, *, seed: int) -> list[str]:
        return self.complete(self.random_prompts(count, seed=seed), seed)

    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        return self.complete(self.vary_prompts(payloads), seed)

    def random_prompts(self, count: int, *, seed: int) -> SlotRequests:
        rng = np.random.default_rng(seed)
        order = [self.categories[int(i)] for i in rng.permutation(len(self.categories))]
        picked = [order[i % len(order)] for i in range(count)]
        rng.shuffle(picked)
        done: list[str | None] = []
        for category in picked:
            template = int(rng.integers(len(self.form.templates)))
            words = tuple(
                options[int(rng.integers(len(options)))] for _, options in self.form.slots
            )
            done.append(self.form.caption(Parsed(template, words, category)))
        return SlotRequests(done, [None] * count)

    def vary_prompts(self, payloads: list[str]) -> SlotRequests:
        parents: list[Parsed | None] = [self.form.parse(p, self.categories) for p in payloads]
        return SlotRequests([None] * len(payloads), parents)

    def complete(self, requests: SlotRequests, seed: int) -> list[str]:
        """Every finished caption as is; every parent with one slot (or its template) changed.
        Which slot, and whether an optional slot is dropped, is public randomness from `seed`;
        the new word is the LLM's choice among the slot's other options, in one batch."""
        rng = np.random.default_rng(seed)
        out: list[str | None] = list(requests.done)
        asks: list[tuple[int, Parsed, int, list[str]]] = []  # (row, parent, slot, options)
        changeable = self.form.changeable()
        for row, parent in enumerate(requests.parents):
            if parent is None:
                continue
            which = changeable[int(rng.integers(len(changeable)))]
            if which == len(self.form.slots):  # another template, same item
                current = self.form.templates[parent.template]
                others = [t for t, text in enumerate(self.form.templates) if text != current]
                changed = Parsed(
                    others[int(rng.integers(len(others)))], parent.words, parent.category
                )
                out[row] = self.form.caption(changed)
                continue
            options = [o for o in self.form.slots[which][1] if o != parent.words[which]]
            words = [o for o in options if o]
            if not words or ("" in options and rng.random() < 1 / len(options)):  # '' allowed
                out[row] = self.form.caption(_with_word(parent, which, ""))
            else:
                asks.append((row, parent, which, words))
        if asks:
            prompts = [
                self.prompt.format(
                    domain=self.domain, caption=self.form.caption(p), slot=self.form.slots[s][0]
                )
                for _, p, s, _ in asks
            ]
            prefixes = [f"New {self.form.slots[s][0]}:" for _, _, s, _ in asks]
            picks = self.chooser.choose(
                prompts,
                [words for *_, words in asks],
                reply_prefixes=prefixes,
                temperature=self.temperature,
                seed=seed,
            )
            for (row, parent, slot, words), pick in zip(asks, picks, strict=True):
                out[row] = self.form.caption(_with_word(parent, slot, words[pick]))
        self.stats.prompts += len(out)
        captions = [c for c in out if c is not None]
        if len(captions) != len(out):
            raise RuntimeError("a slot request got no caption")
        return captions


def _with_word(parent: Parsed, slot: int, word: str) -> Parsed:
    words = list(parent.words)
    words[slot] = word
    return Parsed(parent.template, tuple(words), parent.category)


def check_slot_config(cfg: RunConfig) -> None:
    """Before anything is read: slot-form captions need their categories (a labelled run's
    class words are its categories)."""
    if cfg.prompts.slots is None:
        return
    if not cfg.prompts.categories and cfg.data.labels is None:
        raise ConfigError(
            "prompts.slots needs prompts.categories (the public category words that end each "
            "caption), or a labelled run (--labels)"
        )
    if cfg.modality != "image":
        raise ConfigError("prompts.slots: slot-form captions are for image runs; remove it")
    form = form_of(cfg)
    words = cfg.prompts.class_words or {}
    categories = (
        [words.get(c, c) for c in cfg.data.classes]
        if cfg.data.labels is not None and cfg.data.classes
        else cfg.prompts.categories
    )
    problem = form.problem(categories)
    if problem is not None:
        raise ConfigError(f"prompts.slots: {problem}; make every word belong to one slot")
    uri = cfg.models.text_generator
    if uri.startswith("openai:") or cfg.models.options_for(uri).get("runtime") == "ctranslate2":
        raise ConfigError(
            f"prompts.slots: {uri} cannot choose among options (constrained decoding); use a "
            "local text generator (builtin:smollm2-135m with runtime transformers, or hf:...) "
            "or remove prompts.slots"
        )


def form_of(cfg: RunConfig) -> SlotForm:
    """The run's caption grammar, from its config."""
    return SlotForm(
        tuple((name, tuple(words)) for name, words in (cfg.prompts.slots or {}).items()),
        tuple(cfg.prompts.templates),
    )


def check_slot_generator(cfg: RunConfig, generator: object) -> OptionChooser | None:
    """Once the LLM is loaded, before the run's ledger exists: it must choose among options."""
    if cfg.prompts.slots is None:
        return None
    if not isinstance(generator, OptionChooser):
        raise ConfigError(
            f"prompts.slots: {cfg.models.text_generator} cannot choose among options "
            "(constrained decoding); use a local text generator (builtin:smollm2-135m with "
            "runtime transformers, or hf:...) or remove prompts.slots"
        )
    return generator


def slot_caption_api(
    cfg: RunConfig, generator: object, categories: list[str], stats: CaptionStats
) -> SlotCaptionAPI:
    """The run's slot-form caption APIs, from its public words and prompt."""
    chooser = check_slot_generator(cfg, generator)
    assert chooser is not None
    return SlotCaptionAPI(
        chooser, form_of(cfg), domain=cfg.domain, categories=categories,
        prompt=cfg.prompts.slot_variation, temperature=cfg.prompts.temperature, stats=stats,
    )  # fmt: skip
