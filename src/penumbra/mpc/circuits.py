"""Validity circuits: the draft's Count, Sum, SumVec and Histogram, and our L1BoundedSumVec.

Each circuit says which measurements are valid (all outputs zero) and how a valid one is
encoded, truncated to its aggregatable output and decoded. Additions of constants are scaled
by `1/num_shares` so each Aggregator's evaluation on its share is a share of the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from penumbra.mpc import goldilocks
from penumbra.mpc.field import Field
from penumbra.mpc.flp import Gadget, Mul, ParallelSum, PolyEval, Valid


def encode_range_checked_int(field: type[Field], value: int, max_measurement: int) -> list[int]:
    """The draft's weighted-bit encoding: bits 2**0 .. 2**(b-2), then a last weight that makes
    the weights sum to `max_measurement`, so exactly `[0, max_measurement]` is representable."""
    if not 0 <= value <= max_measurement:
        raise ValueError(f"measurement {value} is outside [0, {max_measurement}]")
    bits = max_measurement.bit_length()
    rest_all_ones_value = 2 ** (bits - 1) - 1
    last_weight = max_measurement - rest_all_ones_value
    if value <= rest_all_ones_value:
        rest, last = value, 0
    else:
        rest, last = value - last_weight, 1
    return [(rest >> i) & 1 for i in range(bits - 1)] + [last]


def encode_range_checked_ints(values: Sequence[int], max_measurement: int) -> list[int]:
    """`encode_range_checked_int` of every value, concatenated, in one pass of array code (a
    holder encodes 10^4-10^5 entries per report); ValueError if any is out of range."""
    if max_measurement.bit_length() > 62:  # beyond int64: the per-value path
        return [b for v in values for b in encode_range_checked_int(Field, int(v), max_measurement)]
    arr = np.asarray([int(v) for v in values], dtype=np.int64)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > max_measurement):
        bad = next(int(v) for v in arr.tolist() if not 0 <= v <= max_measurement)
        raise ValueError(f"measurement {bad} is outside [0, {max_measurement}]")
    bits = max_measurement.bit_length()
    rest_all_ones_value = 2 ** (bits - 1) - 1
    last = arr > rest_all_ones_value
    rest = np.where(last, arr - (max_measurement - rest_all_ones_value), arr)
    out = np.empty((arr.size, bits), dtype=np.int64)
    out[:, : bits - 1] = (rest[:, None] >> np.arange(bits - 1)) & 1
    out[:, bits - 1] = last
    encoded: list[int] = out.reshape(-1).tolist()
    return encoded


def range_checked_weights(field: type[Field], max_measurement: int) -> list[int]:
    bits = max_measurement.bit_length()
    rest_all_ones_value = 2 ** (bits - 1) - 1
    return [1 << i for i in range(bits - 1)] + [max_measurement - rest_all_ones_value]


def decode_range_checked_int(
    field: type[Field], encoded: Sequence[int], max_measurement: int
) -> int:
    """Inverse of `encode_range_checked_int`; linear, so it also maps shares to shares."""
    weights = range_checked_weights(field, max_measurement)
    return sum(w * b for w, b in zip(weights, encoded, strict=False)) % field.MODULUS


def _check_length(measurement: Sequence[int], length: int) -> None:
    if len(measurement) != length:
        raise ValueError(f"measurement has {len(measurement)} entries, not {length}")


def _range_check_gadgets(meas_len: int, chunk_length: int) -> tuple[list[Gadget], list[int]]:
    """GADGETS and GADGET_CALLS of the circuits that check every one of `meas_len` elements
    is in {0, 1}: ParallelSum(Mul, chunk_length), called once per chunk. JOINT_RAND_LEN is
    the number of calls (one random weight per call, see `_range_check_inputs`)."""
    return [ParallelSum(Mul(), chunk_length)], [(meas_len + chunk_length - 1) // chunk_length]


def _range_check_inputs(
    field: type[Field],
    meas: Sequence[int],
    joint_rand: Sequence[int],
    num_shares: int,
    chunk_length: int,
) -> list[list[list[int]]]:
    """`gadget_inputs` of the `_range_check_gadgets` circuits: call i, slot j gets
    `r_i**(j+1) * x` and `x - 1/num_shares` for the measurement element x it covers, so the
    sum of all calls' outputs is a random linear combination of every `x * (x - 1)`."""
    p = field.MODULUS
    calls = (len(meas) + chunk_length - 1) // chunk_length
    shares_inv = field.inv(num_shares)
    if goldilocks.handles(p):
        return [_range_check_inputs_fast(meas, joint_rand, shares_inv, calls, chunk_length)]
    padded = np.zeros(calls * chunk_length, dtype=object)
    padded[: len(meas)] = list(meas)
    x = padded.reshape(calls, chunk_length)
    r = np.array([int(v) for v in joint_rand[:calls]], dtype=object).reshape(calls, 1)
    powers = np.empty((calls, chunk_length), dtype=object)
    powers[:, 0:1] = r
    for j in range(1, chunk_length):
        powers[:, j : j + 1] = powers[:, j - 1 : j] * r % p
    inputs = np.empty((calls, 2 * chunk_length), dtype=object)
    inputs[:, 0::2] = powers * x % p
    inputs[:, 1::2] = (x - shares_inv) % p
    result: list[list[int]] = inputs.tolist()
    return [result]


