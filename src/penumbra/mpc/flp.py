"""The fully linear proof system of draft-irtf-cfrg-vdaf-20 (section "FLP Specification").

The draft evaluates a validity circuit through wrapper gadgets that record each call's input
wires. Every circuit this package needs (see `circuits.py`) feeds gadgets with affine functions
of the measurement and joint randomness only, never with another gadget's output, so
evaluation is split in two phases instead: `Valid.gadget_inputs` returns all input wires at
once, the prover or verifier supplies the gadget outputs, and `Valid.combine` finishes the
circuit. The proof and verifier bytes are the draft's, as the test vectors check.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from penumbra.mpc import goldilocks, ntt
from penumbra.mpc.field import Field, Field64
from penumbra.mpc.ntt import ObjArray, next_power_of_2


def wire_poly_len(gadget_calls: int) -> int:
    return next_power_of_2(1 + gadget_calls)


def gadget_poly_len(gadget_degree: int, wire_polynomial_len: int) -> int:
    return gadget_degree * (wire_polynomial_len - 1) + 1


class Gadget:
    """A non-affine sub-circuit: `eval` on field elements, `eval_poly` on Lagrange rows."""

    ARITY: int
    DEGREE: int

    def eval(self, field: type[Field], inp: Sequence[int]) -> int:
        raise NotImplementedError

    def eval_poly(self, field: type[Field], wires: ObjArray) -> ObjArray:
        """The gadget applied to `wires` (ARITY rows of p values at the p-th roots of unity),
        as next_power_of_2(gadget_poly_len(DEGREE, p)) values at that many roots."""
        raise NotImplementedError


class Mul(Gadget):
    ARITY = 2
    DEGREE = 2

    def eval(self, field: type[Field], inp: Sequence[int]) -> int:
        return inp[0] * inp[1] % field.MODULUS

    def eval_poly(self, field: type[Field], wires: ObjArray) -> ObjArray:
        doubled = ntt.double_evaluations_rows(field, wires[:2])
        result: ObjArray = doubled[0] * doubled[1] % field.MODULUS
        return result


class PolyEval(Gadget):
    """`p(x)` for a fixed polynomial `p` (coefficients in ascending degree)."""

    ARITY = 1

    def __init__(self, p: Sequence[int], num_calls: int) -> None:
        coeffs = list(p)
        while coeffs and coeffs[-1] == 0:
            coeffs.pop()
        if not coeffs:
            raise ValueError("invalid polynomial: zero length")
        self.p = coeffs
        self.DEGREE = len(coeffs) - 1
        self.n = next_power_of_2(gadget_poly_len(self.DEGREE, wire_poly_len(num_calls)))

    def eval(self, field: type[Field], inp: Sequence[int]) -> int:
        return ntt.poly_eval_monomial(field, self.p, inp[0])

    def eval_poly(self, field: type[Field], wires: ObjArray) -> ObjArray:
        length = wires.shape[1]
        mon = ntt.inv_ntt(field, [int(x) for x in wires[0]], length)
        lag = ntt.ntt(field, mon, self.n)
        return np.array([ntt.poly_eval_monomial(field, self.p, x) for x in lag], dtype=object)


class ParallelSum(Gadget):
    """Sum of `count` calls of `subcircuit` on consecutive slices of the input."""

    def __init__(self, subcircuit: Gadget, count: int) -> None:
        self.subcircuit = subcircuit
        self.count = count
        self.ARITY = subcircuit.ARITY * count
        self.DEGREE = subcircuit.DEGREE

    def eval(self, field: type[Field], inp: Sequence[int]) -> int:
        a = self.subcircuit.ARITY
        out = 0
        for i in range(self.count):
            out += self.subcircuit.eval(field, inp[i * a : (i + 1) * a])
        return out % field.MODULUS

    def eval_poly(self, field: type[Field], wires: ObjArray) -> ObjArray:
        p = field.MODULUS
        if isinstance(self.subcircuit, Mul) and goldilocks.handles(p):
            rows = goldilocks.asarray(wires)
            left = ntt.double_evaluations_fast(field, rows[0::2])
            right = _double_evaluations_reusing(field, rows[1::2])
            prods64 = goldilocks.mul(left, right)
            summed: ObjArray = goldilocks.sum_mod(prods64, axis=0).astype(object)
            return summed
        if isinstance(self.subcircuit, Mul):
            # All Mul calls at once: double every wire row in one batch, multiply pairs.
            doubled = ntt.double_evaluations_rows(field, wires)
            prods = doubled[0::2] * doubled[1::2] % p
            total: ObjArray = prods.sum(axis=0) % p
            return total
        a = self.subcircuit.ARITY
        out = self.subcircuit.eval_poly(field, wires[0:a])
        for i in range(1, self.count):
            out = (out + self.subcircuit.eval_poly(field, wires[i * a : (i + 1) * a])) % p
        return out


# The second input of every range-check Mul, `x - 1/shares`, is the same in each of a report's
# proofs; only the wire seed (column 0) differs. Doubling evaluations is linear, so the rows'
# doubled evaluations without their seeds are kept (the last ones seen) and each proof adds
# `seed * double(e_0)`: two thirds of the prover's transforms with three proofs. Exact.
# The rows derive from the measurement, so Prio3 forgets them when its shard returns.
# Per thread: holders may prove in several threads of one process (the load test does).
_REUSED = threading.local()


def reused_rows() -> tuple[bytes, goldilocks.U64] | None:
    """This thread's kept rows, if any (tests check that a shard leaves none)."""
    return getattr(_REUSED, "last", None)


