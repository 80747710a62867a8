"""Prio3L1BoundedSumVec: a holder cannot cast more votes than its declared sample count."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from penumbra.mpc.circuits import encode_range_checked_int
from penumbra.mpc.prio3 import Prio3L1BoundedSumVec
from tests.mpc.test_prio3 import run_vdaf

CTX = b"penumbra bounded"
LENGTH, BITS, BOUND = 3, 3, 10
VDAF = Prio3L1BoundedSumVec(LENGTH, BITS, 4, BOUND)


def _aggregators_accept(encoded: list[int], seed: int) -> bool:
    """Shard an encoded measurement honestly and run both honest Aggregators on it."""
    rng = random.Random(seed)
    nonce, rand = rng.randbytes(16), rng.randbytes(VDAF.RAND_SIZE)
    key = rng.randbytes(VDAF.VERIFY_KEY_SIZE)
    public, inputs = VDAF._shard_encoded(CTX, encoded, nonce, rand)
    states, shares = [], []
    for j in range(VDAF.SHARES):
        state, share = VDAF.verify_init(key, CTX, j, None, nonce, public, inputs[j])
        states.append(state)
        shares.append(share)
    try:
        message = VDAF.verifier_shares_to_message(CTX, None, shares)
        outs = [VDAF.verify_next(CTX, s, message) for s in states]
    except ValueError:
        return False
    assert VDAF.unshard(None, outs, 1) == VDAF.valid.truncate(encoded)
    return True


def test_round_trip_of_three_holders_equals_plain_sum() -> None:
    vdaf = Prio3L1BoundedSumVec(5, 4, None, 20)
    meas = [[1, 2, 3, 4, 10], [0, 0, 0, 0, 0], [15, 5, 0, 0, 0]]
    assert run_vdaf(vdaf, meas, seed=4) == [sum(c) for c in zip(*meas, strict=True)]


def test_shard_refuses_invalid_measurements() -> None:
    for bad in ([8, 0, 0], [4, 4, 3], [-1, 0, 0], [1, 1]):
        with pytest.raises(ValueError):
            VDAF.shard(CTX, bad, bytes(16), bytes(VDAF.RAND_SIZE))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    entries=st.lists(st.integers(0, 2 ** (BITS + 1)), min_size=LENGTH, max_size=LENGTH),
    seed=st.integers(0, 2**32),
)
@example(entries=[7, 3, 0], seed=1)  # valid, sum exactly the bound
@example(entries=[0, 0, 0], seed=2)
@example(entries=[8, 0, 0], seed=3)  # one entry just out of range
@example(entries=[7, 4, 0], seed=4)  # sum one over the bound
@example(entries=[16, 0, 0], seed=5)
def test_aggregators_accept_exactly_the_valid_measurements(entries: list[int], seed: int) -> None:
    """A cheating holder encodes any entries faithfully (bits may exceed 1, the slack may wrap);
    honest Aggregators must accept iff every entry < 2**bits and the sum <= the bound. A wrong
    accept has probability ~2**-100 per report, so this never fails by chance."""
    valid = all(e < 2**BITS for e in entries) and sum(entries) <= BOUND
    assert _aggregators_accept(VDAF.valid.encode_unchecked(entries), seed) == valid


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    entries=st.lists(st.integers(0, 2**BITS - 1), min_size=LENGTH, max_size=LENGTH).filter(
        lambda e: sum(e) > BOUND
    ),
    slack=st.integers(0, BOUND),
    seed=st.integers(0, 2**32),
)
def test_over_bound_with_any_honest_looking_slack_is_rejected(
    entries: list[int], slack: int, seed: int
) -> None:
    """In-range entries and a well-formed slack encoding that does not balance the sum."""
    bits = [(e >> i) & 1 for e in entries for i in range(BITS)]
    encoded = bits + encode_range_checked_int(VDAF.field, slack, BOUND)
    assert not _aggregators_accept(encoded, seed)
