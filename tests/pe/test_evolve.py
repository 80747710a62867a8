"""The PE loop: learns the private distribution, resumes after kill -9, guards the budget."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from penumbra.ledger.log import Ledger, LedgerError
from penumbra.ledger.records import LedgerJournal
from penumbra.pe import evolve as evolve_module
from penumbra.pe.evolve import PrivacyBudgetError, RunStateError
from penumbra.pe.plan import CallCosts, plan_run
from penumbra.pe.store import read_json, read_population, write_json
from penumbra.privacy import discrete_gaussian_epsilon

from . import toy

ROOT = Path(__file__).resolve().parents[2]


def _distance_to_private(payloads: list[str]) -> float:
    return float(np.linalg.norm(toy.parse(payloads) - toy.PRIVATE_CENTRE, axis=1).mean())


def test_evolution_moves_towards_private_data(tmp_path: Path) -> None:
    outputs = toy.run(tmp_path)
    first = read_population(tmp_path / "population-000.parquet")["payload"]
    assert _distance_to_private(outputs["payload"]) < 0.5 * _distance_to_private(first)
    assert len(outputs["payload"]) == 40
    # lineage: every output's chain walks back to a random candidate of iteration 0
    for cid, chain, it in zip(outputs["id"], outputs["lineage"], outputs["iteration"], strict=True):
        assert chain[0] == cid and chain[-1].startswith("0-") and len(chain) == it + 1


def test_releases_and_accounting(tmp_path: Path) -> None:
    toy.run(tmp_path)
    state = read_json(tmp_path / "state.json")
    sigma = state["sigma"]
    assert "noise_seed" not in state["settings"] and state["fixed_noise_seed"] is True
    for t in range(5):
        release = read_json(tmp_path / f"release-{t:03d}.json")
        assert release["cumulative_epsilon"] == pytest.approx(
            discrete_gaussian_epsilon(sigma, t + 1, 1e-5)
        )
        assert len(release["noisy"]) == 60
        # the release is integer votes with exact discrete noise; `noisy` is votes / √k (k = 1)
        assert all(isinstance(v, int) for v in release["noisy_votes"])
        assert release["noisy"] == [float(v) for v in release["noisy_votes"]]
        assert release["accountant"] == "discrete-gaussian-pld"
    assert read_json(tmp_path / "release-004.json")["cumulative_epsilon"] <= 4.0


@pytest.mark.parametrize("kill_at", ["release:1", "vary:3", "release:4"])
def test_kill_and_resume_matches_uninterrupted_run(tmp_path: Path, kill_at: str) -> None:
    script = [sys.executable, "-m", "tests.pe.toy"]
    clean = subprocess.run(
        [*script, str(tmp_path / "clean")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    killed = subprocess.run(
        [*script, str(tmp_path / "run"), "--kill-at", kill_at],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("release-*.json")}
    resumed = subprocess.run(
        [*script, str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(resumed.stdout) == json.loads(clean.stdout)
    for name, data in before.items():  # finished releases were reused, not redrawn
        assert (tmp_path / "run" / name).read_bytes() == data
    for path in (tmp_path / "clean").glob("*.json"):
        assert (tmp_path / "run" / path.name).read_bytes() == path.read_bytes()
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_refuses_to_overspend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = evolve_module.discrete_gaussian_sigma
    # calibrate as if the run had 2 iterations while it runs 5: iteration 2 would overspend
    monkeypatch.setattr(
        evolve_module,
        "discrete_gaussian_sigma",
        lambda e, d, t, k=1, extra=0: real(e, d, 2, k, extra=extra),
    )
    with pytest.raises(PrivacyBudgetError, match="iteration 2 would spend"):
        toy.run(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("release-*.json")) == [
        "release-000.json",
        "release-001.json",
    ]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    toy.run(tmp_path, iterations=2)
    with pytest.raises(RunStateError, match="started with other settings"):
        toy.run(tmp_path, iterations=2, epsilon=8.0)


def test_schedule_lookahead_keep_selected(tmp_path: Path) -> None:
    outputs = toy.run(
        tmp_path,
        iterations=3,
        population=(40, 30, 20),
        lookahead=2,
        keep_selected=True,
        selection="sample",
        threshold=1.0,
        num_outputs=10,
    )
    sizes = [len(read_population(tmp_path / f"population-{t:03d}.parquet")["id"]) for t in range(3)]
    assert sizes == [40, 30, 20] and len(outputs["id"]) == 10
    second = read_population(tmp_path / "population-001.parquet")
    kept = [i for i, f in enumerate(second["fold"]) if f == 0]
    assert kept, "keep_selected carries parents over unchanged"
    first = read_population(tmp_path / "population-000.parquet")
    payload_of = dict(zip(first["id"], first["payload"], strict=True))
    assert all(second["payload"][i] == payload_of[second["parent_id"][i]] for i in kept)


def test_plan_warns_when_noise_dominates() -> None:
    plan = plan_run(toy.settings(population=(500,), epsilon=0.5), n_private=300)
    assert plan.warnings and "fewer candidates" in plan.warnings[0]
    assert plan.random_calls == 500 and plan.embeddings == 2500
    assert not plan_run(toy.settings(), n_private=100_000).warnings
    costs = CallCosts(random=0.1, variation=0.2, embed=0.01, vote_throughput=1e9)
    timed = plan_run(
        toy.settings(population=(10,), lookahead=2), n_private=1000, costs=costs, dim=2
    )
    # 10 random + (4·10 + 2·50) variations + 2·50 embeddings + 5·1000·10·2 vote work
    assert timed.seconds == pytest.approx(10 * 0.1 + 140 * 0.2 + 100 * 0.01 + 1e5 / 1e9)
    assert any("estimated wall time" in line for line in timed.lines())


def _ledger_run(folder: Path, **overrides: object) -> dict[str, list]:
    """A toy run whose releases go through the real signed ledger, with cryptographic noise
    (no test seed): a second draw for an iteration would differ from the first."""
    ledger = Ledger.open(folder)
    return toy.run(
        folder / "candidates", journal=LedgerJournal(ledger, k=1), noise_seed=None, **overrides
    )


def _releases(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "candidates").glob("release-*"))}


def test_deleted_release_is_rebuilt_from_the_ledger_not_redrawn(tmp_path: Path) -> None:
    """Issue 13 item 2: delete release-001.json of a finished 3-iteration run and resume."""
    first = _ledger_run(tmp_path, iterations=3)
    before = _releases(tmp_path)
    (tmp_path / "candidates" / "release-001.json").unlink()
    again = _ledger_run(tmp_path, iterations=3)
    assert _releases(tmp_path) == before  # the same histogram, not a fresh draw
    assert again == first
    ledger = Ledger.open(tmp_path)
    assert [e["iteration"] for _, e in ledger.find("release")] == [0, 1, 2]


def test_missing_release_with_later_artefacts_is_refused(tmp_path: Path) -> None:
    toy.run(tmp_path, iterations=3, noise_seed=None)  # no journal to rebuild from
    (tmp_path / "release-001.json").unlink()
    with pytest.raises(RunStateError, match="later iterations exist"):
        toy.run(tmp_path, iterations=3, noise_seed=None)
    assert not (tmp_path / "release-001.json").exists()


def test_release_file_differing_from_the_ledger_is_refused(tmp_path: Path) -> None:
    _ledger_run(tmp_path, iterations=2)
    path = tmp_path / "candidates" / "release-001.json"
    data = read_json(path)
    data["noisy"][0] += 5.0
    data["noisy_votes"][0] += 5
    write_json(path, data)
    with pytest.raises(LedgerError, match="differs from the logged one"):
        _ledger_run(tmp_path, iterations=2)


def test_truncated_ledger_is_refused_before_any_noise(tmp_path: Path) -> None:
    """Removing the last release from the log (and its file) must not let a resume draw it
    again: the log no longer matches its newest signed checkpoint."""
    _ledger_run(tmp_path, iterations=2)
    entries = tmp_path / "ledger" / "entries.jsonl"
    lines = entries.read_bytes().splitlines(keepends=True)
    entries.write_bytes(b"".join(lines[:-1]))
    (tmp_path / "candidates" / "release-001.json").unlink()
    with pytest.raises(LedgerError, match="removed or changed"):
        _ledger_run(tmp_path, iterations=2)
    assert not (tmp_path / "candidates" / "release-001.json").exists()


def test_run_of_the_continuous_gaussian_era_is_not_resumed(tmp_path: Path) -> None:
    toy.run(tmp_path, iterations=1)
    state = read_json(tmp_path / "state.json")
    write_json(tmp_path / "state.json", {**state, "version": 1})
    with pytest.raises(RunStateError, match="older penumbra"):
        toy.run(tmp_path, iterations=1)


def test_wiped_ledger_is_refused_not_replaced(tmp_path: Path) -> None:
    """Reviewer's scenario E: the ledger folder and a release file deleted; a fresh ledger must
    not be taken as 'no releases yet'."""
    _ledger_run(tmp_path, iterations=2)
    shutil.rmtree(tmp_path / "ledger")
    (tmp_path / "candidates" / "release-001.json").unlink()
    with pytest.raises(RunStateError, match="no record of release 0"):
        _ledger_run(tmp_path, iterations=2)
    assert not (tmp_path / "candidates" / "release-001.json").exists()


def test_ledger_emptied_with_its_checkpoints_is_refused(tmp_path: Path) -> None:
    """Scenario F: every checkpoint deleted and the entries emptied."""
    _ledger_run(tmp_path, iterations=2)
    shutil.rmtree(tmp_path / "ledger" / "checkpoints")
    (tmp_path / "ledger" / "checkpoints").mkdir()
    (tmp_path / "ledger" / "entries.jsonl").write_bytes(b"")
    (tmp_path / "candidates" / "release-001.json").unlink()
    with pytest.raises(RunStateError, match="no record of release 0"):
        _ledger_run(tmp_path, iterations=2)


def test_checkpoints_removed_but_entries_kept_is_refused(tmp_path: Path) -> None:
    _ledger_run(tmp_path, iterations=2)
    shutil.rmtree(tmp_path / "ledger" / "checkpoints")
    (tmp_path / "ledger" / "checkpoints").mkdir()
    with pytest.raises(LedgerError, match="no signed checkpoint"):
        Ledger.open(tmp_path)


def test_old_checkpoint_under_a_newer_name_is_refused(tmp_path: Path) -> None:
    """Scenario D: the log cut back and its old checkpoint copied to a higher file name."""
    _ledger_run(tmp_path, iterations=2)
    entries = tmp_path / "ledger" / "entries.jsonl"
    entries.write_bytes(entries.read_bytes().splitlines(keepends=True)[0])
    checkpoints = tmp_path / "ledger" / "checkpoints"
    shutil.copy(checkpoints / "00000001", checkpoints / "99999999")
    with pytest.raises(LedgerError, match="under the name of another size"):
        Ledger.open(tmp_path)


def test_final_set_is_drawn_in_proportion_to_the_last_release(tmp_path: Path) -> None:
    from penumbra.pe.mechanism import apply_threshold, apportion

    outputs = toy.run(tmp_path, num_outputs=200, threshold=2.0)
    last = read_json(tmp_path / "release-004.json")
    expected = apportion(apply_threshold(np.array(last["noisy"]), 2.0), 200)
    ids = read_population(tmp_path / "population-004.parquet")["id"]
    counts = [outputs["id"].count(cid) for cid in ids]
    assert counts == expected.tolist() and sum(counts) == 200


def test_final_population_is_one_fresh_variation_of_each_drawn_parent(tmp_path: Path) -> None:
    """Issue 25 item 1: the outputs are distinct variations, their parents drawn ∝ the last
    noisy histogram (the draws of `final: draws`, one parent per output, in order)."""
    draws = toy.run(tmp_path / "draws", num_outputs=200, threshold=2.0)
    outputs = toy.run(tmp_path / "final", num_outputs=200, threshold=2.0, final="variations")
    final = read_population(tmp_path / "final" / "population-005.parquet")
    assert outputs["id"] == final["id"] and outputs["payload"] == final["payload"]
    assert final["parent_id"] == draws["id"]  # the same DP draws, now parents
    assert len(set(outputs["payload"])) == 200 < 2 * len(set(draws["payload"])) + 200
    assert len(set(draws["payload"])) < 60
    for cid, chain, parent in zip(outputs["id"], outputs["lineage"], final["parent_id"],
                                  strict=True):  # fmt: skip
        assert chain[:2] == [cid, parent] and chain[-1].startswith("0-")
    assert set(outputs["iteration"]) == {5}
    # post-processing only: no release of its own, no ε
    assert not (tmp_path / "final" / "release-005.json").exists()
    # a variation moves each parent a little, it does not replace it
    parents = dict(zip(draws["id"], toy.parse(draws["payload"]), strict=False))
    moved = np.linalg.norm(
        toy.parse(outputs["payload"]) - np.array([parents[p] for p in final["parent_id"]]), axis=1
    )
    assert 0 < moved.mean() < 2.0


def test_final_population_is_reused_on_resume_and_needs_its_release(tmp_path: Path) -> None:
    first = toy.run(tmp_path, iterations=3, final="variations")
    assert toy.run(tmp_path, iterations=3, final="variations") == first
    (tmp_path / "release-002.json").unlink()
    with pytest.raises(RunStateError, match="later iterations exist"):
        toy.run(tmp_path, iterations=3, final="variations")


def test_plan_counts_the_final_variations() -> None:
    base = toy.settings(iterations=2, population=(10,), num_outputs=50)
    varied = toy.settings(iterations=2, population=(10,), num_outputs=50, final="variations")
    assert plan_run(varied, 1000).variation_calls == plan_run(base, 1000).variation_calls + 50