def forget_reused_rows() -> None:
    _REUSED.last = None


def _double_evaluations_reusing(field: type[Field], rows: goldilocks.U64) -> goldilocks.U64:
    n = rows.shape[1]
    seedless = rows.copy()
    seedless[:, 0] = 0
    key = hashlib.blake2b(seedless.tobytes(), digest_size=32).digest() + n.to_bytes(8, "little")
    last = reused_rows()
    if last is not None and last[0] == key:
        base = last[1]
    else:
        base = ntt.double_evaluations_fast(field, seedless)
        _REUSED.last = (key, base)
    return goldilocks.add(base, goldilocks.mul(rows[:, 0:1].copy(), _doubled_unit(n)))


@lru_cache(maxsize=32)
def _doubled_unit(n: int) -> goldilocks.U64:
    """`double_evaluations` of e_0 (1 at the first node, 0 elsewhere): what a seed adds."""
    unit = np.zeros((1, n), dtype=np.uint64)
    unit[0, 0] = 1
    doubled = ntt.double_evaluations_fast(Field64, unit)  # this path is Field64's only
    doubled.flags.writeable = False
    return doubled


class Valid:
    """A validity circuit (the draft's `Valid`), evaluated in two phases (module docstring)."""

    GADGETS: list[Gadget]
    GADGET_CALLS: list[int]
    MEAS_LEN: int
    JOINT_RAND_LEN: int
    EVAL_OUTPUT_LEN: int
    OUTPUT_LEN: int
    field: type[Field]

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        """For each gadget, the input wires of each of its GADGET_CALLS calls, in order."""
        raise NotImplementedError

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        """The circuit outputs (EVAL_OUTPUT_LEN) given every gadget call's output."""
        raise NotImplementedError

    def eval(self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int) -> list[int]:
        inputs = self.gadget_inputs(meas, joint_rand, num_shares)
        outputs = [
            [g.eval(self.field, [int(x) for x in call]) for call in calls]
            for g, calls in zip(self.GADGETS, inputs, strict=True)
        ]
        return self.combine(meas, joint_rand, num_shares, outputs)

    def truncate(self, meas: Sequence[int]) -> list[int]:
        raise NotImplementedError

    def forget_memos(self) -> None:
        """Drop what circuits keep of the last measurement (share) between proofs: Prio3 calls
        this when a shard or verify_init returns, so nothing of it outlives the call."""
        for name in ("_last_words", "_last_truncated"):
            self.__dict__.pop(name, None)

    def prove_rand_len(self) -> int:
        return sum(g.ARITY for g in self.GADGETS)

    def query_rand_len(self) -> int:
        n = len(self.GADGETS)
        return n + self.EVAL_OUTPUT_LEN if self.EVAL_OUTPUT_LEN > 1 else n

    def proof_len(self) -> int:
        return sum(
            g.ARITY + gadget_poly_len(g.DEGREE, wire_poly_len(calls))
            for g, calls in zip(self.GADGETS, self.GADGET_CALLS, strict=True)
        )

    def verifier_len(self) -> int:
        return 1 + sum(g.ARITY + 1 for g in self.GADGETS)


def _wire_rows(seeds: Sequence[int], calls: list[list[int]] | goldilocks.U64, p: int) -> ObjArray:
    """ARITY rows of length p: the wire seed, then the value of that wire in each call.

    Calls given as a uint64 array (the Field64 fast path) give uint64 rows."""
    if isinstance(calls, np.ndarray) and calls.dtype == np.uint64:
        fast = np.zeros((len(seeds), p), dtype=np.uint64)
        fast[:, 0] = goldilocks.asarray(list(seeds))
        fast[:, 1 : 1 + len(calls)] = calls.T
        return fast
    rows = np.zeros((len(seeds), p), dtype=object)
    rows[:, 0] = list(seeds)
    if calls:
        rows[:, 1 : 1 + len(calls)] = np.array(calls, dtype=object).T
    return rows


