"""`penumbra verify` on a real run directory, and every tampering it must catch."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from PIL import Image

from penumbra.cli import main
from penumbra.ledger.log import Ledger, LedgerError, canonical
from penumbra.ledger.note import generate_signer, save_private_key
from penumbra.ledger.verify import verify_run

from .run_fixture import build_run, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(pristine, copy)
    return copy


def _entries(run: Path) -> list[bytes]:
    return (run / "ledger" / "entries.jsonl").read_bytes().split(b"\n")[:-1]


def _write_entries(run: Path, lines: list[bytes]) -> None:
    (run / "ledger" / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def _messages(run: Path, **kw: str) -> list[str]:
    report = verify_run(run, **kw)  # type: ignore[arg-type]
    assert not report.ok
    return [str(f) for f in report.failures]


def test_pristine_run_verifies(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_run(pristine)
    assert report.ok, report.failures
    receipt = report.receipt
    assert receipt["iterations"] == 3 and len(receipt["epsilon_per_iteration"]) == 3
    assert receipt["epsilon_spent"] <= receipt["epsilon_target"]
    assert receipt["output_files"] == 7 and receipt["sample_lineage"]
    assert not report.signer_authenticated and report.status == "unauthenticated"
    key = pristine.parent / "holder.pub"  # as published by the data holder
    key.write_text((pristine / "ledger" / "pubkey").read_text())
    assert main(["verify", str(pristine), "--pubkey", str(key)]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main(["verify", str(pristine), "--pubkey", str(key), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["status"] == "verified" and data["exit"] == 0


def test_signing_key_is_private(pristine: Path) -> None:
    key = pristine / "private" / "ledger.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((pristine / "private").stat().st_mode) == 0o700
    assert "PRIVATE" not in (pristine / "ledger" / "pubkey").read_text()


def test_no_private_data_in_the_ledger(pristine: Path) -> None:
    from ..pe import toy

    text = (pristine / "ledger" / "entries.jsonl").read_text()
    for x, y in toy.private_points()[:50]:
        assert f"{x:.6f}" not in text and f"{y:.6f}" not in text


def test_flipped_byte_in_an_entry(run: Path) -> None:
    lines = _entries(run)
    target = 2
    entry = json.loads(lines[target])
    entry["noisy_histogram"][0] += 1.0  # still valid canonical JSON: only the Merkle root knows
    lines[target] = canonical(entry)
    _write_entries(run, lines)
    messages = _messages(run)
    assert any(m.startswith("checkpoint 00000003") and "entry 2 differs" in m for m in messages)


def test_raw_byte_flip_breaking_json(run: Path) -> None:
    data = bytearray((run / "ledger" / "entries.jsonl").read_bytes())
    data[5] ^= 0x01
    (run / "ledger" / "entries.jsonl").write_bytes(bytes(data))
    messages = _messages(run)
    assert any("entry 0 differs from what was signed" in m for m in messages)


def test_entry_removed(run: Path) -> None:
    lines = _entries(run)
    del lines[1]
    _write_entries(run, lines)
    messages = _messages(run)
    assert any("entry 1: says it is entry 2" in m for m in messages)
    assert any("differs from what was signed" in m for m in messages)


def test_entries_swapped(run: Path) -> None:
    lines = _entries(run)
    lines[1], lines[2] = lines[2], lines[1]
    _write_entries(run, lines)
    messages = _messages(run)
    assert any("entry 1: says it is entry 2" in m for m in messages)
    assert any("checkpoint 00000002" in m for m in messages)


def test_log_truncated(run: Path) -> None:
    lines = _entries(run)
    _write_entries(run, lines[:-2])
    messages = _messages(run)
    assert any("log truncated" in m for m in messages)
    assert any("no run_end entry" in m for m in messages)


def test_torn_last_line(run: Path) -> None:
    path = run / "ledger" / "entries.jsonl"
    path.write_bytes(path.read_bytes()[:-7])
    messages = _messages(run)
    assert any("torn" in m for m in messages)
    with pytest.raises(LedgerError, match="torn"):
        Ledger.open(run)  # a resumed run refuses to append after a torn line


def test_checkpoint_resigned_with_another_key(run: Path, tmp_path: Path) -> None:
    other = generate_signer("penumbra-run")
    from penumbra.ledger.note import parse_signed_note, sign_checkpoint

    newest = sorted((run / "ledger" / "checkpoints").iterdir())[-1]
    checkpoint, _ = parse_signed_note(newest.read_text())
    newest.write_text(sign_checkpoint(checkpoint, [other]))
    messages = _messages(run)
    assert any(m.startswith(f"checkpoint {newest.name}: signature invalid") for m in messages)


def test_everything_resigned_by_an_impostor_fails_with_the_holders_key(
    run: Path, pristine: Path
) -> None:
    real_key = (pristine / "ledger" / "pubkey").read_text()
    impostor_key = run / "impostor.pem"
    save_private_key(generate_signer("penumbra-run"), impostor_key)
    shutil.rmtree(run / "ledger")
    shutil.rmtree(run / "private")
    shutil.rmtree(run / "pe")
    shutil.rmtree(run / "synthetic")
    build_run(run, signing_key=impostor_key)
    assert verify_run(run).ok  # internally consistent...
    messages = _messages(run, pubkey=real_key)  # ...but not signed by the data holder
    assert any("not signed by the expected key" in m for m in messages)


def test_output_image_modified(run: Path) -> None:
    path = run / "synthetic" / "000002.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(path)
    assert _messages(run) == [
        "synthetic/000002.png: SHA-256 differs from the log (entry 4): the file was modified"
    ]


def test_extra_image_added(run: Path) -> None:
    Image.new("RGB", (8, 8)).save(run / "synthetic" / "000099.png")
    assert _messages(run) == [
        "synthetic/000099.png: in synthetic/ but not in the log (added after the run)"
    ]


def test_claimed_epsilon_edited_and_resigned(run: Path) -> None:
    """A dishonest operator edits the claimed ε and re-signs everything with the run's key."""
    lines = _entries(run)
    end = json.loads(lines[-1])
    end["epsilon_spent"] = end["epsilon_spent"] / 2
    lines[-1] = canonical(end)
    resign(run, [json.loads(line) for line in lines])  # every prefix, with the run's own key
    messages = _messages(run)
    assert len(messages) == 1 and "claims ε spent" in messages[0] and "recomputed" in messages[0]


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2
    assert "not a penumbra run directory" in capsys.readouterr().err