def _as_words(valid: Valid, meas: Sequence[int]) -> Any:
    """The measurement (share) as uint64 words on the Field64 path, converted once per report:
    each proof's gadget inputs read the same list. Kept on the circuit instance (one per
    report), never in a module-level cache: on a holder it is the clear measurement."""
    if not goldilocks.handles(valid.field.MODULUS):
        return meas
    last = getattr(valid, "_last_words", None)
    if last is not None and last[0] is meas:
        return last[1]
    words = goldilocks.asarray(meas)
    valid._last_words = (meas, words)  # type: ignore[attr-defined]
    return words


def _range_check_inputs_fast(
    meas: Sequence[int], joint_rand: Sequence[int], shares_inv: int, calls: int, chunk: int
) -> Any:
    """`_range_check_inputs` for Field64 on uint64 arrays (same values; a (calls, arity)
    uint64 array in place of the list of lists, which `flp._wire_rows` takes as it is)."""
    padded = np.zeros(calls * chunk, dtype=np.uint64)
    padded[: len(meas)] = goldilocks.asarray(meas)
    x = padded.reshape(calls, chunk)
    r = goldilocks.asarray([int(v) for v in joint_rand[:calls]])
    powers = np.empty((calls, chunk), dtype=np.uint64)
    powers[:, 0] = r
    done = 1  # powers[:, :done] hold r**1 .. r**done; doubling takes log2(chunk) products
    while done < chunk:
        step = min(done, chunk - done)
        top = powers[:, done - 1 : done]  # r**done
        powers[:, done : done + step] = goldilocks.mul(powers[:, :step], top)
        done += step
    inputs = np.empty((calls, 2 * chunk), dtype=np.uint64)
    inputs[:, 0::2] = goldilocks.mul(powers, x)
    inputs[:, 1::2] = goldilocks.sub(x, np.uint64(shares_inv))
    return inputs


def _weighted_rows(
    field: type[Field], meas: Sequence[int], length: int, weights: Sequence[int]
) -> list[int]:
    """`meas` cut into `length` rows of `len(weights)` elements, each row's weighted sum mod p:
    decodes a vector of weighted-bit encodings (linear, so shares decode to shares)."""
    p = field.MODULUS
    if goldilocks.handles(p):
        m64 = goldilocks.asarray(meas).reshape(length, len(weights))
        decoded: list[int] = goldilocks.dot(m64, goldilocks.asarray(list(weights))).tolist()
        return decoded
    w = np.array(list(weights), dtype=object)
    m = np.array([int(x) for x in meas], dtype=object).reshape(length, len(w))
    return [int(v) % p for v in m.dot(w)]


class Count(Valid):
    """One field element in {0, 1}: `x * x - x == 0`."""

    MEAS_LEN = 1
    JOINT_RAND_LEN = 0
    OUTPUT_LEN = 1
    EVAL_OUTPUT_LEN = 1

    def __init__(self, field: type[Field]) -> None:
        self.field = field
        self.GADGETS = [Mul()]
        self.GADGET_CALLS = [1]

    def encode(self, measurement: int) -> list[int]:
        if measurement not in (0, 1) or isinstance(measurement, bool):
            raise ValueError(f"Prio3Count measurement must be 0 or 1, not {measurement!r}")
        return [measurement]

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        return [[[meas[0], meas[0]]]]

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        return [(gadget_outputs[0][0] - meas[0]) % self.field.MODULUS]

    def truncate(self, meas: Sequence[int]) -> list[int]:
        return list(meas)

    def decode(self, output: Sequence[int], num_measurements: int) -> int:
        return int(output[0])


