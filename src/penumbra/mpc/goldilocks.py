"""Field64 (p = 2**64 - 2**32 + 1) arithmetic on numpy uint64 arrays, exactly.

Field64 elements fit one machine word, so vectors of them can live in `uint64` arrays and
every operation runs in numpy's C loops instead of on Python ints. numpy has no 64×64→128-bit
product, so `mul` splits words into 32-bit halves; the 128-bit product is then reduced with
the identities `2**64 ≡ 2**32 - 1` and `2**96 ≡ -1 (mod p)`. All results are canonical
(in `[0, p)`), so they equal the reference path's Python-int results element for element;
the tests compare both paths on random and edge-case inputs and through Prio3's test vectors.

uint64 arithmetic in numpy wraps modulo 2**64; every carry and borrow is recovered by a
comparison, never by a wider type.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U64Like = U64 | np.uint64  # a scalar broadcasts like an array

P = (1 << 64) - (1 << 32) + 1
_P = np.uint64(P)
_EPS = np.uint64((1 << 32) - 1)  # 2**64 mod p
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def asarray(values: object) -> U64:
    """uint64 array of canonical elements (ValueError if any value is not in [0, p))."""
    if isinstance(values, np.ndarray) and values.dtype == np.uint64:
        out = values
    else:
        # never let numpy guess the dtype: a list mixing ints above and below 2**63 would
        # become float64 and lose bits; an explicit uint64 raises on anything out of range
        items = values.tolist() if isinstance(values, np.ndarray) else values
        out = np.array(items, dtype=np.uint64)
    if out.size and bool((out >= _P).any()):
        raise ValueError("Field64: element is not below the modulus")
    return out


def add(a: U64, b: U64Like) -> U64:
    s = a + b
    s = s + np.where(s < a, _EPS, np.uint64(0))  # 2**64 wrapped away: add 2**64 mod p
    return np.where(s >= _P, s - _P, s)


def sub(a: U64, b: U64Like) -> U64:
    d = a - b
    return np.where(a < b, d - _EPS, d)  # wrapped: d = a - b + 2**64; want a - b + p


def neg(a: U64) -> U64:
    return np.where(a == 0, a, _P - a)


def _reduce128(hi: U64, lo: U64) -> U64:
    """(hi·2**64 + lo) mod p for any hi, lo < 2**64 (hi is overwritten)."""
    hh = hi >> _S32
    hi &= _M32
    out = lo - hh  # lo - hh·2**96 ≡ lo + hh·(-1)
    out -= (lo < hh) * _EPS  # borrowed 2**64: take back 2**64 - p
    hi *= _EPS  # hl·2**64 ≡ hl·(2**32 - 1); < 2**64
    out += hi
    out += (out < hi) * _EPS  # carried 2**64 out: add 2**64 mod p
    out -= (out >= _P) * _P
    return out


def mul(a: U64, b: U64Like) -> U64:
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = b & _M32, b >> _S32
    lo = a0 * b0
    mid = a0 * b1
    cross = a1 * b0
    hi = a1 * b1
    mid += cross
    hi += (mid < cross).astype(np.uint64) << _S32  # 2**64 of mid is 2**96 of the product
    low_half = mid << _S32
    low_half += lo
    hi += low_half < lo
    hi += mid >> _S32
    return _reduce128(hi, low_half)


def sum_mod(a: U64, axis: int = -1) -> U64:
    """Sum along `axis` mod p: 32-bit halves summed exactly (fine below 2**32 terms)."""
    lo = (a & _M32).sum(axis=axis, dtype=np.uint64)
    hi = (a >> _S32).sum(axis=axis, dtype=np.uint64)
    # hi·2**32 + lo with hi, lo < 2**64: hi·2**32 = (hi >> 32)·2**64 + (hi & M32)·2**32
    top = hi >> _S32
    low = (hi & _M32) << _S32
    total_lo = low + lo
    carry = (total_lo < lo).astype(np.uint64)
    return _reduce128(top + carry, total_lo)


def dot(rows: U64, weights: U64) -> U64:
    """Each row's inner product with `weights`, mod p."""
    return sum_mod(mul(rows, weights[np.newaxis, :]), axis=1)


def powers(base: int, n: int) -> U64:
    out = np.empty(n, dtype=np.uint64)
    acc = 1
    for i in range(n):
        out[i] = acc
        acc = acc * base % P
    return out


@lru_cache(maxsize=64)
def _stage_twiddles(n: int, inverse: bool, generator: int, gen_order: int) -> tuple[U64, ...]:
    out = []
    h = n // 2
    while h >= 1:
        w = pow(generator, gen_order // (2 * h), P)
        if inverse:
            w = pow(w, P - 2, P)
        out.append(powers(w, h))
        h //= 2
    return tuple(out)


@lru_cache(maxsize=64)
def _bit_reverse(n: int) -> npt.NDArray[np.intp]:
    bits = n.bit_length() - 1
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.intp)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev


def ntt_rows(rows: U64, generator: int, gen_order: int, inverse: bool = False) -> U64:
    """NTT of every row (decimation in frequency, the same butterflies as `ntt.ntt_rows`)."""
    b, n = rows.shape
    x = rows.copy()
    h = n // 2
    for tw in _stage_twiddles(n, inverse, generator, gen_order):
        v = x.reshape(b, n // (2 * h), 2, h)
        top = v[:, :, 0, :].copy()
        bot = v[:, :, 1, :]
        v[:, :, 0, :] = add(top, bot)
        v[:, :, 1, :] = mul(sub(top, bot), tw)
        h //= 2
    x = x[:, _bit_reverse(n)]
    if inverse:
        x = mul(x, np.uint64(pow(n, P - 2, P)))
    return x


_REFERENCE = False


@contextmanager
def reference_arithmetic() -> Iterator[None]:
    """Run Field64 on the reference path (Python ints in object arrays) inside the block: the
    benchmark's baseline, and the tests' second opinion on every fast result."""
    global _REFERENCE
    saved, _REFERENCE = _REFERENCE, True
    try:
        yield
    finally:
        _REFERENCE = saved


def handles(modulus: int) -> bool:
    """Whether arithmetic modulo `modulus` takes this module's fast path right now."""
    return modulus == P and not _REFERENCE
