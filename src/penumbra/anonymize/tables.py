"""k-anonymous tables by Mondrian multidimensional generalisation (LeFevre et al., ICDE 2006).

Strict top-down partitioning: a partition is cut at the (lower) median of its widest
normalised quasi-identifier, and the cut is kept only if both halves are still acceptable:
at least k rows and, when asked, distinct- or entropy-l-diverse and t-close (EMD to the
released table's sensitive distribution; ordered distance for a numeric sensitive column, equal
distance for a categorical one). Every released partition therefore satisfies every predicate.

Numeric quasi-identifiers become ranges "lo-hi" of the values present in the partition;
categorical ones become sets "{a,b}" (cut at the median of their sort order, or of the order of
an ordered pandas Categorical). Rows are written grouped by partition and sorted by the
sensitive value inside each, so the output keeps no trace of the input's row order. Columns that
are neither quasi-identifiers nor the sensitive attribute are copied unchanged: drop direct
identifiers (names, ids) before calling.

Suppression: the only partition Mondrian cannot make valid is the whole table, and that happens
for entropy-l-diversity when the table's own sensitive distribution is too skewed. Then the
rows of the most frequent sensitive value farthest from the quasi-identifier median are
suppressed until the table's entropy reaches log(l), if `suppression_limit` allows that many.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from penumbra.errors import ConfigError, DataError

from .tables_metrics import (
    PartitionCheck,
    entropy,
    equivalence_metrics,
    format_number,
)

LKind = Literal["distinct", "entropy"]


@dataclass(frozen=True)
class TableReport:
    """What was achieved; NCP counts each suppressed row as fully generalised (1)."""

    rows_in: int
    rows_out: int
    suppressed: int
    partitions: int
    k: int
    l_distinct: int
    l_entropy: float
    t: float
    ncp: float
    discernibility: int
    seconds: float
    passthrough_columns: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableResult:
    table: pd.DataFrame
    report: TableReport


def read_table(path: Path) -> pd.DataFrame:
    """A CSV as strings (no type guessing, empty cells kept as ''), with one-line errors."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table is empty") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot read as CSV ({first})") from None
    return frame


def _check_settings(
    frame: pd.DataFrame, qis: Sequence[str], sensitive: str, k: int,
    l: float | None,  # noqa: E741
    l_kind: str, t: float | None, suppression_limit: float, categorical: Sequence[str], where: str,
) -> None:  # fmt: skip
    columns = [str(c) for c in frame.columns]
    available = ", ".join(columns)
    if not qis:
        raise ConfigError("give at least one quasi-identifier column")
    for option, names in (("quasi-identifiers", qis), ("categorical", categorical)):
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise ConfigError(
                f"unknown column(s) {', '.join(unknown)} in --{option}; {where} has: {available}"
            )
    if sensitive not in columns:
        raise ConfigError(f"unknown column '{sensitive}' in --sensitive; {where} has: {available}")
    if sensitive in qis:
        raise ConfigError(f"'{sensitive}' cannot be both a quasi-identifier and --sensitive")
    if len(set(qis)) != len(qis):
        raise ConfigError("--quasi-identifiers lists a column twice")
    not_qi = [c for c in categorical if c not in qis]
    if not_qi:
        raise ConfigError(f"--categorical names non-quasi-identifier column(s) {', '.join(not_qi)}")
    if len(frame) == 0:
        raise DataError(f"{where}: the table has no rows")
    if k < 2:
        raise ConfigError(f"--k must be at least 2 (got {k}); k=1 is no anonymity")
    if k > len(frame):
        raise ConfigError(f"--k {k} is larger than the table ({len(frame)} rows in {where})")
    if l_kind not in ("distinct", "entropy"):
        raise ConfigError(f"--l-kind must be 'distinct' or 'entropy' (got '{l_kind}')")
    if l is not None:
        if not l >= 1:
            raise ConfigError(f"--l must be at least 1 (got {l})")
        if l_kind == "distinct" and l != int(l):
            raise ConfigError(f"--l must be a whole number for distinct l-diversity (got {l})")
        distinct = frame[sensitive].nunique()
        if l > distinct:
            raise ConfigError(
                f"--l {l:g} is larger than the number of distinct values of '{sensitive}' "
                f"({distinct}); lower --l"
            )
    if t is not None and not 0 < t <= 1:
        raise ConfigError(f"--t must be in (0, 1] (got {t})")
    if not 0 <= suppression_limit < 1:
        raise ConfigError(f"--suppression-limit must be in [0, 1) (got {suppression_limit})")


