"""Field64 (p = 2**64 - 2**32 + 1) arithmetic on numpy uint64 arrays, exactly, in native loops.

Field64 elements fit one machine word, so vectors of them live in `uint64` arrays and the
arithmetic runs in loops compiled by numba (about 10x numpy's ufuncs, which need ~20 array
passes per product for want of a 64×64→128-bit multiply). A product is formed from 32-bit
halves and reduced with `2**64 ≡ 2**32 - 1` and `2**96 ≡ -1 (mod p)`; every carry and borrow
is recovered by a comparison, never by a wider type. All results are canonical (in `[0, p)`),
so they equal the reference path's Python-int results element for element; the tests compare
both paths on random and edge-case inputs and through Prio3's test vectors. Compiled code is
cached next to this module (`cache=True`), so only the first process compiles.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U64Like = U64 | np.uint64  # a scalar broadcasts like an array

P = (1 << 64) - (1 << 32) + 1
_P = np.uint64(P)
_EPS = np.uint64((1 << 32) - 1)  # 2**64 mod p
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ONE = np.uint64(1)

_jit = numba.njit(cache=True, nogil=True)  # nogil: aggregator threads verify in parallel
_inline = numba.njit(inline="always")


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


@_inline
def _add(a: Any, b: Any) -> Any:
    s = a + b
    if s < a:  # wrapped past 2**64: add 2**64 mod p
        s += _EPS
    if s >= _P:
        s -= _P
    return s


@_inline
def _sub(a: Any, b: Any) -> Any:
    d = a - b
    if a < b:  # wrapped: d = a - b + 2**64, want a - b + p
        d -= _EPS
    return d


@_inline
def _mul(a: Any, b: Any) -> Any:
    a0 = a & _M32
    a1 = a >> _S32
    b0 = b & _M32
    b1 = b >> _S32
    lo = a0 * b0
    mid = a0 * b1
    cross = a1 * b0
    hi = a1 * b1
    mid += cross
    if mid < cross:  # 2**64 of mid is 2**96 of the product
        hi += _ONE << _S32
    low = mid << _S32
    low += lo
    if low < lo:
        hi += _ONE
    hi += mid >> _S32
    # (hi·2**64 + low) mod p: hi = hh·2**32 + hl; hh·2**96 ≡ -hh, hl·2**64 ≡ hl·(2**32 - 1)
    hh = hi >> _S32
    hl = hi & _M32
    t0 = low - hh
    if low < hh:
        t0 -= _EPS
    t1 = hl * _EPS
    t2 = t0 + t1
    if t2 < t1:
        t2 += _EPS
    if t2 >= _P:
        t2 -= _P
    return t2


@_jit
def _add_flat(a: Any, b: Any, out: Any) -> None:
    for i in range(a.size):
        out[i] = _add(a[i], b[i])


@_jit
def _sub_flat(a: Any, b: Any, out: Any) -> None:
    for i in range(a.size):
        out[i] = _sub(a[i], b[i])


@_jit
def _mul_flat(a: Any, b: Any, out: Any) -> None:
    for i in range(a.size):
        out[i] = _mul(a[i], b[i])


@_jit
def _sum_rows(a: Any, out: Any) -> None:
    for r in range(a.shape[0]):
        acc = np.uint64(0)
        for j in range(a.shape[1]):
            acc = _add(acc, a[r, j])
        out[r] = acc


@_jit
def _dot_rows(rows: Any, weights: Any, out: Any) -> None:
    for r in range(rows.shape[0]):
        acc = np.uint64(0)
        for j in range(rows.shape[1]):
            acc = _add(acc, _mul(rows[r, j], weights[j]))
        out[r] = acc


@_jit
def _ntt_rows(x: Any, twiddles: Any, offsets: Any, rev: Any, scale: Any, out: Any) -> None:
    """Decimation in frequency, the butterflies of `ntt.ntt_rows`; rows of x are overwritten."""
    b, n = x.shape
    for r in range(b):
        v = x[r]
        h = n // 2
        stage = 0
        while h >= 1:
            base = offsets[stage]
            for block in range(0, n, 2 * h):
                for j in range(h):
                    top = v[block + j]
                    bottom = v[block + j + h]
                    v[block + j] = _add(top, bottom)
                    v[block + j + h] = _mul(_sub(top, bottom), twiddles[base + j])
            h //= 2
            stage += 1
        for i in range(n):
            out[r, i] = _mul(v[rev[i]], scale)


def _elementwise(kernel: Any, a: U64, b: U64Like) -> U64:
    left, right = np.broadcast_arrays(
        np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    )
    shape = left.shape
    left = np.ascontiguousarray(left).reshape(-1)
    right = np.ascontiguousarray(right).reshape(-1)
    out = np.empty(left.size, dtype=np.uint64)
    kernel(left, right, out)
    return out.reshape(shape)


def add(a: U64, b: U64Like) -> U64:
    return _elementwise(_add_flat, a, b)


def sub(a: U64, b: U64Like) -> U64:
    return _elementwise(_sub_flat, a, b)


def neg(a: U64) -> U64:
    return sub(np.zeros_like(a), a)


def mul(a: U64, b: U64Like) -> U64:
    return _elementwise(_mul_flat, a, b)


def sum_mod(a: U64, axis: int = -1) -> U64:
    """Sum along `axis` of a 2-D array, mod p."""
    rows = np.ascontiguousarray(a if axis in (-1, 1) else a.T, dtype=np.uint64)
    out = np.empty(rows.shape[0], dtype=np.uint64)
    _sum_rows(rows, out)
    return out


def dot(rows: U64, weights: U64) -> U64:
    """Each row's inner product with `weights`, mod p."""
    rows = np.ascontiguousarray(rows, dtype=np.uint64)
    out = np.empty(rows.shape[0], dtype=np.uint64)
    _dot_rows(rows, np.ascontiguousarray(weights, dtype=np.uint64), out)
    return out


