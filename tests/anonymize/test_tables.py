"""Mondrian k-anonymity / l-diversity / t-closeness, checked against pycanon."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from penumbra.anonymize.tables import anonymize_table
from penumbra.anonymize.tables_metrics import emd
from penumbra.cli import main
from penumbra.errors import ConfigError, DataError

QI = ["age", "zipcode", "sex", "education"]


def census(n: int, seed: int = 0) -> pd.DataFrame:
    """Census-like rows: skewed ages and diseases so constraints bind."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": np.clip(rng.normal(40, 13, n).round(), 17, 90).astype(int),
            "zipcode": rng.choice(np.arange(47600, 47700), n),
            "sex": rng.choice(["F", "M"], n),
            "education": rng.choice(
                ["HS", "Bachelors", "Masters", "PhD", "None"], n, p=[0.35, 0.3, 0.15, 0.05, 0.15]
            ),
            "disease": rng.choice(
                ["flu", "cancer", "hiv", "diabetes", "asthma", "none"],
                n,
                p=[0.2, 0.1, 0.05, 0.15, 0.1, 0.4],
            ),
        }
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return census(2000)


def test_hand_built_table_has_the_known_partition() -> None:
    # Two clear clusters on age; k=2 must split exactly between them and nowhere else
    # (each cluster has 2 rows, so a further cut would leave a single row).
    rows = [
        {"age": 20, "zip": 100, "s": "a"},
        {"age": 21, "zip": 101, "s": "b"},
        {"age": 60, "zip": 100, "s": "a"},
        {"age": 62, "zip": 101, "s": "b"},
    ]
    result = anonymize_table(rows, ["age", "zip"], "s", k=2)
    out = result.table
    assert sorted(out["age"]) == ["20-21", "20-21", "60-62", "60-62"]
    assert set(out["zip"]) == {"100-101"}
    r = result.report
    assert (r.k, r.partitions, r.suppressed) == (2, 2, 0)
    assert r.discernibility == 2**2 + 2**2
    # NCP: age ranges 1/42 and 2/42, zip range 1/1 for everyone
    assert r.ncp == pytest.approx(((1 / 42 + 1) / 2 * 2 + (2 / 42 + 1) / 2 * 2) / 4)


def test_distinct_l_blocks_a_split_that_k_alone_allows() -> None:
    rows = [{"age": a, "s": s} for a, s in [(1, "x"), (2, "x"), (8, "y"), (9, "y")]]
    assert anonymize_table(rows, ["age"], "s", k=2).report.partitions == 2
    both = anonymize_table(rows, ["age"], "s", k=2, l=2)
    assert both.report.partitions == 1
    assert set(both.table["age"]) == {"1-9"}
    assert both.report.l_distinct == 2


def test_categorical_sets_and_row_order_not_kept() -> None:
    rows = [
        {"edu": e, "s": s}
        for e, s in [("b", "2"), ("a", "1"), ("c", "1"), ("d", "2"), ("a", "2"), ("d", "1")]
    ]
    out = anonymize_table(rows, ["edu"], "s", k=3, categorical=["edu"]).table
    assert list(out["edu"]) == ["{a,b}"] * 3 + ["{c,d}"] * 3
    # within a class rows are sorted by the sensitive value, not kept in input order
    assert list(out["s"]) == ["1", "2", "2", "1", "1", "2"]


def test_emd_definitions() -> None:
    p, q = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    assert emd(p, q, ordered=True) == pytest.approx(1.0)
    assert emd(p, np.array([0, 1.0, 0]), ordered=True) == pytest.approx(0.5)
    assert emd(p, q, ordered=False) == pytest.approx(1.0)
    assert emd(np.array([0.5, 0.5]), np.array([0.25, 0.75]), ordered=False) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "settings",
    [
        {"k": 5},
        {"k": 4, "l": 3},
        {"k": 5, "l": 3, "l_kind": "entropy"},
        {"k": 3, "t": 0.2},
        {"k": 5, "l": 2, "t": 0.3},
    ],
)
def test_achieved_privacy_agrees_with_pycanon(
    table: pd.DataFrame, settings: dict[str, object]
) -> None:
    from pycanon import anonymity

    result = anonymize_table(table, QI, "disease", **settings)  # type: ignore[arg-type]
    out, r = result.table, result.report
    assert r.rows_out == len(out) == len(table)
    assert anonymity.k_anonymity(out, QI) == r.k >= settings["k"]  # type: ignore[operator]
    assert anonymity.l_diversity(out, QI, ["disease"]) == r.l_distinct
    # pycanon truncates exp(min entropy) to an int; exp(log 3) may land on 2.9999...
    ent = anonymity.entropy_l_diversity(out, QI, ["disease"])
    assert math.floor(r.l_entropy * (1 - 1e-9)) <= ent <= r.l_entropy * (1 + 1e-9)
    assert anonymity.t_closeness(out, QI, ["disease"]) == pytest.approx(r.t, abs=1e-9)
    if "l" in settings and settings.get("l_kind", "distinct") == "distinct":
        assert r.l_distinct >= settings["l"]  # type: ignore[operator]
    if settings.get("l_kind") == "entropy":
        assert r.l_entropy >= settings["l"] * (1 - 1e-9)  # type: ignore[operator]
    if "t" in settings:
        assert r.t <= settings["t"] + 1e-12  # type: ignore[operator]
    # the generalisation really is a generalisation: each original age lies in its range
    assert out["sex"].isin(["F", "M", "{F,M}"]).all()
    # stronger requirements cost information
    if settings == {"k": 5}:
        assert 0 < r.ncp < anonymize_table(table, QI, "disease", k=50).report.ncp


