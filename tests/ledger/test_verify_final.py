"""`verify` on a final population (issue 25 item 1): each output is one variation of a parent
the last DP release (of its class) selected, the parents are that selection exactly, and the
outputs are distinct."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from penumbra.ledger.verify import verify_run
from penumbra.pe.store import read_population, write_population

from .run_fixture import build_labelled_run, build_run, read_entries, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("final") / "run", final="variations")


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


def _failures(run: Path) -> list[str]:
    report = verify_run(run)
    assert not report.ok
    return [str(f) for f in report.failures]


def _outputs(entries: list[dict]) -> list[dict]:
    return [row for e in entries if e["type"] == "outputs" for row in e["files"]
            if "candidate_id" in row]  # fmt: skip


def test_a_final_population_verifies(pristine: Path, tmp_path: Path) -> None:
    report = verify_run(pristine)
    assert report.ok, report.failures
    entries = read_entries(pristine)
    assert entries[0]["final"] == "variations"
    rows = _outputs(entries)
    final = read_population(pristine / "pe" / "population-003.parquet")
    assert [r["candidate_id"] for r in rows] == final["id"]
    assert len(set(final["payload"])) == len(rows) == 6
    last = [e for e in entries if e["type"] == "release"][-1]
    assert final["parent_id"] == last["selected_ids"]
    labelled = build_labelled_run(tmp_path / "labelled", final="variations")
    assert verify_run(labelled).ok, verify_run(labelled).failures


def test_parents_other_than_the_selection_fail(run: Path) -> None:
    """A forger with the key re-points an output's parent at a candidate the noisy votes
    did not select (e.g. one close to a private record) and re-signs everything."""
    path = run / "pe" / "population-003.parquet"
    rows = read_population(path)
    unselected = [c for c in read_population(run / "pe" / "population-002.parquet")["id"]
                  if c not in rows["parent_id"]]  # fmt: skip
    rows["parent_id"][0] = unselected[0]
    write_population(path, rows)
    entries = read_entries(run)
    for row in _outputs(entries):
        if row["candidate_id"] == rows["id"][0]:
            row["lineage"][1] = unselected[0]
    resign(run, entries)
    assert any("parents are not the candidates release entry" in f for f in _failures(run))


def test_an_output_outside_the_final_population_fails(run: Path) -> None:
    """An output logged as a candidate of an earlier population (or of none) is no DP output
    of a final population, even where the last release selected it."""
    entries = read_entries(run)
    last = [e for e in entries if e["type"] == "release"][-1]
    row = _outputs(entries)[0]
    row["candidate_id"] = last["selected_ids"][0]
    row["lineage"] = row["lineage"][1:]
    resign(run, entries)
    assert any("not in the run's final population" in f for f in _failures(run))


def test_one_final_candidate_output_twice_fails(run: Path) -> None:
    entries = read_entries(run)
    first, second = _outputs(entries)[:2]
    second.update(candidate_id=first["candidate_id"], lineage=list(first["lineage"]))
    resign(run, entries)
    assert any("is output twice" in f for f in _failures(run))


def test_a_lineage_that_skips_the_final_parent_fails(run: Path) -> None:
    entries = read_entries(run)
    row = _outputs(entries)[0]
    row["lineage"] = [row["lineage"][0], *row["lineage"][2:]]
    resign(run, entries)
    assert any("lineage does not run from" in f for f in _failures(run))


def test_a_final_population_without_its_release_fails(run: Path) -> None:
    """The ledger cut back by its last release (outputs and run_end with it) while the final
    population stays: no release stands behind the final population's parents."""
    entries = read_entries(run)
    cut = max(i for i, e in enumerate(entries) if e["type"] == "release")
    kept = [e for e in entries[:cut] if e["type"] != "files"]
    resign(run, kept)
    failures = _failures(run)
    assert any("a final population, but the ledger holds no release 2" in f for f in failures)


def test_metadata_caption_must_be_the_final_candidates(run: Path) -> None:
    meta = run / "synthetic" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows[0]["caption"] = "a caption no population holds"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = read_entries(run)
    for e in entries:
        for row in e.get("files", []) if e["type"] == "outputs" else []:
            if row["file"] == "synthetic/metadata.jsonl":
                from penumbra.ledger.tree import sha256_file

                row["sha256"] = sha256_file(meta)
    resign(run, entries, consistent=False)
    assert any("caption (not its candidate's)" in f for f in _failures(run))
