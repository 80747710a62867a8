"""`penumbra verify` on labelled (class-conditional) runs: parallel composition over classes,
the DP class-count release, per-class releases and outputs. Each forgery is re-signed with the
run's own key, so only the labelled-run checks can catch it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from penumbra.ledger.inspect import summary_rows
from penumbra.ledger.verify import verify_run
from penumbra.pe.classes import class_output_counts, class_weights
from penumbra.privacy import discrete_gaussian_epsilon

from .run_fixture import CLASSES, build_labelled_run, read_entries, resign

FRACTIONS = {"cats": 0.5, "dogs": 0.25, "owls": 0.25}
SEED_FAILURE = (
    "noise drawn from a fixed seed: it can be regenerated and subtracted, so this release is "
    "not differentially private"
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_labelled_run(tmp_path_factory.mktemp("labelled") / "run")


@pytest.fixture(scope="module")
def pristine_public(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_labelled_run(tmp_path_factory.mktemp("public") / "run", fractions=FRACTIONS)


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "run")
    return tmp_path / "run"


def _failures(run: Path) -> list[str]:
    report = verify_run(run)
    assert not report.ok
    return [str(f) for f in report.failures]


def _releases(entries: list[dict[str, Any]], label: int) -> list[int]:
    return [i for i, e in enumerate(entries) if e["type"] == "release" and e.get("label") == label]


def _index(entries: list[dict[str, Any]], kind: str) -> int:
    (i,) = [i for i, e in enumerate(entries) if e["type"] == kind]
    return i


def _epsilon(start: dict[str, Any], steps: int, extra: int = 1) -> float:
    return discrete_gaussian_epsilon(start["sigma"], steps, start["delta"], start["k"], extra=extra)


def test_labelled_run_verifies_with_parallel_composition(pristine: Path) -> None:
    report = verify_run(pristine)
    assert report.ok, report.failures
    receipt = report.receipt
    entries = read_entries(pristine)
    start, counts = entries[0], entries[_index(entries, "class_counts")]
    assert receipt["composition"] == "parallel over classes"
    assert receipt["classes"] == list(CLASSES) and receipt["class_counts"] == "dp"
    assert receipt["releases_per_class"] == [3, 3, 3]
    assert receipt["class_noisy_counts"] == counts["noisy_counts"]
    weights = class_weights(CLASSES, noisy_counts=counts["noisy_counts"])
    assert receipt["class_output_counts"] == class_output_counts(weights, 8)
    one_class = _epsilon(start, 3)
    assert receipt["epsilon_spent"] == pytest.approx(one_class, rel=1e-12)
    assert entries[-1]["epsilon_spent"] == pytest.approx(one_class, rel=1e-12)
    assert receipt["epsilon_per_iteration"] == pytest.approx(
        [_epsilon(start, t) for t in (1, 2, 3)], rel=1e-12
    )
    sequential = _epsilon(start, 3 * len(CLASSES))  # what summing over the classes would give
    assert one_class < sequential
    assert one_class <= start["epsilon_target"] < sequential
    assert receipt["sample_lineage"][0]["label"] == 0


def test_public_fractions_run_verifies(pristine_public: Path) -> None:
    report = verify_run(pristine_public)
    assert report.ok, report.failures
    start = read_entries(pristine_public)[0]
    assert report.receipt["class_counts"] == "public"
    assert report.receipt["class_fractions"] == FRACTIONS
    assert report.receipt["class_output_counts"] == [4, 2, 2]
    assert report.receipt["epsilon_spent"] == pytest.approx(_epsilon(start, 3, extra=0))


def test_public_fractions_edited(pristine_public: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(pristine_public, tmp_path / "run"))
    entries = read_entries(run)
    entries[0]["class_fractions"] = {"cats": 0.25, "dogs": 0.25, "owls": 0.5}
    resign(run, entries)
    assert _failures(run) == [
        "outputs of class 0 (cats): 4 outputs, but the public class fractions "
        "{'cats': 0.25, 'dogs': 0.25, 'owls': 0.5} allocate 2 of the 8",
        "outputs of class 2 (owls): 2 outputs, but the public class fractions "
        "{'cats': 0.25, 'dogs': 0.25, 'owls': 0.5} allocate 4 of the 8",
    ]


def test_release_epsilon_without_the_count_release(run: Path) -> None:
    entries = read_entries(run)
    i = _releases(entries, 1)[0]
    entries[i]["cumulative_epsilon"] = _epsilon(entries[0], 1, extra=0)
    resign(run, entries)
    (failure,) = _failures(run)
    assert failure.startswith(f"entry {i} (release, class 1, iteration 0): claims cumulative ε=")
    sigma = entries[0]["sigma"]
    assert failure.endswith(
        f"from σ={sigma:g}, 1 release of class 1 (dogs) and the DP class-count release, δ=1e-05"
    )


def test_class_counts_entry_removed(run: Path) -> None:
    entries = read_entries(run)
    del entries[_index(entries, "class_counts")]
    resign(run, entries)
    assert _failures(run) == [
        "log: run_start says the class counts are a DP release (class_counts 'dp') but no "
        "class_counts entry logs it: the outputs per class are unaccounted"
    ]


def test_class_counts_with_a_fixed_noise_seed(run: Path) -> None:
    entries = read_entries(run)
    i = _index(entries, "class_counts")
    entries[i]["fixed_noise_seed"] = True
    resign(run, entries)
    assert _failures(run) == [f"entry {i} (class_counts): {SEED_FAILURE}"]


def test_output_relabelled_to_another_class(run: Path) -> None:
    entries = read_entries(run)
    outputs = entries[_index(entries, "outputs")]
    row = outputs["files"][0]
    assert row["label"] == 0 and row["candidate_id"].startswith("c0/")
    row["label"] = 1
    meta_path = run / "synthetic" / "metadata.jsonl"
    lines = [json.loads(line) for line in meta_path.read_text().splitlines()]
    assert lines[0]["file_name"] == "000000.png"
    lines[0]["label"] = 1
    meta_path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    for r in outputs["files"]:
        if r["file"] == "synthetic/metadata.jsonl":
            r["sha256"] = hashlib.sha256(meta_path.read_bytes()).hexdigest()
    resign(run, entries)
    failures = _failures(run)
    assert failures[0] == (
        f"synthetic/000000.png: labelled class 1 (dogs) but candidate "
        f"{row['candidate_id']!r} is class 0's"
    )
    assert [f.split(":")[0] for f in failures[1:]] == [
        "outputs of class 0 (cats)",
        "outputs of class 1 (dogs)",
    ]


def test_outputs_per_class_do_not_follow_the_noisy_counts(run: Path) -> None:
    entries = read_entries(run)
    counts = entries[_index(entries, "class_counts")]
    forged = counts["noisy_counts"][::-1]
    original = class_output_counts(class_weights(CLASSES, noisy_counts=counts["noisy_counts"]), 8)
    allocated = class_output_counts(class_weights(CLASSES, noisy_counts=forged), 8)
    assert original == [4, 2, 2] and allocated == [2, 2, 4]
    counts["noisy_counts"] = forged
    resign(run, entries)
    assert _failures(run) == [
        f"outputs of class 0 (cats): 4 outputs, but the DP class counts {forged} allocate 2 "
        "of the 8",
        f"outputs of class 2 (owls): 2 outputs, but the DP class counts {forged} allocate 4 "
        "of the 8",
    ]


def test_a_fourth_release_for_one_class(run: Path) -> None:
    entries = read_entries(run)
    last = _releases(entries, 2)[-1]
    extra = {**entries[last], "iteration": 3, "cumulative_epsilon": _epsilon(entries[0], 4)}
    entries.insert(last + 1, extra)
    entries[-1]["releases"] += 1
    entries[-1]["epsilon_spent"] = _epsilon(entries[0], 4)
    resign(run, entries)
    where = f"entry {last + 1} (release, class 2, iteration 3)"
    assert _failures(run) == [
        f"{where}: release 4 of class 2 (owls): run_start planned 3",
        f"{where}: spends ε={_epsilon(entries[0], 4):.6g} > target 4",
    ]


def test_a_release_moved_to_another_class(run: Path) -> None:
    entries = read_entries(run)
    i = _releases(entries, 2)[-1]
    entries[i]["label"] = 1
    first = entries[i]["selected_ids"][0]
    resign(run, entries)
    failures = _failures(run)
    where = f"entry {i} (release, class 1, iteration 2)"
    assert (
        f"{where}: selected candidate {first!r} is not one of class 1 (dogs)'s (ids c1/…): "
        "the release is not that class's"
    ) in failures
    assert f"{where}: release 4 of class 1 (dogs): run_start planned 3" in failures


@pytest.mark.parametrize(
    ("label", "message"),
    [(None, "no class label in a labelled run: which class voted is unknown"),
     (3, "label 3 is not a class index 0..2"),
     (True, "label True is not a class index 0..2")],
)  # fmt: skip
def test_release_without_a_valid_label(run: Path, label: int | None, message: str) -> None:
    entries = read_entries(run)
    i = _releases(entries, 0)[0]
    if label is None:
        del entries[i]["label"]
    else:
        entries[i]["label"] = label
    resign(run, entries)
    failures = _failures(run)
    assert failures[0].endswith(f"iteration 0): {message}")
    assert failures[0].startswith(f"entry {i} (release")


def test_classes_removed_from_run_start(run: Path) -> None:
    """Stripped of its class fields, the run would be accounted without the count release."""
    entries = read_entries(run)
    for key in ("classes", "class_counts", "class_fractions", "composition"):
        del entries[0][key]
    resign(run, entries)
    failures = _failures(run)
    counts = "entry 1 (class_counts): class counts released but run_start names no classes"
    assert counts in failures
    assert (
        f"entry {_releases(entries, 0)[0]} (release, class 0, iteration 0): a class label but "
        "run_start names no classes"
    ) in failures


def test_ledger_summary_names_the_classes(pristine: Path) -> None:
    rows = summary_rows(pristine)
    counts = read_entries(pristine)[1]["noisy_counts"]
    assert rows[0][2].endswith(", 3 classes (parallel over classes)")
    assert rows[1][1] == "class_counts"
    assert rows[1][2].startswith(f"3 classes, noisy counts {counts}, ε so far ")
    assert rows[5][1] == "release"
    assert rows[5][2].startswith("class 1 (dogs), iteration 0, σ=")


def test_class_counts_released_twice_or_late(run: Path) -> None:
    entries = read_entries(run)
    counts = entries.pop(_index(entries, "class_counts"))
    first = _releases(entries, 0)[0]
    entries.insert(first + 1, counts)  # after the first release
    entries.insert(first + 2, dict(counts))  # and once more
    resign(run, entries)
    assert _failures(run) == [
        f"entry {first + 2} (class_counts): a second class_counts entry: the accountant counts "
        "one release",
        f"entry {first + 1} (class_counts): logged after the first release (entry {first})",
    ]
