"""Lock-step PE runs (one per class): the same runs as one after another, shared model calls."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from penumbra.pe.evolve import PopulationRequest, evolve, generate
from penumbra.pe.lockstep import EvolveJob, evolve_together
from penumbra.pe.voting import local_voter

from . import toy

CENTRES = (np.array([5.0, 5.0]), np.array([-6.0, 2.0]))


def _private(c: int) -> np.ndarray:
    rng = np.random.default_rng(10 + c)
    return (CENTRES[c] + rng.normal(0, 1.0, (800, 2))).astype(np.float32)


def _jobs(root: Path) -> list[EvolveJob]:
    api = toy.Points()
    return [
        EvolveJob(root / f"class-{c}", toy.settings(seed=c, id_prefix=f"c{c}/", iterations=3,
                                                    num_outputs=10 + c),
                  api, api, local_voter(_private(c)))
        for c in range(2)
    ]  # fmt: skip


def test_lock_step_gives_the_runs_one_after_another_would(tmp_path: Path) -> None:
    together = evolve_together(_jobs(tmp_path / "together"), embed=toy.parse)
    apart = [
        evolve(job.folder, random_api=job.random_api, variation_api=job.variation_api,
               embed=toy.parse, voter=job.voter, settings=job.settings)
        for job in _jobs(tmp_path / "apart")
    ]  # fmt: skip
    for a, b in zip(together, apart, strict=True):
        assert a.outputs == b.outputs and a.epsilon_spent == b.epsilon_spent
        assert [r.noisy for r in a.releases] == [r.noisy for r in b.releases]
    # each class's outputs gather at its own private centre, with its own ids
    for c, result in enumerate(together):
        points = toy.parse(result.outputs["payload"])
        assert len(points) == 10 + c
        assert np.linalg.norm(points.mean(axis=0) - CENTRES[c]) < 1.5
        assert all(cid.startswith(f"c{c}/") for cid in result.outputs["id"])


def test_shared_calls_get_every_pending_request_once_and_resume(tmp_path: Path) -> None:
    calls: list[list[tuple[int, str]]] = []

    def many(pending: Sequence[tuple[int, PopulationRequest]]) -> list[list[str]]:
        calls.append([(i, r.kind) for i, r in pending])
        api = toy.Points()
        return [generate(r, api, api) for _, r in pending]

    seen: list[int] = []
    first = evolve_together(_jobs(tmp_path), embed=toy.parse, generate_many=many,
                            prefetch=lambda p: seen.append(len(p)))  # fmt: skip
    assert calls == [[(0, "random"), (1, "random")], [(0, "vary"), (1, "vary")],
                     [(0, "vary"), (1, "vary")]]  # fmt: skip
    assert seen == [120, 120, 120]
    # a crash after class 0 wrote population 2 but before class 1 did: only class 1's request
    # is made again, and every finished release is reused, not drawn again
    shutil.rmtree(tmp_path / "class-1")
    (tmp_path / "class-0" / "release-002.json").unlink()
    calls.clear()
    again = evolve_together(_jobs(tmp_path), embed=toy.parse, generate_many=many)
    assert calls == [[(1, "random")], [(1, "vary")], [(1, "vary")]]
    assert again[0].releases[0].reused and not again[1].releases[0].reused
    # (fixed test noise and public seeds: the remade class and release come out the same)
    assert [r.outputs for r in again] == [r.outputs for r in first]


def test_lock_step_needs_one_number_of_iterations(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    jobs[1].settings = toy.settings(iterations=4)
    with pytest.raises(ValueError, match="one number of iterations"):
        evolve_together(jobs, embed=toy.parse)