def test_failed_verify_exits_1(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.remove(run / "synthetic" / "000001.png")
    assert main(["verify", str(run)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "synthetic/000001.png: listed in entry 4 but missing" in out


def test_ledger_show_and_independent_proof_check(
    pristine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    from penumbra.ledger.merkle import leaf_hash, verify_inclusion
    from penumbra.ledger.note import parse_vkey, verify_signed_note

    assert main(["ledger", "show", str(pristine)]) == 0
    assert "release" in capsys.readouterr().out
    assert main(["ledger", "show", str(pristine), "--entry", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["type"] == "release"
    assert main(["ledger", "show", str(pristine), "--proof", "3"]) == 0
    proof = json.loads(capsys.readouterr().out)
    # what an auditor does with it, using only the proof, the entry and the public key
    checkpoint = verify_signed_note(
        proof["checkpoint"], parse_vkey((pristine / "ledger" / "pubkey").read_text())
    )
    assert base64.b64encode(checkpoint.root).decode() == proof["root"]
    assert verify_inclusion(
        leaf_hash(proof["entry"].encode()),
        proof["leafIdx"],
        proof["treeSize"],
        [base64.b64decode(p) for p in proof["proof"]],
        checkpoint.root,
    )
    assert main(["ledger", "show", str(pristine), "--entry", "999"]) == 2


def test_crash_and_resume_logs_each_release_once(tmp_path: Path) -> None:
    """A run that dies right after logging release 1 resumes into a ledger that verifies."""
    from penumbra.ledger import records

    real_hook = records.release_hook

    def dying_hook(ledger, *, k):  # type: ignore[no-untyped-def]
        hook = real_hook(ledger, k=k)

        def wrapped(release):  # type: ignore[no-untyped-def]
            hook(release)
            if release.iteration == 1 and not release.reused:
                raise KeyboardInterrupt("simulated crash")

        return wrapped

    from . import run_fixture

    run_fixture.release_hook = dying_hook  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            build_run(tmp_path / "run")
    finally:
        run_fixture.release_hook = real_hook
    build_run(tmp_path / "run")  # resume: same key, same origin, releases reused
    report = verify_run(tmp_path / "run")
    assert report.ok, report.failures
    kinds = [json.loads(line)["type"] for line in _entries(tmp_path / "run")]
    kinds = [kind for kind in kinds if kind != "files"]
    assert kinds == ["run_start", "release", "release", "release", "outputs", "run_end"]
