"""Prio3L1BoundedSumVec and Prio3BoundedVoteVec: a holder cannot cast more votes than its
declared sample count, in total or (Prio3BoundedVoteVec) for any one candidate."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from penumbra.mpc.circuits import encode_range_checked_int
from penumbra.mpc.prio3 import Prio3, Prio3BoundedVoteVec, Prio3L1BoundedSumVec
from penumbra.mpc.protocol import vdaf_for
from tests.mpc.test_prio3 import run_vdaf

CTX = b"penumbra bounded"
LENGTH, BITS, BOUND = 3, 3, 10
VDAF = Prio3L1BoundedSumVec(LENGTH, BITS, 4, BOUND)


def _accepts(vdaf: Prio3, encoded: list[int], seed: int) -> bool:
    """Shard an encoded measurement honestly and run both honest Aggregators on it."""
    rng = random.Random(seed)
    nonce, rand = rng.randbytes(16), rng.randbytes(vdaf.RAND_SIZE)
    key = rng.randbytes(vdaf.VERIFY_KEY_SIZE)
    public, inputs = vdaf._shard_encoded(CTX, encoded, nonce, rand)
    states, shares = [], []
    for j in range(vdaf.SHARES):
        state, share = vdaf.verify_init(key, CTX, j, None, nonce, public, inputs[j])
        states.append(state)
        shares.append(share)
    try:
        message = vdaf.verifier_shares_to_message(CTX, None, shares)
        outs = [vdaf.verify_next(CTX, s, message) for s in states]
    except ValueError:
        return False
    assert vdaf.unshard(None, outs, 1) == vdaf.valid.truncate(encoded)
    return True


def _aggregators_accept(encoded: list[int], seed: int) -> bool:
    return _accepts(VDAF, encoded, seed)


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


# -- Prio3BoundedVoteVec: every entry also at most the declared count -------------------------

DECLARED, K = 5, 3  # a holder of 5 samples voting for k=3 candidates each
VOTES = Prio3BoundedVoteVec(LENGTH, 8, 4, DECLARED * K, DECLARED)


def test_bounded_votes_round_trip_equals_plain_sum() -> None:
    vdaf = Prio3BoundedVoteVec(6, 16, None, 40 * 2, 40)  # declared 40, k = 2
    meas = [[40, 40, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0], [39, 0, 1, 40, 0, 0]]
    assert run_vdaf(vdaf, meas, seed=7) == [sum(c) for c in zip(*meas, strict=True)]
    assert vdaf.ID != Prio3L1BoundedSumVec.ID  # another encoding: reports never mix


def test_bounded_votes_entries_use_the_declared_count_not_bits() -> None:
    vdaf = vdaf_for(10, 16, 40, 2)  # what a holder of 40 samples sends with k = 2
    assert vdaf.valid.max_entry == 40 and vdaf.valid.l1_bound == 80
    assert vdaf.valid.entries.MEAS_LEN == 10 * 6  # 40 needs 6 weighted bits, not 16
    assert vdaf_for(3, 4, 1000, 1).valid.max_entry == 15  # still capped below 2**bits


def test_shard_refuses_an_entry_above_the_declared_count() -> None:
    for bad in ([DECLARED + 1, 0, 0], [DECLARED, DECLARED, DECLARED + 1], [-1, 0, 0]):
        with pytest.raises(ValueError):
            VOTES.shard(CTX, bad, bytes(16), bytes(VOTES.RAND_SIZE))
    VOTES.shard(CTX, [DECLARED] * 3, bytes(16), bytes(VOTES.RAND_SIZE))  # the sum bound, exactly


def test_one_entry_with_k_times_the_honest_maximum_is_rejected() -> None:
    """The L1 bound alone (declared × k) let one entry carry every vote: the old circuit
    accepts it, the per-entry bound rejects it."""
    cheat = [DECLARED * K, 0, 0]
    old = Prio3L1BoundedSumVec(LENGTH, 8, 4, DECLARED * K)
    assert _accepts(old, old.valid.encode_unchecked(cheat), seed=1)
    assert not _accepts(VOTES, VOTES.valid.encode_unchecked(cheat), seed=1)
    assert not _accepts(VOTES, VOTES.valid.encode_unchecked([DECLARED + 1, 0, 0]), seed=2)
    assert _accepts(VOTES, VOTES.valid.encode_unchecked([DECLARED, DECLARED, DECLARED]), seed=3)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    entries=st.lists(st.integers(0, 4 * DECLARED), min_size=LENGTH, max_size=LENGTH),
    seed=st.integers(0, 2**32),
)
@example(entries=[DECLARED, DECLARED, DECLARED], seed=1)  # valid: both bounds exactly
@example(entries=[DECLARED + 1, 0, 0], seed=2)  # one entry just over the declared count
@example(entries=[DECLARED, DECLARED, DECLARED + 1], seed=3)
@example(entries=[8, 0, 0], seed=4)  # above the count, below the next power of two
def test_bounded_votes_accept_exactly_the_valid_measurements(entries: list[int], seed: int) -> None:
    """A cheating holder encodes any entries faithfully; honest Aggregators accept iff every
    entry <= the declared count and the sum <= declared × k (a wrong accept: ~2**-100)."""
    valid = all(e <= DECLARED for e in entries) and sum(entries) <= DECLARED * K
    assert _accepts(VOTES, VOTES.valid.encode_unchecked(entries), seed) == valid


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    entries=st.lists(st.integers(0, 2**3 - 1), min_size=LENGTH, max_size=LENGTH),
    seed=st.integers(0, 2**32),
)
def test_entries_written_in_plain_bits_cannot_pass_the_weighted_range(
    entries: list[int], seed: int
) -> None:
    """Honest-looking {0, 1} elements with the power-of-two weights a holder might try: the
    circuit decodes them with its own weights (which sum to the declared count), so no
    assignment of bits can decode to more than the declared count."""
    bits = VOTES.valid.entry_bits
    encoded = [(e >> i) & 1 for e in entries for i in range(bits)]
    decoded = VOTES.valid.truncate(encoded + [0] * VOTES.valid.slack_bits)
    assert all(0 <= d <= DECLARED for d in decoded)
    slack = DECLARED * K - sum(decoded)
    encoded += encode_range_checked_int(VOTES.field, slack, DECLARED * K)
    assert _accepts(VOTES, encoded, seed)
