"""The watermark's payload code: Golay distance, correction, and how rarely random bits pass."""

from __future__ import annotations

import numpy as np

from penumbra.provenance.mark import (
    CODEWORDS,
    MAX_ERRORS,
    PAYLOAD_BITS,
    decode_mark,
    encode_mark,
    run_mark,
)  # fmt: skip


def test_golay_codewords_are_distinct_and_eight_apart() -> None:
    assert len(set(CODEWORDS.tolist())) == 4096
    weights = np.bitwise_count(CODEWORDS[1:])  # a linear code: distance = least weight
    assert weights.min() == 8


def test_run_mark_is_the_key_s_and_round_trips_through_errors() -> None:
    mark = run_mark("penumbra-run+01234567+" + "A" * 43 + "=")
    assert len(mark) == 8 and mark != run_mark("other+01234567+" + "A" * 43 + "=")
    bits = encode_mark(mark)
    assert bits.shape == (PAYLOAD_BITS,) and decode_mark(bits).mark == mark
    rng = np.random.default_rng(7)
    for _ in range(200):  # any 3 flipped bits are corrected
        flipped = bits.copy()
        flipped[rng.choice(PAYLOAD_BITS, MAX_ERRORS, replace=False)] ^= 1
        assert decode_mark(flipped) == decode_mark(bits).__class__(mark, MAX_ERRORS)
    flipped = bits.copy()
    flipped[rng.choice(PAYLOAD_BITS, 9, replace=False)] ^= 1
    assert decode_mark(flipped).mark in (None, mark)  # never another run's identifier


def test_flat_and_random_bits_are_not_marks() -> None:
    """Random words pass with probability 5.7e-8 each (the module's bound): 20 000 of them
    contain one with probability 1.1e-3, the false-failure rate of this test (seed fixed)."""
    assert decode_mark(np.zeros(PAYLOAD_BITS, np.uint8)).mark is None
    assert decode_mark(np.ones(PAYLOAD_BITS, np.uint8)).mark is None
    rng = np.random.default_rng(11)
    words = rng.integers(0, 2, (20_000, PAYLOAD_BITS), dtype=np.uint8)
    assert not [w for w in words if decode_mark(w).mark is not None]