@_jit
def _batch_inverse(values: Any, out: Any) -> None:
    """out[i] = 1 / values[i] with one exponentiation (Montgomery's trick); no zero allowed."""
    n = values.size
    prefix = np.empty(n + 1, dtype=np.uint64)
    prefix[0] = np.uint64(1)
    for i in range(n):
        prefix[i + 1] = _mul(prefix[i], values[i])
    inv = np.uint64(1)  # prefix[n] ** (p - 2) by square and multiply
    base = prefix[n]
    e = _P - np.uint64(2)
    while e > 0:
        if e & _ONE:
            inv = _mul(inv, base)
        base = _mul(base, base)
        e >>= _ONE
    for i in range(n - 1, -1, -1):
        out[i] = _mul(inv, prefix[i])
        inv = _mul(inv, values[i])


@lru_cache(maxsize=64)
def root_powers(root: int, n: int) -> U64:
    """`root**0 .. root**(n-1)`, kept: NTT cosets and Lagrange nodes ask for the same ones
    on every proof. Read-only (callers must not write into it)."""
    out = powers(root, n)
    out.flags.writeable = False
    return out


def lagrange_weights(root: int, n: int, x: int) -> list[int] | int:
    """`ntt.lagrange_weights` for Field64 (`root` the principal n-th root): the weights
    `w_i (x**n - 1) / (n (x - w_i))`, or the node index if x is a node."""
    nodes = root_powers(root, n)
    diffs = sub(np.full(n, x, dtype=np.uint64), nodes)
    zero = np.flatnonzero(diffs == 0)
    if zero.size:
        return int(zero[0])
    inv = np.empty(n, dtype=np.uint64)
    _batch_inverse(diffs, inv)
    scale = (pow(x, n, P) - 1) * pow(n, P - 2, P) % P
    weights: list[int] = mul(mul(nodes, np.uint64(scale)), inv).tolist()
    return weights


def powers(base: int, n: int) -> U64:
    out = np.empty(n, dtype=np.uint64)
    acc = 1
    for i in range(n):
        out[i] = acc
        acc = acc * base % P
    return out


@lru_cache(maxsize=64)
def _stage_twiddles(
    n: int, inverse: bool, generator: int, gen_order: int
) -> tuple[U64, npt.NDArray[np.int64]]:
    """All stages' twiddles in one array (stage s at offsets[s]), h = n/2 .. 1."""
    parts, offsets, at = [], [], 0
    h = n // 2
    while h >= 1:
        w = pow(generator, gen_order // (2 * h), P)
        if inverse:
            w = pow(w, P - 2, P)
        parts.append(powers(w, h))
        offsets.append(at)
        at += h
        h //= 2
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return flat, np.array(offsets or [0], dtype=np.int64)


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
    _, n = rows.shape
    twiddles, offsets = _stage_twiddles(n, inverse, generator, gen_order)
    scale = np.uint64(pow(n, P - 2, P) if inverse else 1)
    work = np.array(rows, dtype=np.uint64, order="C", copy=True)
    out = np.empty_like(work)
    _ntt_rows(work, twiddles, offsets, _bit_reverse(n), scale, out)
    return out


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
