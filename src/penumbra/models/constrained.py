"""A causal LM choosing among public options: its own next-token distribution, restricted to
the tokens that continue one of the options (a token trie), so every reply is one of the
options by construction: nothing to parse, nothing to retry, and a reply costs the few tokens
of the option instead of a free sentence.

Sampling token by token inside the trie draws option o with probability ∏ p(token | prefix)
renormalised at each step over the tokens the trie allows (at temperature T: p^(1/T)). That is
the LLM's distribution conditioned on staying in the vocabulary, up to the per-step
renormalisation, which favours options whose first tokens are rare; the test compares it with
the exact per-step product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    option: int | None = None  # the option that ends here


def _trie(token_lists: Sequence[Sequence[int]]) -> _Node:
    root = _Node()
    for index, tokens in enumerate(token_lists):
        node = root
        for token in tokens:
            node = node.children.setdefault(token, _Node())
        if node.option is None:
            node.option = index
    return root


def option_tokens(tokenizer: Any, options: Sequence[str], context: str = "") -> list[list[int]]:
    """Each option's tokens as the model would see them after `context` (the formatted prompt
    and reply so far) and a space: the tokens of context + " " + option past those of the
    context. Byte-level BPE gives the standalone tokens of " option" either way; SentencePiece
    tokenizers (a lone "▁" before a word at the start of a text) need the context."""
    base = tokenizer(context)["input_ids"] if context else []
    out = []
    for option in options:
        if not option.strip():
            raise ValueError("an option must hold a word")
        tokens = None
        if context:
            full = tokenizer(context + " " + option.strip())["input_ids"]
            if full[: len(base)] == base and len(full) > len(base):
                tokens = list(full[len(base) :])
        if tokens is None:
            tokens = list(tokenizer(" " + option.strip(), add_special_tokens=False)["input_ids"])
        out.append(tokens)
    return out


def _allowed(tries: list[_Node], width: int, eos: int) -> Any:
    """generate()'s hook: the tokens row `row` may write next, given what it wrote so far."""

    def allowed(row: int, ids: torch.Tensor) -> list[int]:
        node = tries[row]
        for token in ids[width:].tolist():
            if token not in node.children:
                return [eos]  # the option is complete: end the reply
            node = node.children[token]
        return list(node.children) + ([eos] if node.option is not None else [])

    return allowed


def choose_options(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    temperature: float,
    seed: int | None,
    batch_size: int = 32,
) -> list[int]:
    """For each formatted `texts[i]` (prompt and the reply so far), the index of the option in
    `options[i]` the model continues it with. Temperature 0 is greedy, token by token."""
    if len(texts) != len(options):
        raise ValueError(f"{len(texts)} texts but {len(options)} option lists")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    chosen: list[int] = []
    device = model.device
    for start in range(0, len(texts), batch_size):
        rows = list(range(start, min(start + batch_size, len(texts))))
        paths = [option_tokens(tokenizer, options[i], texts[i]) for i in rows]
        tries = [_trie(p) for p in paths]
        longest = max(len(t) for p in paths for t in p)
        enc = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True)
        width = enc["input_ids"].shape[1]

        if seed is not None:
            torch.manual_seed(seed + start)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.inference_mode():
            out = model.generate(
                **{k: v.to(device) for k, v in enc.items()},
                max_new_tokens=longest + 1,
                pad_token_id=pad,
                eos_token_id=eos,
                prefix_allowed_tokens_fn=_allowed(tries, width, eos),
                **sampling,
            )
        for row, ids in enumerate(out[:, width:].tolist()):
            node = tries[row]
            for token in ids:
                if token not in node.children:
                    break
                node = node.children[token]
            if node.option is None:  # cannot happen: the trie allowed only its own paths
                raise RuntimeError("constrained decoding stopped inside an option")
            chosen.append(node.option)
    return chosen
