"""Where work runs: in this process, or on a Ray cluster, with the same results either way.

A stage gives the engine a plain module-level function, the model it needs and a list of
batches; the engine applies the function to each batch next to that model and hands the
results back in order. Batch boundaries are the caller's, never the engine's, so a batch is
computed the same way whatever the number of workers: that is what makes a run on a cluster
reproduce a local run exactly (DESIGN.md: "same results either way").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from penumbra.compute.ray_folder import remove_stale_ray_folder
from penumbra.compute.spec import ModelSpec
from penumbra.config import ComputeConfig
from penumbra.pe.voting import Voter, local_voter

# ModelSpec (penumbra.compute.spec) is part of what an engine takes, so it is offered here too
__all__ = ["Engine", "LocalEngine", "ModelSpec", "batched", "engine_for_cli", "open_engine"]

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """What a stage needs from where it runs."""

    name: str
    workers: int

    def model(self, spec: ModelSpec) -> Any:
        """A handle with the model's protocol (`generate`, `embed`...) and `fingerprint`."""
        ...

    def map(
        self, fn: Callable[[Any, T], R], batches: Iterable[T], *, model: Any = None
    ) -> Iterator[R]:
        """`fn(model, batch)` for every batch, results in the batches' order."""
        ...

    def voter(self, private: np.ndarray, *, k: int, metric: str) -> Voter:
        """`votes = voter(candidate_embeddings)`: exact clean votes, the same on any engine."""
        ...

    def close(self) -> None: ...


class LocalEngine:
    """Everything in this process: models are the real objects, batches run one by one.
    With `threads`, torch uses that many threads until `close()` (as a Ray actor does)."""

    name = "local"
    workers = 1

    def __init__(self, threads: int | None = None) -> None:
        self._restore: int | None = None
        if threads is not None:
            import torch

            self._restore = torch.get_num_threads()
            torch.set_num_threads(threads)

    def model(self, spec: ModelSpec) -> Any:
        return spec.load()

    def map(
        self, fn: Callable[[Any, T], R], batches: Iterable[T], *, model: Any = None
    ) -> Iterator[R]:
        for batch in batches:
            yield fn(model, batch)

    def voter(self, private: np.ndarray, *, k: int, metric: str) -> Voter:
        return local_voter(private, k=k, metric=metric)

    def close(self) -> None:
        if self._restore is not None:
            import torch

            torch.set_num_threads(self._restore)
            self._restore = None


def open_engine(config: ComputeConfig, *, private_dir: Path | None = None) -> Engine:
    """The engine `config` asks for; `private_dir` takes what a private Ray instance spills.

    A cluster that cannot be reached, or Ray not installed, is a `ComputeError` (one line,
    exit 2) raised here, before any model is loaded or any private file is read."""
    if private_dir is not None:
        remove_stale_ray_folder(private_dir)
    if config.engine == "local":
        return LocalEngine(threads=config.cpus_per_worker)
    from penumbra.compute.ray_engine import RayEngine

    return RayEngine(config, private_dir=private_dir)


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    """Fixed-size batches in order: the unit of work on every engine."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def engine_for_cli(address: str | None, *, option: str = "--ray") -> Engine:
    """The engine of a command without a run config: `--ray ADDRESS`, or this process."""
    if address is None:
        return LocalEngine()
    from pydantic import ValidationError

    from penumbra.errors import ConfigError

    try:
        config = ComputeConfig(engine="ray", address=address)
    except ValidationError as e:
        raise ConfigError(
            f"{option}: {e.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from None
    return open_engine(config)
