"""verify's output checks against a hand-made run folder (attack review of issue 28): each
forged or hostile case fails with a line naming the output, never with a traceback."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from penumbra.config import RunConfig, write_config
from penumbra.config.policy import PolicyConfig
from penumbra.errors import ConfigError
from penumbra.ledger.verify_report import VerifyReport
from penumbra.provenance.identify import identify_file, load_run
from penumbra.provenance.mark import run_mark
from penumbra.provenance.policy import PolicyLog, check_render, policy_entry, resolve_policy
from penumbra.provenance.verify_outputs import check_policy
from penumbra.provenance.watermark import embed_mark

VKEY = "penumbra-run+01234567+" + "B" * 43 + "="


@pytest.fixture(scope="module")
def made(skimage_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """A run folder with two outputs checked by the default policy (clothing domain)."""
    run = tmp_path_factory.mktemp("run")
    (run / "synthetic").mkdir()
    policy = resolve_policy(PolicyConfig(), domain="a photo of a bag", mark=run_mark(VKEY))
    rows = []
    for i, name in enumerate(("coffee.png", "rocket.jpg")):
        photo = Image.open(skimage_data / name).convert("RGB").resize((256, 256))
        checked = check_render(photo, policy, "png")
        assert checked.reason is None
        checked.image.save(run / "synthetic" / f"{i:06d}.png")
        rows.append({"file": f"synthetic/{i:06d}.png", "candidate_id": f"2-{i}",
                     **checked.fields, "attempt": 0})  # fmt: skip
    entry = {"type": "policy", "index": 0, **policy_entry(policy, PolicyLog())}
    write_config(RunConfig(), run / "run.yaml")
    return run, [entry, {"type": "outputs", "index": 1, "files": rows}]


def _failures(run: Path, entries: list[Any]) -> list[str]:
    report = VerifyReport(str(run))
    report.receipt["public_key"] = VKEY
    check_policy(run, entries, report, blocklist=None)
    return [str(f) for f in report.failures]


def _with_file(made: tuple[Path, list[Any]], tmp_path: Path, data: bytes, name: str,
               **fields: Any) -> tuple[Path, list[Any]]:  # fmt: skip
    """A copy of the run whose first output row names `name` (holding `data`)."""
    run, entries = made
    target = tmp_path / "run"
    (target / "synthetic").mkdir(parents=True)
    for path in (run / "synthetic").iterdir():
        (target / "synthetic" / path.name).write_bytes(path.read_bytes())
    (target / "run.yaml").write_bytes((run / "run.yaml").read_bytes())
    entries = copy.deepcopy(entries)
    if name:
        (target / name).write_bytes(data)
        entries[1]["files"][0].update({"file": name, **fields})
    return target, entries


def test_the_made_run_passes(made: tuple[Path, list[Any]]) -> None:
    assert _failures(*made) == []


def test_another_runs_mark_fails(made: tuple[Path, list[Any]], tmp_path: Path) -> None:
    run, _ = made
    forged = embed_mark(Image.open(run / "synthetic" / "000000.png"), "deadbeef")
    buffer = io.BytesIO()
    forged.save(buffer, "PNG")
    target, entries = _with_file(made, tmp_path, buffer.getvalue(), "synthetic/000000.png",
                                 watermark="deadbeef")  # fmt: skip
    from penumbra.provenance.pdq import pdq_hash

    entries[1]["files"][0]["pdq"] = pdq_hash(forged)[0]
    assert any("carries mark deadbeef" in f for f in _failures(target, entries))


@pytest.mark.parametrize("threshold", [5, "high", None, float("nan")])
def test_out_of_range_face_threshold_is_a_failure(made: tuple[Path, list[Any]],
                                                  threshold: Any) -> None:  # fmt: skip
    run, entries = made
    entries = copy.deepcopy(entries)
    entries[0]["faces"]["threshold"] = threshold
    assert any("faces settings" in f for f in _failures(run, entries))


def test_hostile_output_files_cannot_pass(made: tuple[Path, list[Any]], tmp_path: Path) -> None:
    frames = [Image.new("RGB", (256, 256), "white"), Image.new("RGB", (256, 256), "black")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    png = (made[0] / "synthetic" / "000001.png").read_bytes()
    cases = {
        "synthetic/000000.bmp": (png, "not an image format"),
        "synthetic/000000.png": (buffer.getvalue(), "more than one frame"),
        "synthetic/000002.png": (png[: len(png) // 2], "cannot be decoded"),
    }
    for i, (name, (data, message)) in enumerate(cases.items()):
        target, entries = _with_file(made, tmp_path / str(i), data, name)
        failures = _failures(target, entries)
        assert any(name in f and message in f for f in failures), failures
    _, entries = made
    entries = copy.deepcopy(entries)
    entries[1]["files"][0]["file"] = "synthetic/../../etc/passwd.png"
    assert any("directly under synthetic/" in f for f in _failures(made[0], entries))


def test_hidden_withheld_renders_and_unmarked_counts_fail(made: tuple[Path, list[Any]]) -> None:
    run, entries = made
    entries = copy.deepcopy(entries)
    entries[1]["files"][1]["attempt"] = 2  # two renders withheld, none listed
    entries[0]["unmarked"] = 1
    failures = _failures(run, entries)
    assert any("withheld does not list" in f for f in failures)
    assert any("unmarked is 1, but 0 outputs" in f for f in failures)


def test_a_deleted_policy_entry_fails_where_run_yaml_has_one(
    made: tuple[Path, list[Any]],
) -> None:
    run, entries = made
    stripped = copy.deepcopy(entries[1])
    for row in stripped["files"]:
        for key in ("pdq", "faces", "watermark", "attempt"):
            row.pop(key)
    assert any("no policy entry" in f for f in _failures(run, [stripped]))


def test_identify_survives_thin_images_and_names_the_run_holding_the_bytes(
    made: tuple[Path, list[Any]], tmp_path: Path
) -> None:
    thin = tmp_path / "thin.png"
    Image.new("RGB", (70_000, 1)).save(thin)
    assert identify_file(thin, [])["marked"] is False
    run, entries = made
    folders = []
    for name, rows in (("a", []), ("b", entries[1]["files"])):
        folder = tmp_path / name / "ledger"
        folder.mkdir(parents=True)
        (folder / "pubkey").write_text(VKEY + "\n")
        from penumbra.models.fingerprint import file_sha256

        listed = [{**r, "sha256": file_sha256(run / r["file"])} for r in rows]
        (folder / "entries.jsonl").write_text(json.dumps({"type": "outputs", "files": listed}))
        folders.append(load_run(folder.parent))
    found = identify_file(run / "synthetic" / "000001.png", folders)
    assert found["run"] == str(tmp_path / "b") and found["output"] == "synthetic/000001.png"


def test_policy_may_change_on_resume_only_before_it_is_recorded(tmp_path: Path) -> None:
    from penumbra.spti.pipeline import resolve_run_config

    write_config(RunConfig(), tmp_path / "run.yaml")
    (tmp_path / "ledger").mkdir()
    entries = tmp_path / "ledger" / "entries.jsonl"
    entries.write_text('{"index":0,"type":"run_start"}\n')
    args = {"config": None, "epsilon": None, "delta": None, "resume": True}
    cfg = resolve_run_config(tmp_path, overrides=["policy.max_attempts=3"], **args)
    assert cfg.policy.max_attempts == 3
    entries.write_text('{"index":0,"type":"run_start"}\n{"index":1,"type":"policy"}\n')
    with pytest.raises(ConfigError, match="already holds the policy"):
        resolve_run_config(tmp_path, overrides=["policy.max_attempts=3"], **args)
