"""Several Private Evolution runs in lock-step, sharing their model calls (one per class).

A labelled run is one PE per class. Run one after another, each class's LLM calls are small
batches, and an LLM's cost per call barely grows with the batch: ten classes cost nearly ten
times one. In lock-step, iteration t of every run is made before iteration t+1 of any, so all
the runs' population requests go to the model in one call (`generate_many`) and all their new
candidates can be rendered in one pass (`prefetch`). Each run keeps its own folder, settings,
voter and journal, and draws its releases exactly as `evolve` does (durably, before use,
never twice), run by run in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from penumbra.pe.evolve import (
    Embed,
    EvolveResult,
    EvolveSettings,
    NoisyVoter,
    PopulationRequest,
    RandomAPI,
    Release,
    ReleaseJournal,
    VariationAPI,
    _Loop,
    finish,
    generate,
)
from penumbra.pe.store import read_population
from penumbra.pe.voting import Voter

GenerateMany = Callable[[Sequence[tuple[int, PopulationRequest]]], list[list[str]]]


@dataclass
class EvolveJob:
    """One of the runs: its folder, settings, APIs, voter and journal."""

    folder: Path
    settings: EvolveSettings
    random_api: RandomAPI
    variation_api: VariationAPI
    voter: Voter | NoisyVoter
    journal: ReleaseJournal | None = None


def evolve_together(
    jobs: Sequence[EvolveJob],
    *,
    embed: Embed,
    generate_many: GenerateMany | None = None,
    prefetch: Callable[[list[str]], Any] | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
) -> list[EvolveResult]:
    """Run (or resume) every job in lock-step; one result per job, in order.

    `generate_many` gets the (job index, request) of every population still to make at one
    iteration and returns each one's payloads; without it each job calls its own API.
    `prefetch` sees the payloads of all new candidates of an iteration before any vote (e.g.
    to render them in one batch). `on_iteration(done, total)` counts releases over all jobs."""
    if not jobs:
        return []
    iterations = {job.settings.iterations for job in jobs}
    if len(iterations) != 1:
        raise ValueError(f"lock-step runs need one number of iterations, got {iterations}")
    steps = iterations.pop()
    loops = []
    for job in jobs:
        job.settings.validate()
        job.folder.mkdir(parents=True, exist_ok=True)
        loop = _Loop(job.folder, job.settings, job.random_api, job.variation_api, embed,
                     job.voter, job.journal)  # fmt: skip
        loop.check_state()
        loops.append(loop)
    previous: list[Release | None] = [None] * len(jobs)
    rows: list[dict[str, list[Any]]] = [{} for _ in jobs]
    releases: list[list[Release]] = [[] for _ in jobs]
    done = 0

    def make(
        pending: list[tuple[int, PopulationRequest]], t: int
    ) -> dict[int, dict[str, list[Any]]]:
        """Population t of each pending job, from one model call, written durably."""
        if not pending:
            return {}
        if generate_many is not None:
            made = generate_many(pending)
        else:
            made = [generate(r, loops[i].random_api, loops[i].variation_api) for i, r in pending]
        return {i: loops[i].write_population(t, request, payloads)
                for (i, request), payloads in zip(pending, made, strict=True)}  # fmt: skip

    for t in range(steps):
        pending: list[tuple[int, PopulationRequest]] = []
        for i, loop in enumerate(loops):
            path = loop.folder / f"population-{t:03d}.parquet"
            if path.exists():
                rows[i] = read_population(path)
            else:
                pending.append((i, loop.request(t, previous[i])))
        for i, made in make(pending, t).items():
            rows[i] = made
        fresh = [i for i, loop in enumerate(loops)
                 if not (loop.folder / f"release-{t:03d}.json").exists()]  # fmt: skip
        if prefetch is not None and fresh:
            prefetch([p for i in fresh for p in rows[i]["payload"]])
        for i, loop in enumerate(loops):
            previous[i] = loop.release(t, rows[i])
            releases[i].append(previous[i])  # type: ignore[arg-type]
            done += 1
            if on_iteration is not None:
                on_iteration(done, steps * len(jobs))
    # every class's final population in one model call, as the iterations' are
    make([(i, loop.request(steps, previous[i])) for i, loop in enumerate(loops)
          if loop.s.final == "variations"
          and not (loop.folder / f"population-{steps:03d}.parquet").exists()], steps)  # fmt: skip
    return [
        finish(loop, rows[i], previous[i], releases[i])  # type: ignore[arg-type]
        for i, loop in enumerate(loops)
    ]
