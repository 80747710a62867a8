"""Field64/Field128 against Python big-int arithmetic, encodings and signed decoding."""

from __future__ import annotations

import random

import numpy as np
import pytest

from penumbra.mpc.field import Field, Field64, Field128, to_signed

FIELDS = [Field64, Field128]


def test_draft_parameters() -> None:
    assert Field64.MODULUS == 2**32 * 4294967295 + 1
    assert Field128.MODULUS == 2**66 * 4611686018427387897 + 1
    assert (Field64.ENCODED_SIZE, Field128.ENCODED_SIZE) == (8, 16)
    for f in FIELDS:
        g = f.GENERATOR
        # Order exactly GEN_ORDER: g**GEN_ORDER == 1 but g**(GEN_ORDER/2) != 1.
        assert pow(g, f.GEN_ORDER, f.MODULUS) == 1
        assert pow(g, f.GEN_ORDER // 2, f.MODULUS) == f.MODULUS - 1


@pytest.mark.parametrize("field", FIELDS)
def test_vector_arithmetic_matches_big_ints(field: type[Field]) -> None:
    rng = random.Random(7)
    p = field.MODULUS
    a = [rng.randrange(p) for _ in range(200)] + [0, p - 1]
    b = [rng.randrange(p) for _ in range(200)] + [p - 1, p - 1]
    assert field.vec_add(a, b) == [(x + y) % p for x, y in zip(a, b, strict=True)]
    assert field.vec_sub(a, b) == [(x - y) % p for x, y in zip(a, b, strict=True)]
    assert field.vec_neg(a) == [(-x) % p for x in a]
    for x in a[:20]:
        if x:
            assert x * field.inv(x) % p == 1
    assert field.from_int(-1) == p - 1
    with pytest.raises(ValueError):
        field.from_int(p)
    with pytest.raises(ValueError, match="mismatched"):
        field.vec_add(a, b[:-1])


@pytest.mark.parametrize("field", FIELDS)
def test_encode_decode_round_trip_and_errors(field: type[Field]) -> None:
    rng = random.Random(3)
    vec = [rng.randrange(field.MODULUS) for _ in range(50)] + [0, field.MODULUS - 1]
    data = field.encode_vec(vec)
    assert len(data) == len(vec) * field.ENCODED_SIZE
    assert data[: field.ENCODED_SIZE] == vec[0].to_bytes(field.ENCODED_SIZE, "little")
    assert field.decode_vec(data) == vec
    with pytest.raises(ValueError, match="multiple"):
        field.decode_vec(data[:-1])
    with pytest.raises(ValueError, match="modulus overflow"):
        field.decode_vec(field.MODULUS.to_bytes(field.ENCODED_SIZE, "little"))


@pytest.mark.parametrize("field", FIELDS)
def test_to_signed_reads_upper_half_as_negative(field: type[Field]) -> None:
    p = field.MODULUS
    got = to_signed([0, 5, p - 1, p - 12345], p)
    assert got.dtype == np.int64
    assert got.tolist() == [0, 5, -1, -12345]
    if field is Field64:  # the boundary: p // 2 is the largest positive value
        assert to_signed([p // 2, p // 2 + 1], p).tolist() == [p // 2, -(p // 2)]
    # Adding signed noise in the field and decoding gives the signed integer back.
    noise = [-3, 7, -100000, 0]
    votes = [10, 0, 5, 2**40]
    noised = field.vec_add(votes, [field.from_int(n) for n in noise])
    assert to_signed(noised, p).tolist() == [v + n for v, n in zip(votes, noise, strict=True)]
    assert field.to_signed([p - 2]).tolist() == [-2]


def test_to_signed_rejects_non_residues_and_overflow() -> None:
    with pytest.raises(ValueError, match="not a residue"):
        to_signed([Field64.MODULUS], Field64.MODULUS)
    with pytest.raises(ValueError, match="int64"):
        to_signed([2**100], Field128.MODULUS)