def test_ranges_cover_the_original_values(table: pd.DataFrame) -> None:
    out = anonymize_table(table, QI, "disease", k=7).table
    originals = sorted(table["age"])
    lows, highs = [], []
    for label in out["age"]:
        lo, _, hi = str(label).partition("-")
        lows.append(int(lo))
        highs.append(int(hi or lo))
    assert min(lows) == originals[0] and max(highs) == originals[-1]
    assert sorted(out["disease"]) == sorted(table["disease"])


def test_numeric_sensitive_uses_ordered_distance() -> None:
    from pycanon import anonymity

    frame = census(600, seed=3)
    frame["income"] = np.random.default_rng(4).integers(10, 30, len(frame))
    result = anonymize_table(frame, ["age", "zipcode"], "income", k=5, t=0.15)
    assert result.report.settings["sensitive_numeric"] is True
    got = anonymity.t_closeness(result.table, ["age", "zipcode"], ["income"])
    assert got == pytest.approx(result.report.t, abs=1e-9) and got <= 0.15 + 1e-12


def test_entropy_l_suppresses_the_skewed_value_within_the_limit() -> None:
    rng = np.random.default_rng(1)
    n = 400
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 70, n),
            "disease": rng.choice(["none", "flu", "hiv"], n, p=[0.8, 0.15, 0.05]),
        }
    )
    with pytest.raises(ConfigError, match=r"raise --suppression-limit to 0\.\d+"):
        anonymize_table(frame, ["age"], "disease", k=5, l=2, l_kind="entropy")
    result = anonymize_table(
        frame, ["age"], "disease", k=5, l=2, l_kind="entropy", suppression_limit=0.6
    )
    r = result.report
    assert 0 < r.suppressed <= 0.6 * n and r.rows_out == n - r.suppressed
    assert r.l_entropy >= 2 * (1 - 1e-9)
    kept = result.table["disease"].value_counts()
    assert kept["flu"] == (frame["disease"] == "flu").sum()  # only 'none' rows were dropped
    assert r.discernibility >= r.suppressed * n


def test_library_errors() -> None:
    rows = [{"a": 1, "s": "x"}, {"a": 2, "s": "y"}]
    with pytest.raises(ConfigError, match="unknown column"):
        anonymize_table(rows, ["nope"], "s", k=2)
    with pytest.raises(DataError, match="numeric"):
        anonymize_table([{"a": "q", "s": "x"}, {"a": 1, "s": "y"}], ["a"], "s", k=2, categorical=[])


# ---- CLI: every user error is exit 2, one line, no output ----------------------------------


@pytest.fixture()
def csv(tmp_path: Path, table: pd.DataFrame) -> Path:
    path = tmp_path / "in.csv"
    table.iloc[:300].to_csv(path, index=False)
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["anonymize", "table", *args])
    out, err = capsys.readouterr()
    return code, out, err


BASE = ["--quasi-identifiers", "age,zipcode,sex,education", "--sensitive", "disease"]


def test_cli_writes_table_and_report(
    tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "out.csv", tmp_path / "r.json"
    code, stdout, err = _cli(
        capsys, str(csv), str(out), *BASE, "--k", "4", "--l", "2",
        "--categorical", "sex,education", "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    written = pd.read_csv(out, dtype=str)
    assert len(written) == 300 and list(written.columns) == list(pd.read_csv(csv).columns)
    data = json.loads(report.read_text())
    assert data["k"] >= 4 and data["l_distinct"] >= 2 and "achieved k" in stdout


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--k", "1"], "at least 2"),
        (["--k", "301"], "larger than the table"),
        (["--k", "3", "--l", "7"], "distinct values of 'disease'"),
        (["--k", "3", "--t", "0"], "(0, 1]"),
        (["--k", "3", "--t", "1.5"], "(0, 1]"),
        (["--k", "3", "--categorical", "sex"], "'education' is treated as numeric"),
        (["--k", "3", "--l", "6", "--l-kind", "entropy", "--categorical", "sex,education"],
         "cannot be met"),
    ],
)  # fmt: skip
def test_cli_setting_errors(
    tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    out = tmp_path / "out.csv"
    code, _, err = _cli(capsys, str(csv), str(out), *BASE, *extra)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_unknown_column_lists_available(
    tmp_path: Path, csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.csv"
    code, _, err = _cli(
        capsys, str(csv), str(out), "--quasi-identifiers", "age,zip", "--sensitive", "disease",
        "--k", "2",
    )  # fmt: skip
    assert code == 2 and "zip" in err and "age, zipcode, sex, education, disease" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "content", [None, "", "age,zipcode,sex,education,disease\n", b"\xff\xfe\x00"]
)
def test_cli_file_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    if isinstance(content, bytes):
        src.write_bytes(content)
    elif content is not None:
        src.write_text(content)
    code, _, err = _cli(capsys, str(src), str(out), *BASE, "--k", "2")
    assert code == 2, err
    assert str(src) in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
