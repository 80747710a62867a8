"""The two NTT-friendly prime fields of draft-irtf-cfrg-vdaf-20 (section "Finite Fields").

Field elements are plain Python ints in ``[0, MODULUS)`` and vectors are ``list[int]``: a
per-element wrapper object would cost more than the arithmetic itself on vectors of 10^5
elements. The classes only carry the parameters and the vector helpers, so callers write
``Field128.encode_vec(v)`` the way the draft does.

Aggregators add signed noise to field-valued sums before they reveal them; `to_signed` maps
the revealed residues back to integers, reading values above ``MODULUS // 2`` as negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt


class Field:
    """Parameters and vector helpers of one prime field; subclasses set the constants."""

    MODULUS: ClassVar[int]
    ENCODED_SIZE: ClassVar[int]
    GEN_ORDER: ClassVar[int]
    # The generator of the 2-power subgroup, `7 ** ((MODULUS - 1) // GEN_ORDER)`.
    GENERATOR: ClassVar[int]

    @classmethod
    def zeros(cls, length: int) -> list[int]:
        return [0] * length

    @classmethod
    def encode_vec(cls, vec: Iterable[int]) -> bytes:
        """Little-endian encoding of each element (the draft's `encode_vec`)."""
        size = cls.ENCODED_SIZE
        if size == 8:
            return np.array(list(vec), dtype="<u8").tobytes()
        return b"".join(int(x).to_bytes(size, "little") for x in vec)

    @classmethod
    def decode_vec(cls, encoded: bytes) -> list[int]:
        """Parse `encode_vec` output; ValueError on a ragged length or an element >= MODULUS."""
        size = cls.ENCODED_SIZE
        if len(encoded) % size != 0:
            raise ValueError(
                f"{cls.__name__}: input length {len(encoded)} is not a multiple of {size}"
            )
        words = np.frombuffer(encoded, dtype="<u8")
        if size == 8:
            if words.size and int(words.max()) >= cls.MODULUS:
                raise ValueError(f"{cls.__name__}: modulus overflow")
            vec64: list[int] = words.tolist()  # Python ints already
            return vec64
        lo = words[0::2].tolist()
        hi = words[1::2].tolist()
        vec = [a | (b << 64) for a, b in zip(lo, hi, strict=True)]
        if vec and max(vec) >= cls.MODULUS:
            raise ValueError(f"{cls.__name__}: modulus overflow")
        return vec

    @classmethod
    def from_int(cls, value: int) -> int:
        """The draft's `Field(integer)`: integers in `(-MODULUS, MODULUS)`, negatives negated."""
        if not -cls.MODULUS < value < cls.MODULUS:
            raise ValueError(f"{cls.__name__}: {value} is out of range")
        return value % cls.MODULUS

    @classmethod
    def inv(cls, x: int) -> int:
        if x % cls.MODULUS == 0:
            raise ZeroDivisionError("inverse of zero")
        return pow(x, cls.MODULUS - 2, cls.MODULUS)

    @classmethod
    def nth_root(cls, n: int) -> int:
        """Principal n-th root of unity `gen ** (GEN_ORDER // n)`; n a power of two."""
        if n < 1 or n & (n - 1) or n > cls.GEN_ORDER:
            raise ValueError(f"{cls.__name__}: no principal {n}-th root of unity")
        return pow(cls.GENERATOR, cls.GEN_ORDER // n, cls.MODULUS)

    @classmethod
    def nth_root_powers(cls, n: int) -> list[int]:
        w = cls.nth_root(n)
        p = cls.MODULUS
        out = [1] * n
        for i in range(1, n):
            out[i] = out[i - 1] * w % p
        return out

    @classmethod
    def vec_add(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        if len(left) != len(right):
            raise ValueError("mismatched vector sizes")
        p = cls.MODULUS
        return [(a + b) % p for a, b in zip(left, right, strict=True)]

    @classmethod
    def vec_sub(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        if len(left) != len(right):
            raise ValueError("mismatched vector sizes")
        p = cls.MODULUS
        return [(a - b) % p for a, b in zip(left, right, strict=True)]

    @classmethod
    def vec_neg(cls, vec: Sequence[int]) -> list[int]:
        p = cls.MODULUS
        return [(-a) % p for a in vec]

    @classmethod
    def to_signed(cls, values: Iterable[int]) -> npt.NDArray[np.int64]:
        """`to_signed(values, cls.MODULUS)`."""
        return to_signed(values, cls.MODULUS)


class Field64(Field):
    """`2**32 * 4294967295 + 1`, used by Prio3Count and Prio3Sum."""

    MODULUS = 2**32 * 4294967295 + 1
    ENCODED_SIZE = 8
    GEN_ORDER = 2**32
    GENERATOR = pow(7, 4294967295, MODULUS)

    @classmethod
    def vec_add(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        return _native(cls, "add", left, right) or super().vec_add(left, right)

    @classmethod
    def vec_sub(cls, left: Sequence[int], right: Sequence[int]) -> list[int]:
        return _native(cls, "sub", left, right) or super().vec_sub(left, right)


def _native(
    field: type[Field], op: str, left: Sequence[int], right: Sequence[int]
) -> list[int] | None:
    """`op` on the compiled Field64 path (`goldilocks`), or None where that path is off."""
    from penumbra.mpc import goldilocks

    if not goldilocks.handles(field.MODULUS) or len(left) != len(right) or not left:
        return None
    kernel = goldilocks.add if op == "add" else goldilocks.sub
    out: list[int] = kernel(goldilocks.asarray(left), goldilocks.asarray(right)).tolist()
    return out


class Field128(Field):
    """`2**66 * 4611686018427387897 + 1`, used by Prio3SumVec, Prio3Histogram and ours."""

    MODULUS = 2**66 * 4611686018427387897 + 1
    ENCODED_SIZE = 16
    GEN_ORDER = 2**66
    GENERATOR = pow(7, 4611686018427387897, MODULUS)


def to_signed(values: Iterable[int], modulus: int) -> npt.NDArray[np.int64]:
    """Read residues mod `modulus` as the integers nearest zero: `x > modulus // 2` is negative.

    Raises ValueError if a value is not a residue or the signed value does not fit in int64
    (a sum that large means the noise or the votes were not what the protocol allows).
    """
    half = modulus // 2
    out: list[int] = []
    for raw in values:
        x = int(raw)
        if not 0 <= x < modulus:
            raise ValueError(f"{x} is not a residue modulo {modulus}")
        signed = x - modulus if x > half else x
        if not -(2**63) <= signed < 2**63:
            raise ValueError(f"signed value {signed} does not fit in int64")
        out.append(signed)
    return np.array(out, dtype=np.int64)
