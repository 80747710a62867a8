"""Field64 on uint64 arrays: exact against Python ints, and Prio3 byte for byte either way."""

from __future__ import annotations

import random
import secrets

import numpy as np
import pytest

from penumbra.mpc import goldilocks, ntt, xof
from penumbra.mpc.field import Field64, Field128
from penumbra.mpc.prio3 import Prio3BoundedVoteVec, Prio3SumVecWithMultiproof

P = goldilocks.P
EDGES = [0, 1, 2, P - 1, P - 2, 2**32 - 1, 2**32, 2**32 + 1, 2**63, P - 2**32, 2**64 - 2**32]


def _values(rng: random.Random, n: int) -> list[int]:
    pool = [v for v in EDGES if v < P] + [rng.randrange(P) for _ in range(2000)]
    return [rng.choice(pool) for _ in range(n)]


def test_arithmetic_is_exact_on_edges_and_random_values() -> None:
    rng = random.Random(7)
    a, b = _values(rng, 40_000), _values(rng, 40_000)
    x, y = np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)
    assert goldilocks.mul(x, y).tolist() == [u * v % P for u, v in zip(a, b, strict=True)]
    assert goldilocks.add(x, y).tolist() == [(u + v) % P for u, v in zip(a, b, strict=True)]
    assert goldilocks.sub(x, y).tolist() == [(u - v) % P for u, v in zip(a, b, strict=True)]
    assert goldilocks.neg(x).tolist() == [(-u) % P for u in a]
    rows = x.reshape(80, 500)
    assert goldilocks.sum_mod(rows).tolist() == [sum(r) % P for r in rows.tolist()]
    weights = y[:500]
    expected = [
        sum(u * v for u, v in zip(r, weights.tolist(), strict=True)) % P for r in rows.tolist()
    ]
    assert goldilocks.dot(rows, weights).tolist() == expected
    # the worst case for the split sums: every term p - 1
    worst = np.full((2, 4096), P - 1, dtype=np.uint64)
    assert goldilocks.sum_mod(worst).tolist() == [(P - 1) * 4096 % P] * 2


def test_asarray_refuses_what_is_not_an_element() -> None:
    with pytest.raises(ValueError, match="modulus"):
        goldilocks.asarray([1, P])
    with pytest.raises(OverflowError):
        goldilocks.asarray([-1])
    # mixing values above and below 2**63 must not go through float64
    assert goldilocks.asarray([3, P - 1]).tolist() == [3, P - 1]


@pytest.mark.parametrize("n", [1, 2, 16, 512])
def test_ntt_matches_the_reference(n: int) -> None:
    rng = random.Random(n)
    rows = np.array([_values(rng, n) for _ in range(5)], dtype=object)
    for inverse in (False, True):
        fast = ntt.ntt_rows(Field64, rows, inverse=inverse)
        with goldilocks.reference_arithmetic():
            reference = ntt.ntt_rows(Field64, rows, inverse=inverse)
        assert fast.tolist() == reference.tolist()
    fast = ntt.double_evaluations_rows(Field64, rows)
    with goldilocks.reference_arithmetic():
        reference = ntt.double_evaluations_rows(Field64, rows)
    assert fast.tolist() == reference.tolist()


def _round(
    vdaf: Prio3BoundedVoteVec, votes: list[int], rand: bytes, *, honest: bool = True
) -> list[object]:
    """Everything both Aggregators see and send for one report, in encoded form."""
    ctx, nonce, key = b"penumbra-test", bytes(range(16)), bytes(range(32))
    if honest:
        public, shares = vdaf.shard(ctx, votes, nonce, rand)
    else:
        encoded = vdaf.valid.encode_unchecked(votes)  # type: ignore[attr-defined]
        public, shares = vdaf._shard_encoded(ctx, encoded, nonce, rand)
    seen: list[object] = [public, [vdaf.encode_input_share(s) for s in shares]]
    states, verifier_shares = [], []
    for agg_id, share in enumerate(shares):
        state, verifier = vdaf.verify_init(key, ctx, agg_id, None, nonce, public, share)
        states.append(state)
        verifier_shares.append(verifier)
        seen.append(Field64.encode_vec(verifier[0]))
    try:
        message = vdaf.verifier_shares_to_message(ctx, None, verifier_shares)
    except ValueError as error:
        return [*seen, str(error)]
    return [*seen, message] + [vdaf.verify_next(ctx, s, message) for s in states]


