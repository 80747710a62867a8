"""`penumbra verify`: fixed noise seeds, outputs the last release did not select, and output
counts that differ from run_end (image and text runs). Each forgery is re-signed with the run's
own key, so only these checks can catch it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from penumbra.ledger.verify import verify_run

from .run_fixture import build_run, read_entries, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def pristine_texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("texts") / "run", texts=True)


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def texts_run(pristine_texts: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine_texts, tmp_path / "texts")
    return tmp_path / "texts"


def _failures(run: Path) -> list[str]:
    report = verify_run(run)
    assert not report.ok
    return [str(f) for f in report.failures]


def _index(entries: list[dict], kind: str) -> list[int]:  # type: ignore[type-arg]
    return [i for i, e in enumerate(entries) if e["type"] == kind]


def test_pristine_runs_verify(pristine: Path, pristine_texts: Path) -> None:
    for run in (pristine, pristine_texts):
        report = verify_run(run)
        assert report.ok, report.failures
    assert "outputs_note" not in verify_run(pristine_texts).receipt


def test_fixed_noise_seed_in_run_start(run: Path) -> None:
    entries = read_entries(run)
    entries[0]["fixed_noise_seed"] = True
    resign(run, entries)
    assert _failures(run) == [
        "entry 0 (run_start): noise drawn from a fixed seed: it can be regenerated and "
        "subtracted, so this release is not differentially private"
    ]


def test_fixed_noise_seed_in_a_release(run: Path) -> None:
    entries = read_entries(run)
    i = _index(entries, "release")[1]
    entries[i]["fixed_noise_seed"] = True
    resign(run, entries)
    (failure,) = _failures(run)
    assert failure.startswith(f"entry {i} (release, iteration 1): noise drawn from a fixed seed")


def test_fixed_noise_seed_missing(run: Path) -> None:
    entries = read_entries(run)
    del entries[_index(entries, "release")[0]]["fixed_noise_seed"]
    resign(run, entries)
    (failure,) = _failures(run)
    assert "fixed_noise_seed is None, not false" in failure


def test_output_not_selected_by_the_last_release(run: Path) -> None:
    """An output swapped for a candidate the DP selection never chose (its row re-hashed)."""
    entries = read_entries(run)
    i = _index(entries, "outputs")[0]
    last = entries[_index(entries, "release")[-1]]
    earlier = entries[_index(entries, "release")[0]]
    outsider = next(c for c in earlier["selected_ids"] if c not in last["selected_ids"])
    entries[i]["files"][2]["candidate_id"] = outsider
    resign(run, entries)
    (failure,) = _failures(run)
    assert failure.startswith(f"synthetic/000002.png: candidate '{outsider}' is not among")
    assert "not a DP output" in failure


def test_num_outputs_differs_from_run_end(run: Path) -> None:
    entries = read_entries(run)
    entries[-1]["num_outputs"] += 1
    resign(run, entries)
    assert _failures(run) == [
        f"entry {len(entries) - 1} (run_end): claims 7 outputs, the outputs entries list 6"
    ]


def test_an_output_dropped_from_the_log_and_the_folder(run: Path) -> None:
    entries = read_entries(run)
    i = _index(entries, "outputs")[0]
    dropped = entries[i]["files"].pop(0)
    (run / dropped["file"]).unlink()
    resign(run, entries)
    assert _failures(run) == [
        f"entry {len(entries) - 1} (run_end): claims 6 outputs, the outputs entries list 5"
    ]


def _rewrite_texts(run: Path, entries: list[dict], lines: list[str]) -> None:  # type: ignore[type-arg]
    path = run / "synthetic" / "texts.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    i = _index(entries, "outputs")[0]
    entries[i]["files"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    resign(run, entries)


def test_text_run_counts_the_lines_of_texts_jsonl(texts_run: Path) -> None:
    """A text run lists only texts.jsonl: an extra text, re-hashed into the log, is counted."""
    entries = read_entries(texts_run)
    lines = (texts_run / "synthetic" / "texts.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    _rewrite_texts(texts_run, entries, [*lines, json.dumps(row)])
    assert _failures(texts_run) == [
        f"entry {len(entries) - 1} (run_end): claims 6 outputs, the outputs entries list 7"
    ]


def test_text_run_with_an_unselected_candidate(texts_run: Path) -> None:
    entries = read_entries(texts_run)
    lines = (texts_run / "synthetic" / "texts.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    row["candidate_id"] = "forged-candidate"
    lines[3] = json.dumps(row)
    _rewrite_texts(texts_run, entries, lines)
    (failure,) = _failures(texts_run)
    assert failure.startswith("synthetic/texts.jsonl line 4: candidate 'forged-candidate'")


def test_text_run_with_a_modified_texts_file_is_not_counted(texts_run: Path) -> None:
    path = texts_run / "synthetic" / "texts.jsonl"
    path.write_text(path.read_text() + "{}\n")
    report = verify_run(texts_run)
    assert [str(f) for f in report.failures] == [
        "synthetic/texts.jsonl: SHA-256 differs from the log (entry 4): the file was modified"
    ]
    assert "not counted" in report.receipt["outputs_note"]


def test_a_run_with_public_n_checks_delta_against_the_bound(run: Path) -> None:
    """With privacy.public_n the exact N is not logged: δ < 1/N is checked against the bound."""
    entries = read_entries(run)
    entries[0].update(n_private=None, public_n=2500)
    resign(run, entries)
    report = verify_run(run)
    assert not any("1/N" in str(f) or "count" in str(f) for f in report.failures)
    assert report.receipt["n_private"] is None and report.receipt["public_n"] == 2500
    entries[0]["public_n"] = 1_000_000  # δ = 1e-5 is not below 1/10⁶
    resign(run, entries)
    assert "entry 0 (run_start): δ=1e-05 is not below 1/N = 1e-06" in _failures(run)
