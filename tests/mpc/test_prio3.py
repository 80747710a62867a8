"""Prio3 end to end: shard -> verify -> aggregate -> unshard, encodings and rejections."""

from __future__ import annotations

import random
from typing import Any

import pytest

from penumbra.mpc.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3L1BoundedSumVec,
    Prio3Sum,
    Prio3SumVec,
    best_chunk_length,
    recommended_chunk_length,
)

CTX = b"penumbra test"


def run_vdaf(
    vdaf: Prio3, measurements: list[Any], seed: int = 0, ctx_per_agg: list[bytes] | None = None
) -> Any:
    """The draft's run_vdaf, with every message passed through its byte encoding."""
    rng = random.Random(seed)
    key = rng.randbytes(vdaf.VERIFY_KEY_SIZE)
    ctxs = ctx_per_agg or [CTX] * vdaf.SHARES
    agg_shares = [vdaf.agg_init(None) for _ in range(vdaf.SHARES)]
    for meas in measurements:
        nonce = rng.randbytes(vdaf.NONCE_SIZE)
        public, inputs = vdaf.shard(CTX, meas, nonce, rng.randbytes(vdaf.RAND_SIZE))
        public = vdaf.decode_public_share(vdaf.encode_public_share(public))
        states, vshares = [], []
        for j in range(vdaf.SHARES):
            share = vdaf.decode_input_share(j, vdaf.encode_input_share(inputs[j]))
            state, vshare = vdaf.verify_init(key, ctxs[j], j, None, nonce, public, share)
            states.append(vdaf.decode_verify_state(vdaf.encode_verify_state(state)))
            vshares.append(vdaf.decode_verifier_share(vdaf.encode_verifier_share(vshare)))
        message = vdaf.verifier_shares_to_message(ctxs[0], None, vshares)
        message = vdaf.decode_verifier_message(vdaf.encode_verifier_message(message))
        for j in range(vdaf.SHARES):
            out = vdaf.verify_next(ctxs[j], states[j], message)
            agg_shares[j] = vdaf.agg_update(None, agg_shares[j], out)
    wire = [vdaf.decode_agg_share(vdaf.encode_agg_share(a)) for a in agg_shares]
    return vdaf.unshard(None, wire, len(measurements))


def test_sum_vec_round_trip_equals_plain_sum() -> None:
    vdaf = Prio3SumVec(6, 16, 4)
    meas = [[0, 1, 2, 3, 65535, 7], [9, 9, 9, 9, 9, 9], [65535, 0, 0, 100, 1, 2]]
    assert run_vdaf(vdaf, meas) == [sum(col) for col in zip(*meas, strict=True)]


@pytest.mark.parametrize(
    ("vdaf", "measurements", "expected"),
    [
        (Prio3Count(), [1, 0, 1, 1], 3),
        (Prio3Count(shares=3), [1, 1], 2),
        (Prio3Sum(1000), [0, 1000, 17], 1017),
        (Prio3Histogram(7, 3), [0, 6, 6, 2], [1, 0, 1, 0, 0, 0, 2]),
        (Prio3SumVec(3, 4, shares=3), [[15, 0, 1], [1, 2, 3]], [16, 2, 4]),
        (Prio3SumVec(2, chunk_length=1, max_measurement=10), [[10, 3], [0, 9]], [10, 12]),
    ],
    ids=["count", "count-3", "sum", "histogram", "sumvec-3", "sumvec-max"],
)
def test_variants_round_trip(vdaf: Prio3, measurements: list[Any], expected: Any) -> None:
    assert run_vdaf(vdaf, measurements) == expected


def test_parameters() -> None:
    v = Prio3SumVec(1000, 16)
    assert v.chunk_length == 126 == recommended_chunk_length(16000)
    # sqrt(160000) = 400 calls round up to 512 points; 314 fits in 511 calls.
    assert recommended_chunk_length(160000) == 400 and best_chunk_length(160000) == 314
    assert Prio3SumVec(10000, 16).flp.PROOF_LEN < Prio3SumVec(10000, 16, 400).flp.PROOF_LEN
    assert (v.SHARES, v.NONCE_SIZE, v.VERIFY_KEY_SIZE, v.RAND_SIZE, v.ID) == (2, 16, 32, 128, 3)
    assert Prio3Count().RAND_SIZE == 64
    assert Prio3L1BoundedSumVec(4, 2, 2, 5).ID == 0xFFFF0001
    with pytest.raises(ValueError):
        Prio3SumVec(3, 4, 2, max_measurement=15)


