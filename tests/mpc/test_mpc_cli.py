"""`penumbra mpc` commands: user errors exit 2 with one line, init writes a deployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from penumbra.cli import main


def test_init_writes_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "mpc",
            "init",
            "--holders",
            "2",
            "--out",
            str(tmp_path / "d"),
            "--counts",
            "7,3",
            "--ports",
            "9001,9002,9003",
        ]
    )
    assert code == 0
    config = json.loads((tmp_path / "d" / "holder-2" / "config.json").read_text())
    assert config["holders"][1]["declared_count"] == 3
    assert config["leader_url"].endswith(":9001")
    leader = json.loads((tmp_path / "d" / "leader" / "config.json").read_text())
    assert leader["max_epsilon"] == 10.0  # the stated default budget, always written
    assert "ε <= 10 over all runs" in capsys.readouterr().out


def test_init_fixes_the_deployment_terms(tmp_path: Path) -> None:
    args = ["mpc", "init", "--holders", "1", "--out", str(tmp_path / "d")]
    terms = ["--max-epsilon", "2.5", "--k", "3", "--metric", "cosine", "--max-candidates", "300"]
    assert main([*args, *terms]) == 0
    for party in ("leader", "helper", "coordinator", "holder-1"):
        config = json.loads((tmp_path / "d" / party / "config.json").read_text())
        assert (config["k"], config["metric"], config["max_candidates"]) == (3, "cosine", 300)
        assert config.get("max_epsilon") == (2.5 if party in ("leader", "helper") else None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mpc", "init", "--holders", "2", "--out", "D", "--counts", "a,b"], "--counts"),
        (["mpc", "init", "--holders", "2", "--out", "D", "--ports", "1,2"], "--ports"),
        (["mpc", "init", "--holders", "1", "--out", "D", "--max-epsilon", "0"], "--max-epsilon"),
        (["mpc", "init", "--holders", "1", "--out", "D", "--metric", "l3"], "--metric"),
        (["mpc", "init", "--holders", "1", "--out", "D", "--counts", "2"], "--counts"),
        (["mpc", "aggregator", "--config", "missing.json"], "missing.json"),
        (["mpc", "holder", "--private", "p", "--config", "missing.json"], "missing.json"),
        (["mpc", "coordinate", "--config", "missing.json", "--out", "r"], "missing.json"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_wrong_role_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["mpc", "init", "--holders", "1", "--out", str(tmp_path / "d")])
    capsys.readouterr()
    code = main(["mpc", "aggregator", "--config", str(tmp_path / "d" / "holder-1" / "config.json")])
    assert code == 2
    assert "needs a aggregator config" in capsys.readouterr().err
