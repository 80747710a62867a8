"""Number theoretic transform and the Lagrange-basis polynomial operations of the draft.

Polynomials in the FLP live in the Lagrange basis over the first n powers of the principal
n-th root of unity (draft section "Polynomial Representation"). The functions here return
exactly what the draft's `Lagrange` class returns, computed faster:

- transforms run on many polynomials at once as numpy object arrays of Python ints (the
  arithmetic stays exact; the per-element loop runs in C);
- evaluation at a point uses the closed-form Lagrange weights of roots of unity, a dot
  product per polynomial instead of the draft's quadratic-looking recurrence;
- extending n-1 values to n uses the fact that the missing top coefficient is zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from penumbra.mpc import goldilocks
from penumbra.mpc.field import Field

# Rows of field elements: Python ints in object arrays, or uint64 on the Field64 fast path.
ObjArray = npt.NDArray[Any]


def next_power_of_2(x: int) -> int:
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


def assert_power_of_2(x: int) -> int:
    if x < 1 or x & (x - 1):
        raise ValueError(f"{x} is not a power of two")
    return x.bit_length() - 1


_TWIDDLES: dict[tuple[int, int, bool], tuple[ObjArray, ...]] = {}
_COSETS: dict[tuple[int, int], ObjArray] = {}


def _stage_twiddles(field: type[Field], n: int, inverse: bool) -> tuple[ObjArray, ...]:
    """Per stage of a decimation-in-frequency NTT: powers of the (2h)-th root, h = n/2 .. 1."""
    key = (field.MODULUS, n, inverse)
    if key in _TWIDDLES:
        return _TWIDDLES[key]
    p = field.MODULUS
    out = []
    h = n // 2
    while h >= 1:
        w = field.nth_root(2 * h)
        if inverse:
            w = pow(w, p - 2, p)
        tw = [1] * h
        for j in range(1, h):
            tw[j] = tw[j - 1] * w % p
        out.append(np.array(tw, dtype=object))
        h //= 2
    _TWIDDLES[key] = tuple(out)
    return _TWIDDLES[key]


@lru_cache(maxsize=256)
def _bit_reverse(n: int) -> npt.NDArray[np.intp]:
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)])


def ntt_rows(field: type[Field], rows: ObjArray, inverse: bool = False) -> ObjArray:
    """NTT of every row of a (batch, n) object array; `inverse` also divides by n."""
    p = field.MODULUS
    b, n = rows.shape
    assert_power_of_2(n)
    if goldilocks.handles(p):
        fast = goldilocks.ntt_rows(
            goldilocks.asarray(rows), field.GENERATOR, field.GEN_ORDER, inverse
        )
        as_objects: ObjArray = fast.astype(object)
        return as_objects
    x = rows.copy()
    h = n // 2
    for tw in _stage_twiddles(field, n, inverse):
        v = x.reshape(b, n // (2 * h), 2, h)
        top = v[:, :, 0, :]
        bot = v[:, :, 1, :]
        # Sums are left unreduced (they grow by one bit per stage); products are reduced.
        s = top + bot
        d = (top - bot) * tw % p
        v[:, :, 0, :] = s
        v[:, :, 1, :] = d
        h //= 2
    x = x[:, _bit_reverse(n)]
    if inverse:
        x = x * pow(n, p - 2, p)
    reduced: ObjArray = x % p
    return reduced


def _as_rows(polys: Sequence[Sequence[int]], n: int) -> ObjArray:
    rows = np.zeros((len(polys), n), dtype=object)
    for i, poly in enumerate(polys):
        if len(poly) > n:
            raise ValueError(f"polynomial of length {len(poly)} does not fit {n} points")
        rows[i, : len(poly)] = list(poly)
    return rows


def ntt(field: type[Field], coeffs: Sequence[int], n: int, set_s: bool = False) -> list[int]:
    """`v[i] = p(Wn**i)`, or `p(s * Wn**i)` with `s` the principal 2n-th root if `set_s`."""
    rows = _as_rows([coeffs], n)
    if set_s:
        rows = rows * _coset_powers(field, n) % field.MODULUS
    return [int(x) for x in ntt_rows(field, rows)[0]]


def inv_ntt(field: type[Field], values: Sequence[int], n: int) -> list[int]:
    """Monomial coefficients of the polynomial taking `values` at the powers of Wn."""
    return [int(x) for x in ntt_rows(field, _as_rows([values], n), inverse=True)[0]]


def _coset_powers(field: type[Field], n: int) -> ObjArray:
    key = (field.MODULUS, n)
    if key in _COSETS:
        return _COSETS[key]
    s = field.nth_root(2 * n)
    p = field.MODULUS
    out = [1] * n
    for i in range(1, n):
        out[i] = out[i - 1] * s % p
    _COSETS[key] = np.array(out, dtype=object)
    return _COSETS[key]


def double_evaluations_rows(field: type[Field], rows: ObjArray) -> ObjArray:
    """For each row of n evaluations at the n-th roots, its 2n evaluations at the 2n-th roots."""
    b, n = rows.shape
    p = field.MODULUS
    if goldilocks.handles(p):
        doubled: ObjArray = double_evaluations_fast(field, goldilocks.asarray(rows)).astype(object)
        return doubled
    coeffs = ntt_rows(field, rows, inverse=True)
    odd = ntt_rows(field, coeffs * _coset_powers(field, n) % p)
    out = np.empty((b, 2 * n), dtype=object)
    out[:, 0::2] = rows
    out[:, 1::2] = odd
    return out


def double_evaluations_fast(field: type[Field], rows: goldilocks.U64) -> goldilocks.U64:
    """`double_evaluations_rows` on uint64 rows of Field64 elements, staying in uint64."""
    b, n = rows.shape
    g, order = field.GENERATOR, field.GEN_ORDER
    coeffs = goldilocks.ntt_rows(rows, g, order, inverse=True)
    coset = goldilocks.root_powers(field.nth_root(2 * n), n)
    odd = goldilocks.ntt_rows(goldilocks.mul(coeffs, coset[np.newaxis, :]), g, order)
    out = np.empty((b, 2 * n), dtype=np.uint64)
    out[:, 0::2] = rows
    out[:, 1::2] = odd
    return out


def double_evaluations(field: type[Field], poly: Sequence[int]) -> list[int]:
    rows = _as_rows([poly], len(poly))
    return [int(x) for x in double_evaluations_rows(field, rows)[0]]


def poly_mul(field: type[Field], left: Sequence[int], right: Sequence[int]) -> list[int]:
    """Product of two Lagrange-basis polynomials of equal power-of-two length (2n values)."""
    if len(left) != len(right):
        raise ValueError("mismatched polynomial lengths")
    rows = double_evaluations_rows(field, _as_rows([left, right], len(left)))
    return [int(x) for x in rows[0] * rows[1] % field.MODULUS]


def lagrange_weights(field: type[Field], n: int, x: int) -> list[int] | int:
    """Weights `L_i(x)` of the n-th-root-of-unity Lagrange basis, or the node index if x is one.

    `L_i(x) = w_i * (x**n - 1) / (n * (x - w_i))` for the nodes `w_i = Wn**i`.
    """
    p = field.MODULUS
    x %= p
    if goldilocks.handles(p):
        return goldilocks.lagrange_weights(field.nth_root(n), n, x)
    nodes = field.nth_root_powers(n)
    diffs = [(x - w) % p for w in nodes]
    if 0 in diffs:
        return diffs.index(0)
    # Batch inversion of the differences: one modular exponentiation in all.
    prefix = [1] * (n + 1)
    for i, d in enumerate(diffs):
        prefix[i + 1] = prefix[i] * d % p
    inv_all = pow(prefix[n], p - 2, p)
    inv = [0] * n
    for i in range(n - 1, -1, -1):
        inv[i] = inv_all * prefix[i] % p
        inv_all = inv_all * diffs[i] % p
    scale = (pow(x, n, p) - 1) * pow(n, p - 2, p) % p
    return [scale * w % p * d % p for w, d in zip(nodes, inv, strict=True)]


def poly_eval_batched(
    field: type[Field], polys: Sequence[Sequence[int]] | ObjArray, x: int
) -> list[int]:
    """Evaluate each Lagrange-basis polynomial (values at the n-th roots, n = max length) at x."""
    n = len(polys[0])
    if any(len(q) != n for q in polys):
        raise ValueError("polynomials must have the same number of evaluations")
    assert_power_of_2(n)
    weights = lagrange_weights(field, n, x)
    if isinstance(weights, int):
        return [int(q[weights]) for q in polys]
    rows = polys if isinstance(polys, np.ndarray) else _as_rows(polys, n)
    if goldilocks.handles(field.MODULUS):
        values: list[int] = goldilocks.dot(
            goldilocks.asarray(rows), goldilocks.asarray(weights)
        ).tolist()
        return values
    out = rows.dot(np.array(weights, dtype=object))
    return [int(v) % field.MODULUS for v in out]


def poly_eval(field: type[Field], poly: Sequence[int], x: int) -> int:
    return poly_eval_batched(field, [poly], x)[0]


def poly_eval_monomial(field: type[Field], coeffs: Sequence[int], x: int) -> int:
    p = field.MODULUS
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % p
    return acc


def extend_values_to_power_of_2(field: type[Field], values: list[int], n: int) -> None:
    """Append evaluations (in place) of the lowest-degree interpolant until there are n."""
    assert_power_of_2(n)
    m = len(values)
    if m > n:
        raise ValueError("more values than points")
    if m == n:
        return
    p = field.MODULUS
    nodes = field.nth_root_powers(n)
    if m == n - 1:
        # Degree <= n-2 means the coefficient of X**(n-1), (1/n) * sum v_i * w_i, is zero.
        acc = sum(v * w for v, w in zip(values, nodes, strict=False)) % p
        values.append((-acc * nodes[1]) % p)
        return
    # General case: the draft's incremental barycentric extension (quadratic, rarely used).
    w = [0] * n
    for i in range(m):
        prod = 1
        for j in range(m):
            if i != j:
                prod = prod * (nodes[i] - nodes[j]) % p
        w[i] = prod
    for k in range(m, n):
        for i in range(k):
            w[i] = w[i] * (nodes[i] - nodes[k]) % p
        y_num, y_den = 0, 1
        for i, v in enumerate(values):
            y_num = (y_num * w[i] + y_den * v) % p
            y_den = y_den * w[i] % p
        prod = 1
        for j in range(k):
            prod = prod * (nodes[k] - nodes[j]) % p
        w[k] = prod
        values.append((-w[k] * y_num * pow(y_den, p - 2, p)) % p)
