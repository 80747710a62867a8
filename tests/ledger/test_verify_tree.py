"""`verify` covers the whole published tree (issue 24, findings 3-5): every file outside
private/ is one the ledger lists with its hash, no symlink anywhere, files that restate the
ledger agree with it, and each release's k and integer votes agree with run_start."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger
from penumbra.ledger.tree import PublishedTree, TreeError, logged_tree, record_published
from penumbra.ledger.verify import verify_run
from penumbra.pe.store import read_population, write_population

from .run_fixture import build_labelled_run, build_run, read_entries, resign


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("tree") / "run")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_labelled_run(tmp_path_factory.mktemp("tree") / "run")


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


def _private_images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 2 * i, 3)).save(folder / f"patient-{i}.png")
    return folder


def _failures(run: Path) -> list[str]:
    report = verify_run(run)
    assert not report.ok
    return [str(f) for f in report.failures]


def test_the_pristine_tree_verifies_and_is_listed(pristine: Path, labelled: Path) -> None:
    for folder in (pristine, labelled):
        report = verify_run(folder)
        assert report.ok, report.failures
        tree = logged_tree(read_entries(folder))
        on_disk = {
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).parts[0] not in ("private", "ledger")
        }
        assert set(tree) == on_disk and report.receipt["published_files"] == len(on_disk)


def test_symlinked_folder_in_synthetic_is_refused(run: Path, tmp_path: Path) -> None:
    """Finding 3: `synthetic/more ->` a folder of private images verified with exit 0."""
    os.symlink(_private_images(tmp_path / "hospital"), run / "synthetic" / "more")
    assert _failures(run) == [
        "synthetic/more: a symlink in the published tree (it can reach private data)"
    ]


def test_symlinks_anywhere_in_the_tree_are_refused(run: Path, tmp_path: Path) -> None:
    private = _private_images(tmp_path / "hospital")
    (run / "renders").mkdir()
    os.symlink(private / "patient-0.png", run / "renders" / "r.png")
    os.symlink(private, run / "ledger" / "extra")
    failures = _failures(run)
    assert "renders/r.png: a symlink in the published tree (it can reach private data)" in failures
    assert "ledger/extra: a symlink in the ledger folder" in failures


def test_release_file_that_differs_from_its_entry(run: Path) -> None:
    """Finding 4: a release file whose noisy votes differ from the ledger verified."""
    path = run / "pe" / "release-001.json"
    data = json.loads(path.read_text())
    data["noisy"] = [999.0] + [0.0] * (len(data["noisy"]) - 1)
    data["noisy_votes"] = [999] + [0] * (len(data["noisy_votes"]) - 1)
    path.write_text(json.dumps(data))
    failures = _failures(run)
    assert any(f.startswith("pe/release-001.json: SHA-256 differs from the log") for f in failures)
    # and with its hash forged into the tree, the content still differs from the entry
    entries = read_entries(run)
    resign(run, entries, consistent=False)
    _rehash(run, entries, "pe/release-001.json")
    assert _failures(run) == [
        "pe/release-001.json: differs from its ledger entry "
        f"{_release_index(entries, 1)}: noisy_votes, noisy (the histogram)"
    ]


def _release_index(entries: list[dict], iteration: int) -> int:  # type: ignore[type-arg]
    return next(
        e["index"] for e in entries if e["type"] == "release" and e["iteration"] == iteration
    )


def _rehash(run: Path, entries: list[dict], name: str) -> None:  # type: ignore[type-arg]
    """A forger with the key re-lists one file's new hash in the tree."""
    from penumbra.ledger.tree import sha256_file

    for e in entries:
        for row in e.get("files") or [] if e["type"] == "files" else []:
            if row["file"] == name:
                row["sha256"] = sha256_file(run / name)
                row["size"] = (run / name).stat().st_size
    resign(run, entries, consistent=False)


@pytest.mark.parametrize(
    "name",
    ["pe/clean-votes.json", "pe/private-files.txt", "renders/000001.png", ".hidden"],
)
def test_added_files_are_refused(run: Path, name: str) -> None:
    """Finding 4: an extra "clean votes" file or a list of private file names in candidates/,
    a private image copied into renders/ verified with exit 0."""
    path = run / name
    path.parent.mkdir(exist_ok=True)
    if name.endswith(".png"):
        Image.new("RGB", (8, 8), (9, 9, 9)).save(path)
    else:
        path.write_text('{"clean": [12, 0, 3]} patient-0.png')
    assert _failures(run) == [
        f"{name}: not in the ledger's published tree (added after penumbra wrote it)"
    ]


def test_a_listed_file_that_is_gone(run: Path) -> None:
    (run / "pe" / "release-000.json").unlink()
    [failure] = _failures(run)
    assert failure.startswith("pe/release-000.json: listed in entry ")
    assert failure.endswith(" but missing")


