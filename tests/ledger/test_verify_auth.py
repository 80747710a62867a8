"""`penumbra verify` authenticates the signer only with a key obtained out of band (DESIGN.md
invariant 10): without --pubkey it says so and exits 3, whatever the run's own key proves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from penumbra.cli import main
from penumbra.ledger.note import generate_signer
from penumbra.ledger.verify import verify_run

from .run_fixture import build_run, read_entries, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def holder_key(pristine: Path, tmp_path: Path) -> Path:
    """The key the data holder published, kept apart from the run."""
    path = tmp_path / "holder.pub"
    path.write_text((pristine / "ledger" / "pubkey").read_text())
    return path


def _one_line(out: str, needle: str) -> str:
    lines = [line for line in out.splitlines() if needle in line]
    assert len(lines) == 1, out
    return lines[0]


def test_without_pubkey_exits_3_signer_not_authenticated(
    pristine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(pristine)]) == 3
    line = _one_line(capsys.readouterr().out, "integrity verified")
    assert "signer not authenticated" in line and "--pubkey" in line
    assert "the key the data holder published" in line
    assert main(["verify", str(pristine), "--json"]) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["status"] == "unauthenticated" and data["exit"] == 3
    assert data["signer_authenticated"] is False and "--pubkey" in data["authentication"]


def test_with_the_published_pubkey_exits_0(
    pristine: Path, holder_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(pristine), "--pubkey", str(holder_key)]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "signer authenticated" in out and "not authenticated" not in out
    report = verify_run(pristine, pubkey=holder_key.read_text())
    assert report.ok and report.authenticated and report.cosigners_authenticated is None


def test_pubkey_given_as_the_key_itself(pristine: Path, holder_key: Path) -> None:
    assert main(["verify", str(pristine), "--pubkey", holder_key.read_text().strip()]) == 0


def test_trust_run_key_exits_0_but_still_says_not_authenticated(
    pristine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(pristine), "--trust-run-key"]) == 0
    line = _one_line(capsys.readouterr().out, "integrity verified")
    assert "signer not authenticated" in line


def test_forged_ledger_resigned_with_a_fresh_key(
    run: Path, holder_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The headline attack: rewrite the log (here: claim another embedding model), re-sign
    every checkpoint with a fresh key and leave that key in ledger/pubkey. Every check that
    uses only the run holds; only the data holder's published key exposes it."""
    entries = read_entries(run)
    entries[0]["models"][0]["uri"] = "toy:points-audited"
    forger = generate_signer("penumbra-run")
    resign(run, entries, signer=forger)
    report = verify_run(run)
    assert report.ok and not report.signer_authenticated  # internally consistent...
    assert main(["verify", str(run)]) == 3  # ...and verify says it cannot tell who signed
    assert "signer not authenticated" in capsys.readouterr().out
    assert main(["verify", str(run), "--trust-run-key"]) == 0  # explicitly opted in
    capsys.readouterr()
    assert main(["verify", str(run), "--pubkey", str(holder_key)]) == 1  # the holder's key
    out = capsys.readouterr().out
    assert "FAILED" in out and "not signed by the expected key" in out


def test_failures_exit_1_with_or_without_a_key(
    run: Path, holder_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run / "synthetic" / "000001.png").unlink()
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "signer not authenticated" in out
    assert main(["verify", str(run), "--trust-run-key"]) == 1
    assert main(["verify", str(run), "--pubkey", str(holder_key)]) == 1


def test_bad_keys_exit_2(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(pristine), "--pubkey", str(tmp_path / "none.pub")]) == 2
    assert "neither a key file nor a key" in capsys.readouterr().err
    (tmp_path / "empty.pub").write_text("")
    assert main(["verify", str(pristine), "--pubkey", str(tmp_path / "empty.pub")]) == 2
    assert main(["verify", str(pristine), "--cosigner", "not-a-key"]) == 2
    assert "--cosigner not-a-key" in capsys.readouterr().err