class Sum(Valid):
    """An integer in `[0, max_measurement]`, range-checked bit by bit with PolyEval(x^2 - x)."""

    JOINT_RAND_LEN = 0
    OUTPUT_LEN = 1

    def __init__(self, field: type[Field], max_measurement: int) -> None:
        if max_measurement < 1:
            raise ValueError("max_measurement must be positive")
        self.field = field
        self.max_measurement = max_measurement
        self.bits = max_measurement.bit_length()
        self.GADGET_CALLS = [self.bits]
        self.GADGETS = [PolyEval([0, -1, 1], self.bits)]
        self.MEAS_LEN = self.bits
        self.EVAL_OUTPUT_LEN = self.bits

    def encode(self, measurement: int) -> list[int]:
        return encode_range_checked_int(self.field, measurement, self.max_measurement)

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        return [[[b] for b in meas]]

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        return list(gadget_outputs[0])

    def truncate(self, meas: Sequence[int]) -> list[int]:
        return [decode_range_checked_int(self.field, meas, self.max_measurement)]

    def decode(self, output: Sequence[int], num_measurements: int) -> int:
        return int(output[0])


class SumVec(Valid):
    """`length` integers in `[0, max_measurement]`, all bits range-checked in one random
    linear combination through ParallelSum(Mul, chunk_length)."""

    EVAL_OUTPUT_LEN = 1

    def __init__(
        self, field: type[Field], length: int, max_measurement: int, chunk_length: int
    ) -> None:
        if length < 1 or max_measurement < 1 or chunk_length < 1:
            raise ValueError("length, max_measurement and chunk_length must be positive")
        self.field = field
        self.length = length
        self.max_measurement = max_measurement
        self.bits = max_measurement.bit_length()
        self.chunk_length = chunk_length
        self.MEAS_LEN = length * self.bits
        self.OUTPUT_LEN = length
        self.GADGETS, self.GADGET_CALLS = _range_check_gadgets(self.MEAS_LEN, chunk_length)
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: Sequence[int]) -> list[int]:
        _check_length(measurement, self.length)
        return encode_range_checked_ints(measurement, self.max_measurement)

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        return _range_check_inputs(
            self.field, _as_words(self, meas), joint_rand, num_shares, self.chunk_length
        )

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        return [sum(gadget_outputs[0]) % self.field.MODULUS]

    def truncate(self, meas: Sequence[int]) -> list[int]:
        weights = range_checked_weights(self.field, self.max_measurement)
        return _weighted_rows(self.field, meas, self.length, weights)

    def decode(self, output: Sequence[int], num_measurements: int) -> list[int]:
        return [int(x) for x in output]


class Histogram(Valid):
    """A one-hot vector of `length` buckets: every entry in {0, 1} and the entries sum to 1."""

    EVAL_OUTPUT_LEN = 2

    def __init__(self, field: type[Field], length: int, chunk_length: int) -> None:
        if length < 1 or chunk_length < 1:
            raise ValueError("length and chunk_length must be positive")
        self.field = field
        self.length = length
        self.chunk_length = chunk_length
        self.GADGETS, self.GADGET_CALLS = _range_check_gadgets(length, chunk_length)
        self.MEAS_LEN = length
        self.OUTPUT_LEN = length
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: int) -> list[int]:
        if not 0 <= measurement < self.length:
            raise ValueError(f"bucket {measurement} is outside [0, {self.length})")
        encoded = [0] * self.length
        encoded[measurement] = 1
        return encoded

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        return _range_check_inputs(
            self.field, _as_words(self, meas), joint_rand, num_shares, self.chunk_length
        )

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        p = self.field.MODULUS
        range_check = sum(gadget_outputs[0]) % p
        sum_check = (sum(meas) - self.field.inv(num_shares)) % p
        return [range_check, sum_check]

    def truncate(self, meas: Sequence[int]) -> list[int]:
        return list(meas)

    def decode(self, output: Sequence[int], num_measurements: int) -> list[int]:
        return [int(x) for x in output]