def test_prio3_field64_multiproof_is_identical_on_both_paths() -> None:
    """A whole report, honest and cheating: shares, verifier shares, verdict, output shares."""
    rng = np.random.default_rng(3)
    vdaf = Prio3BoundedVoteVec(300, 16, None, 500, 500, field=Field64, proofs=3)
    votes = np.bincount(rng.integers(0, 300, 500), minlength=300).tolist()
    rand = secrets.token_bytes(vdaf.RAND_SIZE)
    fast = _round(vdaf, votes, rand)
    with goldilocks.reference_arithmetic():
        reference = _round(vdaf, votes, rand)
    assert fast == reference
    assert sum(fast[-1]) > 0  # type: ignore[arg-type]
    cheating = list(votes)
    cheating[0] += 600  # entry above max_entry and sum above the bound
    fast = _round(vdaf, cheating, rand, honest=False)
    with goldilocks.reference_arithmetic():
        reference = _round(vdaf, cheating, rand, honest=False)
    assert fast == reference
    assert fast[-1] == "proof verifier check failed"


def test_field128_never_takes_the_fast_path() -> None:
    assert not goldilocks.handles(Field128.MODULUS)
    assert goldilocks.handles(Field64.MODULUS)
    with goldilocks.reference_arithmetic():
        assert not goldilocks.handles(Field64.MODULUS)


# Prio3SumVecWithMultiproof_0.json of the draft's repository at commit 6e3c9d0 (report 0):
# Field64, 3 proofs, length 10, bits 8, chunk 9, DST version byte 12. That draft still sent
# gadget polynomials in the monomial basis, so each proof's first and last verifier element
# (which read the gadget polynomial) differ from ours; everything else is checked.
# Kept as a regression test; the draft-20 files (vectors/Prio3SumVecWithMultiproof_*.json) are
# replayed in full by test_conformance.
MP_CTX = bytes.fromhex("736f6d65206170706c69636174696f6e")
MP_PUBLIC = (
    "9993eb05b65316bc08a39b732f8392dad96c7e1fd1d25c350ddc356a52f2bd76"
    "03345600064bc49a1e71347b3ca5b6ef7d230cb279f6000a3c861e09a260e6a6"
)
MP_OUT = (
    "97327c9f1e9309dc07f33b40c7957a01022d254a50269d8a7c5e83836d1933a70a1f28e3ed031369"
    "3ba5197f177f51255ca0d90c5a64a8cd0aa96c924900626b88360411accaf877ed2cfeceb960963b"
)
MP_MESSAGE = "dafcf2e9580aac389fd2640aa258ae82aead68113bec1c0bb4917e8e49e1d12d"
MP_LEADER_WIRE_CHECKS_PROOF_0 = (
    "1318d9b9488733c2957e74e00772a42c36cbf7e66b91e03e493b3f14d8cf9d110f180d3ef69fe0b7"
    "94498e56da465b8ddcf73ddafe274e3e8e8b6959ae45047ad43f900917f69cf81a01b41339810bc2"
    "ea517a9eef0e71bd975253d3b6e3f6c3fa12a26c11f1b13314eceea1e908213ab48f50db45abcf18"
    "ab8080ff24d2c455b41bf6519de83be37c6b7c3111725b85"
)