def _numeric(series: pd.Series, column: str, where: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any() or values.isna().any():
        row = int(np.flatnonzero((bad | values.isna()).to_numpy())[0])
        raise DataError(
            f"{where}: column '{column}' is treated as numeric but data row {row + 1} holds "
            f"'{series.iloc[row]}'; list it in --categorical or fix the value"
        )
    array = values.to_numpy(dtype=float)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array))[0])
        raise DataError(f"{where}: column '{column}' has a non-finite value in data row {row + 1}")
    return np.asarray(array, dtype=float)


def _categories(series: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """Integer codes in the column's order: an ordered Categorical's, else sorted by value."""
    if isinstance(series.dtype, pd.CategoricalDtype) and series.dtype.ordered:
        levels = [c for c in series.cat.categories if (series == c).any()]
    else:
        levels = sorted(series.unique().tolist(), key=str)
    lookup = {v: i for i, v in enumerate(levels)}
    return np.array([lookup[v] for v in series.tolist()], dtype=np.int64), levels


def _is_numeric_column(series: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(series):
        return True
    return bool(pd.to_numeric(series, errors="coerce").notna().all())


def anonymize_table(
    data: pd.DataFrame | Path | Sequence[Mapping[str, Any]],
    quasi_identifiers: Sequence[str],
    sensitive: str,
    k: int,
    l: float | None = None,  # noqa: E741 - the letter is the literature's name
    t: float | None = None,
    *,
    l_kind: LKind = "distinct",
    suppression_limit: float = 0.0,
    categorical: Sequence[str] | None = None,
    sensitive_numeric: bool | None = None,
) -> TableResult:
    """Generalise `data` so that every group of equal quasi-identifiers is acceptable.

    `categorical` lists the quasi-identifiers to treat as categories; every other one must be
    numeric (DataError otherwise). With `categorical=None` it is inferred: columns whose values
    all parse as numbers are numeric. `sensitive_numeric=None` infers the same way whether
    t-closeness uses the ordered distance (numeric) or the equal distance (categorical).
    Raises ConfigError for settings that cannot be met, DataError for unusable data.
    """
    start = time.perf_counter()
    where = str(data) if isinstance(data, Path) else "the table"
    if isinstance(data, Path):
        frame = read_table(data)
    elif isinstance(data, pd.DataFrame):
        frame = data.reset_index(drop=True)
    else:
        frame = pd.DataFrame(list(data))
    qis = list(quasi_identifiers)
    if categorical is None:
        categorical = [c for c in qis if c in frame.columns and not _is_numeric_column(frame[c])]
    _check_settings(
        frame, qis, sensitive, k, l, l_kind, t, suppression_limit, categorical, where
    )  # fmt: skip
    is_cat = np.array([c in categorical for c in qis])
    n, d = len(frame), len(qis)
    X = np.empty((n, d))
    levels: dict[int, list[Any]] = {}
    for j, column in enumerate(qis):
        if is_cat[j]:
            X[:, j], levels[j] = _categories(frame[column])
        else:
            X[:, j] = _numeric(frame[column], column, where)
    if sensitive_numeric is None:
        sensitive_numeric = _is_numeric_column(frame[sensitive])
    if sensitive_numeric:
        sens_values = _numeric(frame[sensitive], sensitive, where)
        _, S = np.unique(sens_values, return_inverse=True)
    else:
        S, _ = _categories(frame[sensitive].astype(str))
    span = np.where(is_cat, 0.0, np.ptp(X, axis=0))
    for j in levels:
        span[j] = len(levels[j]) - 1
    span = np.where(span > 0, span, 1.0)

    keep = np.ones(n, dtype=bool)
    if l is not None and l_kind == "entropy":
        keep = _suppress_for_entropy(X, span, S, l, k, suppression_limit, sensitive, n)
    released = np.flatnonzero(keep)
    # t-closeness is measured against what is released (as pycanon and any attacker see it)
    m = int(S.max()) + 1
    overall = np.bincount(S[released], minlength=m) / len(released)
    present = overall > 0
    check = PartitionCheck(
        S=S, m=m, k=k, l=l, l_kind=l_kind, t=t, overall=overall, present=present,
        ordered=bool(sensitive_numeric),
    )  # fmt: skip
    parts = _mondrian(X, is_cat, span, released, check)
    table = _generalise(frame, qis, is_cat, X, levels, parts, S)
    stats = equivalence_metrics(X, is_cat, span, parts, S, check)
    suppressed = n - len(released)
    ncp = (sum(len(p) * c for p, c in zip(parts, stats.ncp, strict=True)) + suppressed) / n
    report = TableReport(
        rows_in=n, rows_out=len(released), suppressed=suppressed, partitions=len(parts),
        k=stats.k, l_distinct=stats.l_distinct, l_entropy=stats.l_entropy, t=stats.t,
        ncp=float(ncp), discernibility=int(sum(len(p) ** 2 for p in parts) + suppressed * n),
        seconds=time.perf_counter() - start,
        passthrough_columns=[str(c) for c in frame.columns if c not in qis and c != sensitive],
        settings={
            "quasi_identifiers": qis, "sensitive": sensitive, "k": k, "l": l, "l_kind": l_kind,
            "t": t, "suppression_limit": suppression_limit, "categorical": list(categorical),
            "sensitive_numeric": bool(sensitive_numeric),
        },
    )  # fmt: skip
    return TableResult(table=table, report=report)


def _suppress_for_entropy(
    X: np.ndarray, span: np.ndarray, S: np.ndarray,
    l: float,  # noqa: E741
    k: int,
    limit: float, sensitive: str, n: int,
) -> np.ndarray:  # fmt: skip
    """Rows to keep so the whole table is entropy-l-diverse; ConfigError past the limit."""
    counts = np.bincount(S).astype(float)
    target = math.log(l)
    removed = 0
    while entropy(counts) < target - 1e-12:
        top = int(np.argmax(counts))
        counts[top] -= 1
        removed += 1
    keep = np.ones(n, dtype=bool)
    if removed == 0:
        return keep
    allowed = math.floor(limit * n)
    if removed > allowed or n - removed < k:
        raise ConfigError(
            f"entropy l-diversity with l={l:g} cannot be met: the whole table's '{sensitive}' "
            f"values are too skewed (exp(entropy) = {math.exp(entropy(np.bincount(S))):.2f}); it "
            f"needs {removed} rows ({removed / n:.1%}) suppressed but --suppression-limit allows "
            f"{allowed}; lower --l, use --l-kind distinct, or raise --suppression-limit to "
            f"{math.ceil(removed / n * 1000) / 1000:g}"
        )
    # suppress the rows of over-represented values farthest from the centre: outliers cost
    # the most generalisation.
    centre = np.median(X, axis=0)
    distance = (np.abs(X - centre) / span).sum(axis=1)
    full = np.bincount(S).astype(float)
    for value in np.flatnonzero(full > counts):
        rows = np.flatnonzero(np.equal(S, value))
        drop = rows[np.argsort(-distance[rows], kind="stable")[: int(full[value] - counts[value])]]
        keep[drop] = False
    return keep


def _mondrian(
    X: np.ndarray, is_cat: np.ndarray, span: np.ndarray, rows: np.ndarray, check: PartitionCheck
) -> list[np.ndarray]:
    """Leaves of strict Mondrian over `rows`, left to right."""
    leaves: list[np.ndarray] = []
    stack = [rows]
    while stack:
        idx = stack.pop()
        sub = X[idx]
        widths = np.ptp(sub, axis=0) / span
        for j in np.flatnonzero(is_cat):
            widths[j] = (len(np.unique(sub[:, j])) - 1) / span[j]
        for j in np.argsort(-widths, kind="stable"):
            if widths[j] <= 0:
                continue
            column = sub[:, j]
            median = np.partition(column, (len(column) - 1) // 2)[(len(column) - 1) // 2]
            left = column <= median
            if left.all():
                left = column < median
            left_rows, right_rows = idx[left], idx[~left]
            if check.ok(left_rows) and check.ok(right_rows):
                stack.append(right_rows)
                stack.append(left_rows)
                break
        else:
            leaves.append(idx)
    return leaves


def _generalise(
    frame: pd.DataFrame, qis: list[str], is_cat: np.ndarray, X: np.ndarray,
    levels: dict[int, list[Any]], parts: list[np.ndarray], S: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    integer = [
        not is_cat[j] and bool(np.all(X[:, j] == np.round(X[:, j]))) for j in range(len(qis))
    ]
    order: list[np.ndarray] = []
    labels: list[list[str]] = [[] for _ in qis]
    for part in parts:
        order.append(part[np.argsort(S[part], kind="stable")])
        for j in range(len(qis)):
            values = X[part, j]
            if is_cat[j]:
                names = [str(levels[j][int(c)]) for c in np.unique(values)]
                label = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
            else:
                lo = format_number(float(values.min()), integer[j])
                hi = format_number(float(values.max()), integer[j])
                label = lo if lo == hi else f"{lo}-{hi}"
            labels[j].extend([label] * len(part))
    rows = np.concatenate(order) if order else np.array([], dtype=np.int64)
    out = frame.iloc[rows].reset_index(drop=True)
    for j, column in enumerate(qis):
        out[column] = labels[j]
    return out