def test_report_written_later_is_appended_and_then_checked(run: Path) -> None:
    """Finding 4: the exact N and a private file name written into report.html verified."""
    report = run / "report.html"
    report.write_text("<h1>penumbra run</h1>")
    assert _failures(run) == [
        "report.html: not in the ledger's published tree (added after penumbra wrote it)"
    ]
    [index] = record_published(run, "report")
    assert read_entries(run)[index]["files"][0]["file"] == "report.html"
    assert verify_run(run).ok, verify_run(run).failures
    assert record_published(run, "report") == []  # nothing changed: nothing logged
    report.write_text("<h1>penumbra run</h1><p>N = 2000; patient-0.png</p>")
    assert _failures(run) == [
        f"report.html: SHA-256 differs from the log (entry {index}): modified"
    ]
    record_published(run, "report")  # penumbra rewrote it: the new version is listed
    assert verify_run(run).ok
    report.unlink()
    record_published(run, "report")  # and a removal is logged as one
    assert verify_run(run).ok
    assert "report.html" not in logged_tree(read_entries(run))


def test_record_published_needs_the_runs_key(run: Path, tmp_path: Path) -> None:
    (run / "private" / "ledger.key").unlink()
    with pytest.raises(PenumbraError, match="pass the same --signing-key"):
        record_published(run, "report")
    assert not (run / "private" / "ledger.key").exists()  # no new key was made


def test_recording_refuses_a_symlink(run: Path, tmp_path: Path) -> None:
    os.symlink(_private_images(tmp_path / "hospital"), run / "renders")
    ledger = Ledger.open(run)
    with pytest.raises(TreeError, match="renders: a symlink in the run folder"):
        PublishedTree(run).record(ledger, "report")


def test_same_size_rewrite_is_rehashed(run: Path) -> None:
    """The recorder's hash cache keys on change time too: a same-size rewrite with the old
    modification time restored is still seen."""
    ledger = Ledger.open(run)
    tree = PublishedTree(run)
    assert tree.record(ledger, "check") == []
    path = run / "pe" / "release-000.json"
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"0", b"1", 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    [index] = tree.record(ledger, "check")
    assert [r["file"] for r in ledger.entries()[index]["files"]] == ["pe/release-000.json"]


def test_population_that_is_not_the_one_voted_on(run: Path) -> None:
    """A forger re-hashes a changed population into the tree: its candidates no longer hash to
    the release's candidate_hash."""
    path = run / "pe" / "population-002.parquet"
    rows = read_population(path)
    rows["payload"][0] = "0.000000,0.000000"
    write_population(path, rows)
    _rehash(run, read_entries(run), "pe/population-002.parquet")
    failures = _failures(run)
    assert failures[0] == (
        "pe/population-002.parquet: its candidates are not the ones release entry "
        f"{_release_index(read_entries(run), 2)} voted on"
    )


def test_metadata_caption_that_is_not_its_candidates(run: Path) -> None:
    """Finding 1's last part: synthetic/metadata.jsonl against the ledger's outputs entry."""
    meta = run / "synthetic" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows[1]["caption"] = "a caption no candidate had"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = read_entries(run)
    for e in entries:
        for row in e.get("files", []) if e["type"] == "outputs" else []:
            if row["file"] == "synthetic/metadata.jsonl":
                from penumbra.ledger.tree import sha256_file

                row["sha256"] = sha256_file(meta)
    _rehash(run, entries, "synthetic/metadata.jsonl")
    assert _failures(run) == [
        "synthetic/metadata.jsonl line 2: differs from the ledger's outputs entry: caption "
        "(not its candidate's)"
    ]


def test_metadata_candidate_swapped(run: Path) -> None:
    meta = run / "synthetic" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    # another candidate of the last population: with fresh noise rows 0 and 1 may be draws
    # of one candidate, and "2-0" may be row 0's own, so pick one that surely differs
    first = rows[0]["candidate_id"]
    rows[0]["candidate_id"] = "2-1" if first == "2-0" else "2-0"
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    failures = _failures(run)
    assert failures[0].startswith("synthetic/metadata.jsonl: SHA-256 differs from the log")
    assert (
        "synthetic/metadata.jsonl line 1: differs from the ledger's outputs entry: "
        "candidate_id" in failures[1]
    )


def test_release_k_differs_from_run_start(run: Path) -> None:
    """Finding 5: releases saying k = 4 under a run_start saying k = 1 verified."""
    entries = read_entries(run)
    for e in entries:
        if e["type"] == "release":
            e["k"] = 4
    resign(run, entries)
    failures = _failures(run)
    assert failures == [
        f"entry {i} (release, iteration {t}): k=4 differs from run_start's k=1"
        for t, i in enumerate(_release_index(entries, t) for t in range(3))
    ]


def test_histogram_that_is_not_its_votes(run: Path) -> None:
    """Finding 5: noisy_histogram must be the integer noisy_votes / √k."""
    entries = read_entries(run)
    i = _release_index(entries, 2)
    entries[i]["noisy_histogram"][0] += 5.0
    resign(run, entries)
    assert _failures(run) == [
        f"entry {i} (release, iteration 2): noisy_histogram is not its integer noisy_votes / √k"
    ]


