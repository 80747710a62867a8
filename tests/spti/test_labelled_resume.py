"""A labelled run never releases one iteration twice (issue 24, finding 1): a ledger cut back
past one class's last release, with that release's file gone but the outputs kept, is refused
on resume; so is any artefact of a release the ledger lacks. A kept synthetic/ must be the
render of the releases the ledger holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.cli import main
from penumbra.data import demo_private_set
from penumbra.errors import PenumbraError
from penumbra.ledger.verify import verify_run
from penumbra.pe.evolve import RunStateError
from penumbra.spti.final_set import check_rendered

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


def _private_image(path: Path) -> None:
    """A stand-in for a private image: any PNG penumbra did not write."""
    pixels = np.random.default_rng(7).integers(0, 255, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).resize((256, 256)).save(path)


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
    (copy / "candidates" / "class-001" / "population-002.parquet").unlink()  # the final one
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


def test_a_file_dropped_into_a_finished_run_is_refused_not_signed(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Second review, finding 1: a resume signed every file it found into the published
    tree, so a private image in renders/ or a "clean votes" file verified after one resume."""
    _private_image(copy / "candidates" / "leaked.png")
    (copy / "candidates" / "clean.json").write_text('{"clean_votes": [0, 12, 0, 1]}')
    err = _refused(copy, capsys)
    assert "not a file penumbra wrote for this run" in err and "clean.json" in err
    assert not verify_run(copy).ok


def test_a_dropped_render_is_made_again_not_signed(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """renders/ is a cache: an unlisted file there is removed, never signed."""
    leaked = copy / "renders" / "leaked.png"
    leaked.write_bytes((copy / "synthetic" / "000000.png").read_bytes() + b"private")
    assert main(["synthesize", "--resume", str(copy)]) == 0
    assert not leaked.exists()
    assert verify_run(copy).ok


def test_entries_appended_by_hand_are_refused_not_signed(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Second review, finding 2: every entry after the newest checkpoint was signed on the
    next open, so a hand-appended entry holding private data verified after one resume."""
    from penumbra.ledger.log import canonical

    entries = _entries(copy)
    forged = {"index": len(entries), "schema": 1, "type": "files", "stage": "report",
              "files": [], "removed": [], "private_files": ["bag/0003.png"]}  # fmt: skip
    path = copy / "ledger" / "entries.jsonl"
    with path.open("ab") as f:
        f.write(canonical(forged) + b"\n")
    assert "never writes: private_files" in _refused(copy, capsys)
    second = {**forged, "index": len(entries) + 1}
    second.pop("private_files")
    with path.open("ab") as f:
        f.write(canonical(second) + b"\n")
    assert "2 entries after the newest signed checkpoint" in _refused(copy, capsys)


def test_synthetic_before_its_outputs_are_logged_is_rendered_again(copy: Path) -> None:
    """Second review, finding 3: with no outputs entry (a crash after the final render) the
    kept synthetic/ was trusted by its metadata, so a private image written over an output
    was logged as that output. Now it is rendered again from the logged releases."""
    original = (copy / "synthetic" / "000000.png").read_bytes()
    cut = next(i for i, e in enumerate(_entries(copy)) if e["type"] == "outputs")
    _cut_back(copy, cut)
    (copy / "report.html").unlink()
    _private_image(copy / "synthetic" / "000000.png")
    assert main(["synthesize", "--resume", str(copy)]) == 0
    assert (copy / "synthetic" / "000000.png").read_bytes() == original
    report = verify_run(copy)
    assert report.ok, report.failures


def test_deleted_synthetic_of_a_finished_run_is_rendered_again_under_its_policy(
    copy: Path,
) -> None:
    """Attack review of issue 28, finding 10: with the outputs logged and synthetic/ gone, a
    resume rendered again without the policy (no mark, no face check), so the files no longer
    matched the ledger. It applies the recorded policy again and gets the same bytes."""
    before = {p.name: p.read_bytes() for p in (copy / "synthetic").iterdir()}
    shutil.rmtree(copy / "synthetic")
    assert main(["synthesize", "--resume", str(copy)]) == 0
    assert {p.name: p.read_bytes() for p in (copy / "synthetic").iterdir()} == before
    assert verify_run(copy).ok