def test_multiproof_matches_the_draft_vector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xof, "VERSION", 12)
    vdaf = Prio3SumVecWithMultiproof(Field64, 3, 10, 255, 9)
    nonce, rand, key = bytes(range(16)), bytes(range(128)), bytes(range(32))
    public, shares = vdaf.shard(MP_CTX, list(range(10)), nonce, rand)
    assert b"".join(public).hex() == MP_PUBLIC  # type: ignore[arg-type]
    leader_state, leader_verifier = vdaf.verify_init(key, MP_CTX, 0, None, nonce, public, shares[0])
    helper_state, helper_verifier = vdaf.verify_init(key, MP_CTX, 1, None, nonce, public, shares[1])
    assert Field64.encode_vec(leader_state[0]).hex() == MP_OUT
    assert Field64.encode_vec(leader_verifier[0][1:19]).hex() == MP_LEADER_WIRE_CHECKS_PROOF_0
    message = vdaf.verifier_shares_to_message(MP_CTX, None, [leader_verifier, helper_verifier])
    assert message is not None and message.hex() == MP_MESSAGE
    out = [vdaf.verify_next(MP_CTX, s, message) for s in (leader_state, helper_state)]
    assert vdaf.unshard(None, [out[0], out[1]], 1) == list(range(10))


def test_a_shard_leaves_no_measurement_rows_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prover keeps measurement-derived rows between its proofs, and drops them on return."""
    from penumbra.mpc import flp
    from penumbra.mpc import prio3_vdaf as prio3

    kept: list[object] = []

    def forget() -> None:
        kept.append(flp.reused_rows())
        flp.forget_reused_rows()

    monkeypatch.setattr(prio3, "forget_reused_rows", forget)
    vdaf = Prio3BoundedVoteVec(50, 8, None, 20, 20, field=Field64, proofs=3)
    vdaf.shard(b"ctx", [1] * 20 + [0] * 30, bytes(16), secrets.token_bytes(vdaf.RAND_SIZE))
    assert len(kept) == 1 and kept[0] is not None  # they were kept during the shard…
    assert flp.reused_rows() is None  # …and are gone after it


@pytest.mark.parametrize("n", [2, 64, 512])
def test_lagrange_weights_match_the_reference(n: int) -> None:
    rng = random.Random(n)
    for x in [rng.randrange(P) for _ in range(3)] + [Field64.nth_root(n)]:  # a node: its index
        fast = ntt.lagrange_weights(Field64, n, x)
        with goldilocks.reference_arithmetic():
            assert fast == ntt.lagrange_weights(Field64, n, x)


@pytest.mark.parametrize("max_measurement", [1, 2, 7, 8, 255, 1000, 65535])
def test_vector_encoding_matches_the_drafts_per_value_encoding(max_measurement: int) -> None:
    from penumbra.mpc.circuits import encode_range_checked_int, encode_range_checked_ints

    values = sorted({0, 1, max_measurement // 2, max_measurement - 1, max_measurement} - {-1})
    values += random.Random(max_measurement).choices(range(max_measurement + 1), k=50)
    expected = [b for v in values for b in encode_range_checked_int(Field64, v, max_measurement)]
    assert encode_range_checked_ints(values, max_measurement) == expected
    with pytest.raises(ValueError, match="outside"):
        encode_range_checked_ints([0, max_measurement + 1], max_measurement)


def test_no_share_words_stay_on_the_circuit_after_a_call() -> None:
    """The circuit keeps a share's words between proofs; shard and verify_init drop them."""
    vdaf = Prio3BoundedVoteVec(50, 8, None, 20, 20, field=Field64, proofs=3)
    nonce, key = bytes(16), bytes(32)
    public, shares = vdaf.shard(
        b"c", [1] * 20 + [0] * 30, nonce, secrets.token_bytes(vdaf.RAND_SIZE)
    )
    assert "_last_words" not in vars(vdaf.valid) and "_last_truncated" not in vars(vdaf.valid)
    vdaf.verify_init(key, b"c", 0, None, nonce, public, shares[0])
    assert "_last_words" not in vars(vdaf.valid) and "_last_truncated" not in vars(vdaf.valid)
