from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from penumbra import __version__
from penumbra.cli import main
from penumbra.errors import ConfigError


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("version", "models", "config"):
        assert command in out


def test_no_arguments_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 0
    assert "Usage" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0
    assert f"penumbra {__version__}" in out


def test_models_lists_the_four_builtins_as_available(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = {r["uri"]: r for r in json.loads(out)}
    for uri, role in {
        "builtin:smollm2-135m": "text-generator",
        "builtin:minilm-l6": "text-embedder",
        "builtin:effnet-lite0": "image-embedder",
        "builtin:label-captioner": "captioner",
    }.items():
        assert rows[uri]["available"], rows[uri]["problem"]
        assert rows[uri]["roles"] == [role]
    assert "only offline captioner" in rows["builtin:label-captioner"]["description"]
    assert {"hf:REPO_OR_PATH", "openai:MODEL@BASE_URL"} <= set(rows)


def test_models_table_is_human_readable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0
    assert "builtin:minilm-l6" in out and "yes" in out


def test_unknown_command_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "frobnicate")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "frobnicate" in err and "Traceback" not in err


def test_config_errors_one_line_each_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "config", "--set", "pe.iterations=0", "--set", "privacy.epsilon=-1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2
    assert any("pe.iterations" in line and "greater than or equal to 1" in line for line in lines)
    assert any("privacy.epsilon" in line and "greater than 0" in line for line in lines)


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    code, _, err = run(capsys, "config", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in err and "not found" in err


def test_debug_shows_the_traceback(tmp_path) -> None:
    with pytest.raises(ConfigError):
        main(["--debug", "config", "--config", str(tmp_path / "nope.yaml")])


def test_config_writes_resolved_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out_file = tmp_path / "resolved.yaml"
    code, _, _ = run(capsys, "config", "--set", "pe.k=3", "--out", str(out_file))
    assert code == 0
    code, out, _ = run(capsys, "config", "--config", str(out_file))
    assert code == 0 and "k: 3" in out


def test_console_script_exit_code_and_no_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "penumbra", "config", "--set", "pe.k=0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: config: pe.k: Input should be greater than or equal to 1 (got 0)"
    )


def test_every_command_summary_is_one_line() -> None:
    """`penumbra --help` showed the evaluate and demo summaries broken mid-sentence ("class /
    mix"): the docstrings' hard line breaks reached Rich (issue 26)."""
    import typer.main

    from penumbra.cli import app

    def commands(group: Any) -> list[tuple[str, Any]]:
        found = []
        for name, command in group.commands.items():
            found.append((name, command))
            if hasattr(command, "commands"):
                found += [(f"{name} {sub}", c) for sub, c in commands(command)]
        return found

    found = commands(typer.main.get_command(app))
    assert len(found) >= 20  # the groups' subcommands too
    for name, command in found:
        summary = (command.short_help or command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary, f"penumbra {name}: {summary!r}"
