"""`penumbra verify` recomputes ε with the accountant of the noise the run drew: the discrete
Gaussian's exact PLD (with the logged k) for local runs; a ledger that claims another
accountant, or rounds ε down with the continuous curve, is caught. Forgeries are re-signed
with the run's own key, so only the accounting check can catch them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from penumbra.ledger.verify import verify_run
from penumbra.privacy import discrete_gaussian_epsilon

from .run_fixture import build_run, read_entries, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


def test_epsilon_is_recomputed_with_the_discrete_gaussian_pld(pristine: Path) -> None:
    report = verify_run(pristine)
    assert report.ok, report.failures
    start = read_entries(pristine)[0]
    assert report.receipt["accountant"] == start["accountant"] == "discrete-gaussian-pld"
    expected = [
        discrete_gaussian_epsilon(start["sigma"], t + 1, start["delta"], start["k"])
        for t in range(len(report.receipt["epsilon_per_iteration"]))
    ]
    assert report.receipt["epsilon_per_iteration"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("accountant", "message"),
    [("renyi-made-up", "unknown accountant"), ("discrete-gaussian-zcdp", "without an mpc_setup")],
)
def test_a_claimed_accountant_must_be_the_runs(run: Path, accountant: str, message: str) -> None:
    entries = read_entries(run)
    entries[0]["accountant"] = accountant
    resign(run, entries)
    report = verify_run(run)
    assert any(message in str(f) for f in report.failures), report.failures


def test_understated_epsilon_is_caught(run: Path) -> None:
    entries = read_entries(run)
    releases = [e for e in entries if e["type"] == "release"]
    releases[-1]["cumulative_epsilon"] *= 0.9
    resign(run, entries)
    failures = [str(f) for f in verify_run(run).failures]
    assert any("claims cumulative ε" in f for f in failures), failures


def test_k_must_be_a_positive_integer(run: Path) -> None:
    entries = read_entries(run)
    entries[0]["k"] = 0
    resign(run, entries)
    assert any("k=0" in str(f) for f in verify_run(run).failures)
