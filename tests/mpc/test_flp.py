"""NTT and Lagrange-basis helpers against naive evaluation; the FLP on valid/invalid inputs."""

from __future__ import annotations

import random

import pytest

from penumbra.mpc import ntt
from penumbra.mpc.circuits import Count, Histogram, L1BoundedSumVec, Sum, SumVec
from penumbra.mpc.field import Field, Field64, Field128
from penumbra.mpc.flp import Flp, Valid

FIELDS = [Field64, Field128]


def _naive(field: type[Field], coeffs: list[int], x: int) -> int:
    return sum(c * pow(x, i, field.MODULUS) for i, c in enumerate(coeffs)) % field.MODULUS


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("n", [1, 2, 8, 32])
def test_ntt_round_trip_and_points(field: type[Field], n: int) -> None:
    rng = random.Random(n)
    p = field.MODULUS
    coeffs = [rng.randrange(p) for _ in range(n)]
    values = ntt.ntt(field, coeffs, n)
    w = field.nth_root(n)
    assert values == [_naive(field, coeffs, pow(w, i, p)) for i in range(n)]
    assert ntt.inv_ntt(field, values, n) == coeffs
    s = field.nth_root(2 * n)
    coset = ntt.ntt(field, coeffs, n, set_s=True)
    assert coset == [_naive(field, coeffs, s * pow(w, i, p) % p) for i in range(n)]
    # Lagrange helpers: evaluation anywhere, doubling, products.
    x = rng.randrange(p)
    assert ntt.poly_eval(field, values, x) == _naive(field, coeffs, x)
    assert ntt.poly_eval(field, values, pow(w, n - 1, p)) == values[-1]
    w2 = field.nth_root(2 * n)
    doubled = ntt.double_evaluations(field, values)
    assert doubled == [_naive(field, coeffs, pow(w2, i, p)) for i in range(2 * n)]
    other = [rng.randrange(p) for _ in range(n)]
    prod = ntt.poly_mul(field, values, ntt.ntt(field, other, n))
    assert prod == [
        _naive(field, coeffs, pow(w2, i, p)) * _naive(field, other, pow(w2, i, p)) % p
        for i in range(2 * n)
    ]


@pytest.mark.parametrize("missing", [1, 3])
def test_extend_values_matches_interpolation(missing: int) -> None:
    field = Field128
    rng = random.Random(missing)
    n = 16
    coeffs = [rng.randrange(field.MODULUS) for _ in range(n - missing)] + [0] * missing
    values = ntt.ntt(field, coeffs, n)
    head = values[: n - missing]
    ntt.extend_values_to_power_of_2(field, head, n)
    assert head == values


def _circuits() -> list[tuple[Valid, list[int], list[int]]]:
    """(circuit, a valid encoding, an invalid encoding)."""
    sumvec = SumVec(Field128, 4, 7, 3)
    hist = Histogram(Field128, 5, 2)
    bounded = L1BoundedSumVec(Field128, 3, 3, 4, 9)
    return [
        (Count(Field64), [1], [2]),
        (Sum(Field64, 10), Sum(Field64, 10).encode(9), [1, 2, 0, 0]),
        (sumvec, sumvec.encode([0, 7, 3, 5]), [*sumvec.encode([0, 7, 3, 5])[:-1], 2]),
        (hist, hist.encode(3), [0, 1, 0, 1, 0]),
        (bounded, bounded.encode([7, 0, 2]), bounded.encode_unchecked([7, 1, 2])),
    ]


@pytest.mark.parametrize(("valid", "good", "bad"), _circuits(), ids=lambda v: type(v).__name__)
def test_flp_accepts_valid_and_rejects_invalid(
    valid: Valid, good: list[int], bad: list[int]
) -> None:
    """run_flp from the draft with 2 shares; the invalid encodings break the circuit."""
    rng = random.Random(11)
    flp = Flp(valid)
    p = flp.field.MODULUS

    def run(meas: list[int]) -> bool:
        joint = [rng.randrange(p) for _ in range(flp.JOINT_RAND_LEN)]
        prove = [rng.randrange(p) for _ in range(flp.PROVE_RAND_LEN)]
        query = [rng.randrange(p) for _ in range(flp.QUERY_RAND_LEN)]
        proof = flp.prove(meas, prove, joint)
        assert len(proof) == flp.PROOF_LEN
        m0 = [rng.randrange(p) for _ in meas]
        p0 = [rng.randrange(p) for _ in proof]
        m1 = [(a - b) % p for a, b in zip(meas, m0, strict=True)]
        p1 = [(a - b) % p for a, b in zip(proof, p0, strict=True)]
        v0 = flp.query(m0, p0, query, joint, 2)
        v1 = flp.query(m1, p1, query, joint, 2)
        assert len(v0) == flp.VERIFIER_LEN
        return flp.decide([(a + b) % p for a, b in zip(v0, v1, strict=True)])

    assert all(x == 0 for x in valid.eval(good, [rng.randrange(p)] * valid.JOINT_RAND_LEN, 1))
    assert run(good)
    assert not run(bad)


def test_tampered_proof_is_rejected() -> None:
    valid = SumVec(Field128, 4, 7, 3)
    flp = Flp(valid)
    rng = random.Random(5)
    p = flp.field.MODULUS
    meas = valid.encode([1, 2, 3, 4])
    joint = [rng.randrange(p) for _ in range(flp.JOINT_RAND_LEN)]
    proof = flp.prove(meas, [rng.randrange(p) for _ in range(flp.PROVE_RAND_LEN)], joint)
    query = [rng.randrange(p) for _ in range(flp.QUERY_RAND_LEN)]
    assert flp.decide(flp.query(meas, proof, query, joint, 1))
    for i in (0, len(proof) - 1, flp.valid.GADGETS[0].ARITY + 1):
        bad = list(proof)
        bad[i] = (bad[i] + 1) % p
        assert not flp.decide(flp.query(meas, bad, query, joint, 1))
