"""Random and variation APIs over captions, written by an LLM from public prompt templates.

The LLM never sees private data: prompts are built from the config's public domain description
and from candidate captions (which are themselves LLM outputs selected through DP releases).
"""

from __future__ import annotations

import re

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
        words = sentence.split()[:max_words]
        caption = " ".join(words).rstrip(".,;:!?").strip(_QUOTES).strip()
        if len(caption.split()) >= 2:
            return caption
    return None


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
    ) -> None:
        self.generator = generator
        self.domain = domain
        self.random_template = random_template
        self.examples = list(examples or [])
        self.variation_template = variation_template
        self.max_words = max_words
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.retries = retries

    def _complete(self, prompts: list[str], fallbacks: list[str], seed: int) -> list[str]:
        """One clean caption per prompt, retrying failures; duplicates are retried too."""
        out: list[str | None] = [None] * len(prompts)
        seen: set[str] = set()
        for attempt in range(self.retries + 1):
            todo = [i for i, c in enumerate(out) if c is None]
            if not todo:
                break
            replies = self.generator.generate(
                [prompts[i] for i in todo],
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=seed + 7919 * attempt,
            )
            for i, reply in zip(todo, replies, strict=True):
                caption = clean_caption(reply, self.max_words)
                if caption is not None and (caption.lower() not in seen or attempt == self.retries):
                    out[i] = caption
                    seen.add(caption.lower())
        return [c if c is not None else fallbacks[i] for i, c in enumerate(out)]

    def random(self, count: int, *, seed: int) -> list[str]:
        # A few public examples per prompt, in a random order (public randomness), so the
        # model does not just copy the first one.
        rng = np.random.default_rng(seed)
        prompts = []
        for _ in range(count):
            picked = [self.examples[int(i)] for i in rng.permutation(len(self.examples))[:3]]
            prompts.append(
                self.random_template.format(
                    domain=self.domain, max_words=self.max_words, examples="; ".join(picked)
                )
            )
        return self._complete(prompts, [self.domain] * count, seed)

    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        prompts = [
            self.variation_template.format(
                domain=self.domain, max_words=self.max_words, caption=caption
            )
            for caption in payloads
        ]
        # a variation that fails to parse keeps its parent caption rather than stalling the run
        return self._complete(prompts, list(payloads), seed)