@pytest.mark.parametrize(
    ("vdaf", "bad"),
    [
        (Prio3Count(), 2),
        (Prio3Sum(10), 11),
        (Prio3SumVec(2, 3), [8, 0]),
        (Prio3SumVec(2, 3), [1, -1]),
        (Prio3SumVec(2, 3), [1]),
        (Prio3Histogram(3), 3),
    ],
)
def test_shard_refuses_invalid_measurements(vdaf: Prio3, bad: Any) -> None:
    with pytest.raises(ValueError):
        vdaf.shard(CTX, bad, bytes(16), bytes(vdaf.RAND_SIZE))


def test_context_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="check failed"):
        run_vdaf(Prio3SumVec(3, 2), [[1, 2, 3]], ctx_per_agg=[CTX, b"other"])


def test_invalid_encoding_is_rejected_by_aggregators() -> None:
    vdaf = Prio3SumVec(3, 2, 2)
    nonce, rand = bytes(16), bytes(range(vdaf.RAND_SIZE))
    bad = [1, 0, 0, 1, 2, 0]  # a "bit" equal to 2
    public, inputs = vdaf._shard_encoded(CTX, bad, nonce, rand)
    shares = [
        vdaf.verify_init(bytes(32), CTX, j, None, nonce, public, inputs[j])[1] for j in range(2)
    ]
    with pytest.raises(ValueError, match="proof verifier check failed"):
        vdaf.verifier_shares_to_message(CTX, None, shares)


def test_decoders_reject_malformed_bytes() -> None:
    vdaf = Prio3SumVec(3, 2, 2)
    nonce, rand = bytes(16), bytes(vdaf.RAND_SIZE)
    public, inputs = vdaf.shard(CTX, [1, 2, 3], nonce, rand)
    leader = vdaf.encode_input_share(inputs[0])
    helper = vdaf.encode_input_share(inputs[1])
    pub = vdaf.encode_public_share(public)
    state, vshare = vdaf.verify_init(bytes(32), CTX, 0, None, nonce, public, inputs[0])
    vs = vdaf.encode_verifier_share(vshare)
    agg = vdaf.encode_agg_share(state[0])
    overflow = (2**128 - 1).to_bytes(16, "little")
    cases = [
        lambda: vdaf.decode_input_share(0, leader[:-1]),
        lambda: vdaf.decode_input_share(0, overflow + leader[16:]),
        lambda: vdaf.decode_input_share(1, helper + b"\0"),
        lambda: vdaf.decode_input_share(2, helper),
        lambda: vdaf.decode_public_share(pub[:-1]),
        lambda: vdaf.decode_verifier_share(vs[:-1]),
        lambda: vdaf.decode_verifier_share(vs[:-32]),
        lambda: vdaf.decode_verifier_message(b"\0" * 31),
        lambda: vdaf.decode_agg_share(agg + b"\0" * 16),
        lambda: vdaf.decode_agg_share(overflow * 3),
        lambda: Prio3Count().decode_public_share(b"\0"),
        lambda: Prio3Count().decode_verifier_message(b"\0"),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(ValueError):
            case()
            pytest.fail(f"case {i} did not raise")
    assert vdaf.decode_input_share(0, leader) == inputs[0]
    assert vdaf.decode_input_share(1, helper) == inputs[1]


def test_sharding_checks_sizes() -> None:
    vdaf = Prio3Count()
    with pytest.raises(ValueError, match="nonce"):
        vdaf.shard(CTX, 1, bytes(15), bytes(vdaf.RAND_SIZE))
    with pytest.raises(ValueError, match="random bytes"):
        vdaf.shard(CTX, 1, bytes(16), bytes(vdaf.RAND_SIZE - 1))