class Flp:
    """FLP from a validity circuit: `prove`, `query`, `decide` and the draft's lengths."""

    def __init__(self, valid: Valid) -> None:
        self.valid = valid
        self.field = valid.field
        self.PROVE_RAND_LEN = valid.prove_rand_len()
        self.QUERY_RAND_LEN = valid.query_rand_len()
        self.JOINT_RAND_LEN = valid.JOINT_RAND_LEN
        self.MEAS_LEN = valid.MEAS_LEN
        self.OUTPUT_LEN = valid.OUTPUT_LEN
        self.PROOF_LEN = valid.proof_len()
        self.VERIFIER_LEN = valid.verifier_len()

    def prove(
        self, meas: Sequence[int], prove_rand: Sequence[int], joint_rand: Sequence[int]
    ) -> list[int]:
        inputs = self.valid.gadget_inputs(meas, joint_rand, 1)
        proof: list[int] = []
        offset = 0
        for g, calls, n_calls in zip(
            self.valid.GADGETS, inputs, self.valid.GADGET_CALLS, strict=True
        ):
            seeds = list(prove_rand[offset : offset + g.ARITY])
            offset += g.ARITY
            p = wire_poly_len(n_calls)
            gadget_poly = g.eval_poly(self.field, _wire_rows(seeds, calls, p))
            proof += seeds
            proof += [int(x) for x in gadget_poly[: gadget_poly_len(g.DEGREE, p)]]
        return proof

    def query(
        self,
        meas: Sequence[int],
        proof: Sequence[int],
        query_rand: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
    ) -> list[int]:
        field = self.field
        modulus = field.MODULUS
        valid = self.valid
        inputs = valid.gadget_inputs(meas, joint_rand, num_shares)

        # Recover each gadget polynomial's values at enough roots to read every call's output.
        seeds_per_gadget: list[list[int]] = []
        polys: list[list[int]] = []
        outputs: list[list[int]] = []
        offset = 0
        for g, n_calls in zip(valid.GADGETS, valid.GADGET_CALLS, strict=True):
            p = wire_poly_len(n_calls)
            seeds_per_gadget.append(list(proof[offset : offset + g.ARITY]))
            offset += g.ARITY
            g_len = gadget_poly_len(g.DEGREE, p)
            poly = list(proof[offset : offset + g_len])
            offset += g_len
            ntt.extend_values_to_power_of_2(field, poly, next_power_of_2(len(poly)))
            size = next_power_of_2(g_len)
            while len(poly) < size:
                poly = ntt.double_evaluations(field, poly)
            step = size // p
            polys.append(poly)
            outputs.append([poly[k * step] for k in range(1, n_calls + 1)])

        out = valid.combine(meas, joint_rand, num_shares, outputs)
        if valid.EVAL_OUTPUT_LEN > 1:
            rand = query_rand[: valid.EVAL_OUTPUT_LEN]
            rest = query_rand[valid.EVAL_OUTPUT_LEN :]
            v = sum(r * o for r, o in zip(rand, out, strict=True)) % modulus
        else:
            [v] = out
            rest = query_rand

        verifier = [v]
        for _g, t, seeds, calls, poly in zip(
            valid.GADGETS, rest, seeds_per_gadget, inputs, polys, strict=True
        ):
            p = wire_poly_len(len(calls))
            # A test point among the wire polynomials' nodes would leak gadget inputs.
            if pow(t, p, modulus) == 1:
                raise ValueError("test point is a root of unity")
            verifier += ntt.poly_eval_batched(field, _wire_rows(seeds, calls, p), t)
            verifier.append(ntt.poly_eval(field, poly, t))
        return verifier

    def decide(self, verifier: Sequence[int]) -> bool:
        if len(verifier) != self.VERIFIER_LEN:
            raise ValueError("verifier has the wrong length")
        if verifier[0] % self.field.MODULUS != 0:
            return False
        offset = 1
        for g in self.valid.GADGETS:
            wire_checks = verifier[offset : offset + g.ARITY]
            gadget_check = verifier[offset + g.ARITY]
            offset += g.ARITY + 1
            if g.eval(self.field, wire_checks) != gadget_check % self.field.MODULUS:
                return False
        return True
