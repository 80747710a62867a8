"""A run started by an earlier penumbra resumes under this one (issue 27, item 4).

The fixture was written by commit 6ffe0bb, before the slot-form fields of `prompts` existed
(tests/spti/fixtures/README.md): this version fills them with their defaults, so hashing its
own resolved config would refuse the run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from penumbra.cli import main
from penumbra.config import RunConfig, config_hash, load_config
from penumbra.errors import ConfigError
from penumbra.ledger.verify import verify_run
from penumbra.spti.config_upgrade import recorded_config_hash

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_RUN = FIXTURES / "text-run-6ffe0bb"
REVIEWS = FIXTURES / "text-run-6ffe0bb-reviews.jsonl"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    os.chmod(run / "private", 0o700)  # git keeps no folder modes
    return run


def test_same_hash_for_a_run_this_version_started(tmp_path: Path) -> None:
    from penumbra.config import write_config
    from penumbra.spti.demo import demo_config

    cfg = demo_config(1.0)
    write_config(cfg, tmp_path / "run.yaml")
    assert recorded_config_hash(cfg, tmp_path / "run.yaml") == config_hash(cfg)
    assert recorded_config_hash(cfg, tmp_path / "absent.yaml") == config_hash(cfg)


def test_the_fixture_predates_fields_of_this_version() -> None:
    recorded = yaml.safe_load((OLD_RUN / "run.yaml").read_text())
    assert "slot_variation" not in recorded["prompts"]
    assert "slot_variation" in RunConfig.model_fields["prompts"].annotation.model_fields  # type: ignore[union-attr]
    cfg = load_config(OLD_RUN / "run.yaml")
    assert config_hash(cfg) != recorded_config_hash(cfg, OLD_RUN / "run.yaml")


def test_an_older_run_resumes_and_verifies(
    old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = (old_run / "candidates" / "release-000.json").read_bytes()
    code = main(["synthesize", "--resume", str(old_run), "--private", str(REVIEWS)])
    assert code == 0, capsys.readouterr().err
    assert (old_run / "candidates" / "release-000.json").read_bytes() == first  # no new noise
    assert (old_run / "candidates" / "release-001.json").is_file()
    report = verify_run(old_run)
    assert report.ok, report.failures
    assert len(report.receipt["epsilon_per_iteration"]) == 2


def test_a_changed_record_is_refused_by_name(
    old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_yaml = old_run / "run.yaml"
    original = run_yaml.read_text()
    # a field the run recorded, changed
    run_yaml.write_text(original.replace("max_new_tokens: 20", "max_new_tokens: 21"))
    assert main(["synthesize", "--resume", str(old_run), "--private", str(REVIEWS)]) != 0
    err = capsys.readouterr().err
    assert "config_sha256" in err and "Traceback" not in err
    # a field this version added, set away from its default in the record
    data = yaml.safe_load(original)
    data["prompts"]["slot_variation"] = "Pick another word for the {slot} of {caption}."
    run_yaml.write_text(yaml.safe_dump(data))
    assert main(["synthesize", "--resume", str(old_run), "--private", str(REVIEWS)]) != 0
    assert "config_sha256" in capsys.readouterr().err
    # a field this version does not know
    data = yaml.safe_load(original)
    data["pe"]["retired_option"] = 3
    run_yaml.write_text(yaml.safe_dump(data))
    assert main(["synthesize", "--resume", str(old_run), "--private", str(REVIEWS)]) == 2
    assert "pe.retired_option" in capsys.readouterr().err
    assert not (old_run / "candidates" / "release-001.json").exists()  # no noise was drawn


def test_a_missing_field_must_be_at_its_default(tmp_path: Path) -> None:
    """A field the record lacks counts only at its default: the value the run started with."""
    from penumbra.config import write_config

    cfg = load_config(OLD_RUN / "run.yaml")
    write_config(cfg, tmp_path / "run.yaml")
    data = yaml.safe_load((OLD_RUN / "run.yaml").read_text())
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(data))
    changed = cfg.model_copy(deep=True)
    changed.prompts.slot_variation = "Pick another word for the {slot} of {caption}."
    with pytest.raises(ConfigError, match="prompts.slot_variation is not in the run's record"):
        recorded_config_hash(changed, tmp_path / "old.yaml")
