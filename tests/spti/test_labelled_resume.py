"""A labelled run never releases one iteration twice (issue 24, finding 1): a ledger cut back
past one class's last release, with that release's file gone but the outputs kept, is refused
on resume; so is any artefact of a release the ledger lacks. A kept synthetic/ must be the
render of the releases the ledger holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from penumbra.cli import main
from penumbra.data import demo_private_set
from penumbra.errors import PenumbraError
from penumbra.ledger.verify import verify_run
from penumbra.pe.evolve import RunStateError
from penumbra.spti.stages import check_rendered

TINY = [
    "pe.iterations=2",
    "pe.population=4",
    "output.num_images=4",
    "domain=a photo of a clothing item",
    "prompts.max_new_tokens=16",
    "seed=3",
    "data.labels=folders",
]
CLASSES = {1: "pair of trousers", 8: "bag"}  # Fashion-MNIST label → class folder


def _sets(fields: list[str]) -> list[str]:
    return [arg for field in fields for arg in ("--set", field)]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attack review's setting: 2 classes × 12 images, ε = 10, T = 2."""
    root = tmp_path_factory.mktemp("labelled-resume")
    images = root / "images"
    taken = dict.fromkeys(CLASSES, 0)
    demo = demo_private_set(600, seed=2)
    for i, (image, label) in enumerate(zip(demo.images, demo.labels, strict=True)):
        c = int(label)
        if c in CLASSES and taken[c] < 12:
            (images / CLASSES[c]).mkdir(parents=True, exist_ok=True)
            image.save(images / CLASSES[c] / f"{i:04d}.png")
            taken[c] += 1
    out = root / "run"
    code = main(["synthesize", "--private", str(images), "--epsilon", "10", "--out", str(out),
                 *_sets(TINY)])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def _entries(run: Path) -> list[dict]:  # type: ignore[type-arg]
    lines = (run / "ledger" / "entries.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _cut_back(run: Path, size: int) -> None:
    """The ledger as a backup taken when it held `size` entries: entries and checkpoints."""
    path = run / "ledger" / "entries.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:size]))
    for checkpoint in (run / "ledger" / "checkpoints").iterdir():
        if int(checkpoint.name) > size:
            checkpoint.unlink()


def _refused(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = (run / "ledger" / "entries.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["synthesize", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert (run / "ledger" / "entries.jsonl").read_bytes() == before  # nothing drawn or logged
    return err


def test_finished_labelled_run_verifies(finished: Path) -> None:
    report = verify_run(finished)
    assert report.ok, report.failures
    kinds = [e["type"] for e in _entries(finished)]
    assert kinds[-1] == "files" and "run_end" in kinds  # the report, listed after run_end


def test_cut_back_past_one_class_last_release_is_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review's scenario: cut the ledger back to before class 1's last release (with the
    outputs and run_end after it), delete that release's file, keep synthetic/ and the report:
    the resume drew new noise for class 1 iteration 1 and logged the old outputs under it."""
    entries = _entries(copy)
    last = max(e["index"] for e in entries if e["type"] == "release" and e["label"] == 1)
    _cut_back(copy, last)
    (copy / "candidates" / "class-001" / "release-001.json").unlink()
    err = _refused(copy, capsys)
    assert "holds no release 1 of class 1" in err and "cut back" in err
    assert not (copy / "candidates" / "class-001" / "release-001.json").exists()


def test_synthetic_alone_is_an_artefact_of_every_release(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _entries(copy)
    last = max(e["index"] for e in entries if e["type"] == "release" and e["label"] == 1)
    _cut_back(copy, last)
    (copy / "candidates" / "class-001" / "release-001.json").unlink()
    (copy / "report.html").unlink()
    assert "synthetic exists" in _refused(copy, capsys)


def test_a_later_population_is_an_artefact_of_its_parent_release(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class 0's release 0 gone from file and ledger while its children (population 1) stay."""
    entries = _entries(copy)
    first = next(e["index"] for e in entries if e["type"] == "release" and e["label"] == 0)
    _cut_back(copy, first)
    shutil.rmtree(copy / "synthetic")
    (copy / "report.html").unlink()
    for c in (0, 1):
        for t in (0, 1):
            (copy / "candidates" / f"class-{c:03d}" / f"release-{t:03d}.json").unlink(
                missing_ok=True
            )
    err = _refused(copy, capsys)
    assert "candidates/class-000/population-001.parquet exists" in err
    assert "holds no release 0 of class 0" in err


def test_kept_synthetic_must_be_the_render_of_the_logged_releases(copy: Path) -> None:
    meta = [json.loads(line) for line in (copy / "synthetic" / "metadata.jsonl").open()]
    outputs = {
        "id": [m["candidate_id"] for m in meta],
        "payload": [m["caption"] for m in meta],
        "label": [m["label"] for m in meta],
    }
    check_rendered(copy / "synthetic", outputs)  # the same outputs: accepted
    outputs["payload"][0] = "a caption the releases did not select"
    with pytest.raises(RunStateError, match="holds outputs of other releases"):
        check_rendered(copy / "synthetic", outputs)
    assert isinstance(RunStateError("x"), PenumbraError)
