"""One file per task: folders of media processed on any engine, each file's failure its own.

The work function writes its output itself (atomically, as every anonymizer does), so a file
is either finished or absent whichever worker ran it; a worker killed mid-file is retried by
Ray and rewrites the same output. On a cluster the input and output folders must be on
storage every node mounts at the same path (README "Running on a cluster").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from penumbra.compute.engine import Engine
from penumbra.errors import PenumbraError

J = TypeVar("J")


def _guarded(_model: Any, item: tuple[Callable[[Any], Any], Any]) -> tuple[Any, list[str]]:
    work, job = item
    try:
        return work(job), []
    except PenumbraError as e:  # bad input in one file: that file's lines, not the run's end
        return None, list(e.problems)


def per_file(
    engine: Engine, work: Callable[[J], Any], jobs: Sequence[J]
) -> Iterator[tuple[J, Any, list[str]]]:
    """(job, result, problems) for each job, in order, one job per task; `work` must be a
    module-level function (or a partial of one) so a Ray worker can import it."""
    outcomes = engine.map(_guarded, ((work, job) for job in jobs))
    for job, (result, problems) in zip(jobs, outcomes, strict=True):
        yield job, result, problems