class L1BoundedSumVec(Valid):
    """`length` integers in `[0, max_entry]` whose sum is at most `l1_bound` (not in the draft).

    `max_entry` defaults to `2**bits - 1`. Encoding: the entries as SumVec with
    `max_measurement = max_entry` encodes them (the draft's range-checked encoding: with the
    default the weights are exactly the powers of two; otherwise bits `2**0 .. 2**(b-2)` and a
    last weight that makes the weights sum to `max_entry`, so exactly `[0, max_entry]` is
    representable), then the slack `l1_bound - sum(entries)` in the range-checked encoding for
    `[0, l1_bound]`. Every encoded element is checked to be in {0, 1} by the same
    ParallelSum(Mul) calls as SumVec's (`_range_check_inputs`), and a second, linear output
    checks `sum(entries) + slack - l1_bound == 0`. Because all entries and the slack are
    non-negative and far below the modulus, that equation holds over the field only if
    `sum(entries) <= l1_bound` over the integers. The FLP combines both outputs with query
    randomness.

    A PE holder uses `max_entry = declared count`: each of its samples votes at most once for
    a candidate, so no honest entry exceeds it, while the L1 bound alone (declared × k) would
    let one entry carry k times the honest maximum.
    """

    EVAL_OUTPUT_LEN = 2

    def __init__(
        self,
        field: type[Field],
        length: int,
        bits: int,
        chunk_length: int,
        l1_bound: int,
        max_entry: int | None = None,
    ) -> None:
        if length < 1 or bits < 1 or chunk_length < 1 or l1_bound < 1:
            raise ValueError("length, bits, chunk_length and l1_bound must be positive")
        max_entry = 2**bits - 1 if max_entry is None else max_entry
        if not 1 <= max_entry <= 2**bits - 1:
            raise ValueError(f"max_entry must be in [1, 2**{bits} - 1], got {max_entry}")
        if length * max_entry + 2 * l1_bound >= field.MODULUS // 2:
            raise ValueError("length * max_entry + l1_bound is too large for the field")
        self.field = field
        self.length = length
        self.bits = bits
        self.max_entry = max_entry
        self.entry_bits = max_entry.bit_length()
        self.chunk_length = chunk_length
        self.l1_bound = l1_bound
        self.slack_bits = l1_bound.bit_length()
        self.entries = SumVec(field, length, max_entry, chunk_length)
        self.MEAS_LEN = self.entries.MEAS_LEN + self.slack_bits
        self.OUTPUT_LEN = length
        self.GADGETS, self.GADGET_CALLS = _range_check_gadgets(self.MEAS_LEN, chunk_length)
        self.JOINT_RAND_LEN = self.GADGET_CALLS[0]

    def encode(self, measurement: Sequence[int]) -> list[int]:
        _check_length(measurement, self.length)
        values = [int(v) for v in measurement]
        for v in values:
            if not 0 <= v <= self.max_entry:
                raise ValueError(f"entry {v} is outside [0, {self.max_entry}]")
        if sum(values) > self.l1_bound:
            raise ValueError(f"entries sum to {sum(values)}, more than {self.l1_bound}")
        return self.encode_unchecked(values)

    def encode_unchecked(self, measurement: Sequence[int]) -> list[int]:
        """The encoding a cheating Client would send for any non-negative entries: the linear
        decoding is faithful (an out-of-range entry sits whole in its weight-1 element, which
        is then not a bit; a negative slack wraps mod p), so only the range and sum checks can
        catch it. Tests use this; honest code calls `encode`."""
        p = self.field.MODULUS
        out: list[int] = []
        if all(0 <= v <= self.max_entry for v in measurement):  # honest entries: array code
            out += encode_range_checked_ints(measurement, self.max_entry)
        else:
            for v in measurement:
                if 0 <= v <= self.max_entry:
                    out += encode_range_checked_int(self.field, v, self.max_entry)
                else:
                    out += [v] + [0] * (self.entry_bits - 1)
        slack = self.l1_bound - sum(measurement)
        if 0 <= slack <= self.l1_bound:
            out += encode_range_checked_int(self.field, slack, self.l1_bound)
        else:
            out += [slack % p] + [0] * (self.slack_bits - 1)
        return [x % p for x in out]

    def gadget_inputs(
        self, meas: Sequence[int], joint_rand: Sequence[int], num_shares: int
    ) -> list[list[list[int]]]:
        return _range_check_inputs(
            self.field, _as_words(self, meas), joint_rand, num_shares, self.chunk_length
        )

    def combine(
        self,
        meas: Sequence[int],
        joint_rand: Sequence[int],
        num_shares: int,
        gadget_outputs: list[list[int]],
    ) -> list[int]:
        p = self.field.MODULUS
        range_check = sum(gadget_outputs[0]) % p
        entries_total = sum(self.truncate(meas))
        slack = decode_range_checked_int(self.field, meas[self.entries.MEAS_LEN :], self.l1_bound)
        bound_share = self.l1_bound * self.field.inv(num_shares)
        return [range_check, (entries_total + slack - bound_share) % p]

    def truncate(self, meas: Sequence[int]) -> list[int]:
        # verify_init truncates a share once for the output and `combine` once per proof:
        # the same list each time, so the last answer is kept (instances are per report)
        last = getattr(self, "_last_truncated", None)
        if last is not None and last[0] is meas:
            return list(last[1])
        out = self.entries.truncate(meas[: self.entries.MEAS_LEN])
        self._last_truncated = (meas, out)
        return list(out)

    def decode(self, output: Sequence[int], num_measurements: int) -> list[int]:
        return self.entries.decode(output, num_measurements)
