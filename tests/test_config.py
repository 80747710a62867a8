from __future__ import annotations

from pathlib import Path

import pytest

from penumbra.config import RunConfig, config_hash, load_config, write_config
from penumbra.errors import ConfigError


def test_defaults_validate() -> None:
    config = load_config()
    assert config == RunConfig()
    assert config.models.text_generator == "builtin:smollm2-135m"


def test_yaml_then_options_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("privacy:\n  epsilon: 2.0\npe:\n  iterations: 4\n  k: 2\n", encoding="utf-8")
    config = load_config(
        path, ["pe.k=3", "models.options={hf:x: {steps: 4}}"], extra={"privacy.epsilon": 0.5}
    )
    assert config.privacy.epsilon == 0.5  # CLI option beats the file
    assert config.pe.iterations == 4  # file kept where nothing overrides it
    assert config.pe.k == 3  # --set beats the file
    assert config.models.options_for("hf:x") == {"steps": 4}


def test_round_trip_through_written_file(tmp_path: Path) -> None:
    config = load_config(None, ["domain=a photo of a bedroom", "seed=7"])
    write_config(config, tmp_path / "out" / "run.yaml")
    again = load_config(tmp_path / "out" / "run.yaml")
    assert again == config
    assert config_hash(again) == config_hash(config)
    assert config_hash(load_config(None, ["seed=8"])) != config_hash(config)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("pe.iterations=0", "pe.iterations: Input should be greater than or equal to 1 (got 0)"),
        ("privacy.delta=1.5", "privacy.delta: Input should be less than 1 (got 1.5)"),
        (
            "pe.selection=best",
            "pe.selection: Input should be 'rank', 'sample' or 'proportional' (got 'best')",
        ),
        ("voting=audio", "voting: Input should be 'image' or 'text' (got 'audio')"),
        ("models.openai.timeout=0", "models.openai.timeout: Input should be greater than 0"),
        ("models.captioner=blip", "models.captioner: must be a model URI"),
    ],
)
def test_invalid_field_names_field_and_range(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert len(info.value.problems) == 1
    assert expected in info.value.problems[0]


def test_unknown_field_lists_allowed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["pe.iteratons=3"])
    (line,) = info.value.problems
    assert "pe.iteratons: unknown field" in line and "iterations" in line


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("pe:\n  k: 0\n  population: 1\nprivacy:\n  epsilon: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 3
    assert all(p.startswith(f"{path}: ") for p in info.value.problems)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pe:\n  k: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+:\d+: invalid YAML"):
        load_config(path)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["pe.k"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(None, ["seed=1", "seed.x=2"])


def test_openai_options_merge() -> None:
    config = load_config(None, ["models.openai.timeout=5", "models.openai.max_retries=1"])
    options = config.models.options_for("openai:gpt-4o-mini@http://127.0.0.1:1/v1")
    assert options["timeout"] == 5 and options["max_retries"] == 1
    assert options["api_key_env"] == "OPENAI_API_KEY"
    assert config.models.options_for("builtin:minilm-l6") == {}


def test_config_hash_ignores_unset_optional_fields() -> None:
    # A run started before output.content_credentials existed recorded the hash of a dump
    # without that key; the same settings must hash the same now (resume and verify).
    import hashlib
    import json

    from penumbra.config import RunConfig, config_hash

    cfg = RunConfig()
    old = cfg.model_dump(mode="json")
    del old["output"]["content_credentials"]
    del old["compute"]  # nor compute (where work runs is not what a run computes)
    del old["ledger"]  # nor the witnesses (the auditor checks them with keys of their own)
    del old["policy"]  # nor the output policy (post-processing; the ledger's policy entry)
    old = {k: v for k, v in old.items() if v is not None}
    for section in old.values():
        if isinstance(section, dict):
            for key in [k for k, v in section.items() if v is None]:
                del section[key]
    text = json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert config_hash(cfg) == hashlib.sha256(text.encode()).hexdigest()
    changed = RunConfig.model_validate({"output": {"num_images": 7}})
    assert config_hash(changed) != config_hash(cfg)
    key = "w+00000000+" + "B" * 44
    witnessed = RunConfig.model_validate(
        {"ledger": {"witnesses": [{"url": "http://h:1", "key": key}]}}
    )
    assert config_hash(witnessed) == config_hash(cfg)


def test_witness_entries_are_checked_by_field() -> None:
    from penumbra.config import load_config
    from penumbra.errors import ConfigError

    for bad, field in (
        ("[{url: 'ftp://x', key: 'w+00000000+" + "B" * 44 + "'}]", "ledger.witnesses.0.url"),
        ("[{url: 'http://x:1', key: 'nonsense'}]", "ledger.witnesses.0.key"),
        ("[{url: 'http://x:1'}]", "ledger.witnesses.0.key"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"ledger.witnesses={bad}"])
        assert len(info.value.problems) == 1 and field in info.value.problems[0], info.value
