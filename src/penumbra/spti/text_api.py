"""Random and variation APIs over captions, written by an LLM from public prompt templates.

The LLM never sees private data: prompts are built from the config's public domain description
and from candidate captions (which are themselves LLM outputs selected through DP releases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from penumbra.models.protocols import TextGenerator

_PREAMBLE = re.compile(
    r"^(sure|certainly|of course|okay|ok|here('s| is| are)|the (new |rewritten )?description"
    r"( is)?|description|rewritten|new description|answer)\b[^:\n]*[:\-–]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`*"
# Replies that talk about the task instead of doing it (small chat models often do).
_META = re.compile(
    r"\b(description|describe[sd]?|sentence|rewrit\w*|rephras\w*|example|I'm|I'll|I am|"
    r"AI|here is|original)\b",
    re.IGNORECASE,
)


def clean_caption(text: str, max_words: int) -> str | None:
    """First useful sentence of an LLM reply, without chat preambles or quotes; None if empty."""
    for raw in text.strip().splitlines():
        line = _PREAMBLE.sub("", raw.replace("**", "").strip()).strip().strip(_QUOTES).strip()
        line = line.split(";")[0].strip()
        if _META.search(line):
            continue
        line = re.sub(r"^[\-\*\d\.\)\s]+", "", line)  # list markers
        if not line:
            continue
        sentence = re.split(r"(?<=[.!?])\s", line)[0]
        words = sentence.rstrip(".,;:!?").strip(_QUOTES).split()
        if len(words) > max_words or (words and words[-1].lower() in _DANGLING):
            return None  # too long, or cut off mid-phrase: retried rather than truncated
        caption = " ".join(words).strip(_QUOTES).strip()
        if len(caption.split()) >= 2:
            return caption
    return None


# A caption ending on one of these was cut off (the reply hit max_new_tokens mid-phrase).
_DANGLING = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "with",
        "of",
        "in",
        "on",
        "for",
        "to",
        "by",
        "at",
        "from",
        "its",
        "their",
        "his",
        "her",
        "as",
        "but",
        "that",
        "which",
        "is",
        "are",
        "was",
        "were",
    ]
)


def head_word(phrase: str) -> str:
    """The word a caption must contain to be about `phrase`: its last word, singular."""
    word = phrase.lower().split()[-1] if phrase.split() else ""
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def mentions(caption: str, heads: list[str]) -> bool:
    """Whether `caption` names one of the category head words (singular or plural)."""
    words = {w.strip(_QUOTES + ".,;:!?()").lower() for w in caption.split()}
    words |= {w[:-1] for w in words if w.endswith("s") and not w.endswith("ss")}
    return any(h in words for h in heads)


@dataclass
class CaptionStats:
    """How often the LLM's first reply was not a usable caption: prompts sent, prompts that
    needed at least one retry, and prompts that fell back (a variation keeps its parent, a
    random prompt its subject) after the retry budget. Public: prompts are public text."""

    prompts: int = 0
    retried: int = 0
    fell_back: int = 0

    def as_dict(self) -> dict[str, float]:
        n = max(self.prompts, 1)
        return {
            "prompts": self.prompts,
            "retried": self.retried,
            "fell_back": self.fell_back,
            "retried_share": round(self.retried / n, 4),
            "fell_back_share": round(self.fell_back / n, 4),
        }


@dataclass
class Prompts:
    """Prompts for the LLM, what each falls back to after the retries, and the word groups a
    reply must name (None: any clean reply)."""

    prompts: list[str]
    fallbacks: list[str]
    required: list[list[list[str]]] | None = None

    def __add__(self, other: Prompts) -> Prompts:
        if self.required is None and other.required is None:
            required = None
        else:
            required = (self.required or [[] for _ in self.prompts]) + (
                other.required or [[] for _ in other.prompts]
            )
        return Prompts(self.prompts + other.prompts, self.fallbacks + other.fallbacks, required)


class LLMCaptionAPI:
    """PE's random API (fresh descriptions of the domain) and variation API (paraphrases)."""

    def __init__(
        self,
        generator: TextGenerator,
        *,
        domain: str,
        random_template: str,
        variation_template: str,
        examples: list[str] | None = None,
        max_words: int = 16,
        max_new_tokens: int = 32,
        temperature: float = 0.9,
        retries: int = 3,
        categories: list[str] | None = None,
        attributes: list[str] | None = None,
        steer: str = "",
        keep_attributes: bool = False,
        stats: CaptionStats | None = None,
    ) -> None:
        self.generator = generator
        self.stats = stats if stats is not None else CaptionStats()
        self.domain = domain
        self.random_template = random_template
        self.examples = list(examples or [])
        self.variation_template = variation_template
        self.max_words = max_words
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.retries = retries
        self.categories = list(categories or [])
        self.attributes = list(attributes or [])
        self.steer = steer
        self.heads = [head_word(c) for c in self.categories]
        self.keep_attributes = keep_attributes
        self.attribute_words = sorted({w.lower() for a in self.attributes for w in a.split()})

    def _complete(
        self,
        prompts: list[str],
        fallbacks: list[str],
        seed: int,
        required: list[list[list[str]]] | None = None,
    ) -> list[str]:
        """One clean caption per prompt, retrying failures, duplicates and captions that miss
        one of the prompt's `required` word groups (each group: name at least one of its
        words; e.g. the category's head words, then each attribute to keep); after the retry
        budget a prompt gets its fallback."""
        out: list[str | None] = [None] * len(prompts)
        seen: set[str] = set()
        for attempt in range(self.retries + 1):
            todo = [i for i, c in enumerate(out) if c is None]
            if not todo:
                break
            if attempt == 1:
                self.stats.retried += len(todo)
            replies = self.generator.generate(
                [prompts[i] for i in todo],
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=seed + 7919 * attempt,
            )
            for i, reply in zip(todo, replies, strict=True):
                caption = clean_caption(reply, self.max_words)
                if (
                    caption is not None
                    and required
                    and not all(mentions(caption, group) for group in required[i])
                ):
                    caption = None
                if caption is not None and (caption.lower() not in seen or attempt == self.retries):
                    out[i] = caption
                    seen.add(caption.lower())
        self.stats.prompts += len(prompts)
        self.stats.fell_back += sum(c is None for c in out)
        return [c if c is not None else fallbacks[i] for i, c in enumerate(out)]

    def random(self, count: int, *, seed: int) -> list[str]:
        return self.complete(self.random_prompts(count, seed=seed), seed)

    def random_prompts(self, count: int, *, seed: int) -> Prompts:
        """The random API's prompts, before the LLM sees them (several APIs' prompts can then
        go to the LLM in one batch: `complete`)."""
        # A few public examples per prompt, in a random order (public randomness), so the
        # model does not just copy the first one.
        rng = np.random.default_rng(seed)
        subjects = self._subjects(count, rng)
        prompts = []
        for subject in subjects:
            picked = [self.examples[int(i)] for i in rng.permutation(len(self.examples))[:3]]
            prompt = self.random_template.format(
                domain=self.domain, max_words=self.max_words, examples="; ".join(picked)
            )
            if subject[0] and self.steer:
                prompt += " " + self.steer.format(subject=subject[0], domain=self.domain)
            prompts.append(prompt)
        required = [[[head_word(c)]] for _, c in subjects] if self.categories else None
        fallbacks = [subject or self.domain for subject, _ in subjects]
        return Prompts(prompts, fallbacks, required)

    def complete(self, prompts: Prompts, seed: int) -> list[str]:
        return self._complete(prompts.prompts, prompts.fallbacks, seed, prompts.required)

    def _subjects(self, count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
        """(subject, category) per random prompt: the public categories in equal shares (a
        shuffled cycle), each with a random public attribute, so the first population covers
        the whole domain instead of what the LLM writes most readily."""
        if not self.categories and not self.attributes:
            return [("", "")] * count
        cycle = list(self.categories) or [""]
        order = [cycle[int(i)] for i in rng.permutation(len(cycle))]
        picked = [order[i % len(order)] for i in range(count)]
        rng.shuffle(picked)
        # attributes too come in equal shares within each category (a shuffled cycle per
        # category), so every category starts with every public tone, not a random few
        cycles: dict[str, list[str]] = {}
        out = []
        for category in picked:
            attribute = ""
            if self.attributes:
                if not cycles.get(category):
                    cycles[category] = [
                        self.attributes[int(i)] for i in rng.permutation(len(self.attributes))
                    ]
                attribute = cycles[category].pop()
            out.append((f"{attribute} {category}".strip(), category))
        return out

    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        return self.complete(self.vary_prompts(payloads), seed)

    def vary_prompts(self, payloads: list[str]) -> Prompts:
        """The variation API's prompts (see `random_prompts`)."""
        prompts = [
            self.variation_template.format(
                domain=self.domain, max_words=self.max_words, caption=caption
            )
            for caption in payloads
        ]
        # A variation keeps its parent's category: the votes, not the LLM's drift, decide how
        # much of each category the population holds. One that fails to parse, or leaves the
        # category, keeps its parent caption.
        required: list[list[list[str]]] | None = None
        if self.categories or self.keep_attributes:
            required = []
            for p in payloads:
                groups = []
                if self.categories:
                    groups.append([h for h in self.heads if mentions(p, [h])] or self.heads)
                if self.keep_attributes:
                    groups += [[w] for w in self.attribute_words if mentions(p, [w])]
                required.append(groups)
        return Prompts(prompts, list(payloads), required)