def test_labelled_release_file_moved_to_another_class(labelled: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(labelled, run)
    a, b = run / "pe" / "class-0" / "release-002.json", run / "pe" / "class-1" / "release-002.json"
    a.write_bytes(b.read_bytes())
    failures = _failures(run)
    assert any(f.startswith("pe/class-0/release-002.json: SHA-256 differs") for f in failures)


# The second attack review of issue 24 (findings 2, 4, 6, 7, 8 at the ledger level).


def test_an_entry_with_fields_penumbra_never_writes_fails(run: Path) -> None:
    entries = read_entries(run)
    release = next(e for e in entries if e["type"] == "release")
    release["clean_votes"] = [12, 0, 0, 0]
    entries.insert(-1, {"schema": 1, "type": "note", "text": "N=24 private files"})
    resign(run, entries)
    failures = _failures(run)
    assert any("fields penumbra never writes: clean_votes" in f for f in failures)
    assert any("of kind 'note', which penumbra never writes" in f for f in failures)


def test_a_removed_name_that_was_never_published_fails(run: Path) -> None:
    entries = read_entries(run)
    entries.append({"schema": 1, "type": "files", "stage": "report", "files": [],
                    "removed": ["private/JohnDoe_HIV.png"]})  # fmt: skip
    resign(run, entries, consistent=False)
    assert any("removes 'private/JohnDoe_HIV.png'" in f for f in _failures(run))


def test_a_symlinked_ledger_or_private_folder_fails(run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.move(run / "ledger", moved)
    (run / "ledger").symlink_to(moved)
    assert any(f.startswith("ledger: a symlink") for f in _failures(run))


def test_ledger_origin_and_pubkey_carry_nothing_else(run: Path) -> None:
    key = (run / "ledger" / "pubkey").read_text().strip()
    with (run / "ledger" / "origin").open("a") as f:
        f.write("N=24 bag/0003.png\n")
    (run / "ledger" / "pubkey").write_text(key + "\nJohn Doe, HIV+\n")
    report = verify_run(run, pubkey=key)
    failures = [str(f) for f in report.failures]
    assert any(f.startswith("ledger/origin: differs") for f in failures)
    assert any(f.startswith("ledger/pubkey: is not the key") for f in failures)


def test_metadata_rows_carry_only_what_penumbra_writes(run: Path) -> None:
    meta = run / "synthetic" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows[0]["source"] = "bag/0003.png"
    rows.append(dict(rows[1]))
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = read_entries(run)
    resign(run, entries)  # the forger re-hashes metadata.jsonl
    failures = _failures(run)
    assert any("fields penumbra never writes: source" in f for f in failures)
    assert any("a second row for synthetic/000001.png" in f for f in failures)


@pytest.mark.parametrize(
    "damage",
    ["metadata-bytes", "pubkey-bytes", "superscript-checkpoint", "checkpoint-folder",
     "removed-not-a-list", "release-label-list"],
)  # fmt: skip
def test_crafted_input_is_a_failure_not_a_crash(run: Path, damage: str) -> None:
    """Each of these raised inside verify (UnicodeDecodeError, ValueError, IsADirectoryError,
    TypeError) instead of reporting a failure."""
    folder = run / "ledger"
    if damage == "metadata-bytes":
        with (run / "synthetic" / "metadata.jsonl").open("ab") as f:
            f.write(b"\xff\xfe{\n")
    elif damage == "pubkey-bytes":
        (folder / "pubkey").write_bytes(b"\xff\xfe")
    elif damage == "superscript-checkpoint":
        newest = max((folder / "checkpoints").iterdir())
        shutil.copy(newest, folder / "checkpoints" / "²")
    elif damage == "checkpoint-folder":
        (folder / "checkpoints" / "00000099").mkdir()
    else:
        entries = read_entries(run)
        if damage == "removed-not-a-list":
            next(e for e in entries if e["type"] == "files")["removed"] = 5
        else:
            next(e for e in entries if e["type"] == "release")["label"] = [0]
        resign(run, entries, consistent=False)
    assert _failures(run)


def test_record_published_signs_only_what_penumbra_just_wrote(run: Path) -> None:
    """Second review, finding 1: logging an evaluation signed every file in the folder, so a
    private image dropped into renders/ after the run verified once `--evaluate` ran."""
    _private_images(run / "renders" / "leak")
    (run / "evaluation.json").write_text("{}")
    before = read_entries(run)
    with pytest.raises(TreeError, match="renders/leak/patient-0.png.*and 2 more"):
        record_published(run, "evaluation")
    assert read_entries(run) == before  # nothing signed
    shutil.rmtree(run / "renders" / "leak")
    record_published(run, "evaluation")
    assert verify_run(run).ok
