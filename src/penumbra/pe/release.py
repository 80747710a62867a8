"""One DP release and where it becomes durable: the release record (noisy integer votes,
σ, the selection), the hash that binds it to its candidates, the journal that must hold it
before it is used, and the voter whose histogram arrives already noised (secure aggregation)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from penumbra.privacy.discrete import ACCOUNTANT


@runtime_checkable
class NoisyVoter(Protocol):
    """A voter whose histogram arrives already noised (secure aggregation: the aggregators add
    the noise, so the clean histogram never exists in this process).

    The engine then adds no noise of its own: it records `sigma` (the noise accounted in ε,
    in histogram units) in every release, asks `epsilon(steps, delta)` for the cumulative ε
    and still refuses an iteration that would overspend, and still writes each release
    durably before it is used. `iteration` lets the voter name and resume its rounds.
    """

    sigma: float

    def epsilon(self, steps: int, delta: float) -> float: ...

    def __call__(self, embeddings: np.ndarray, iteration: int) -> np.ndarray: ...


class ReleaseJournal(Protocol):
    """Where releases become durable before use (the run's signed ledger). The engine asks it
    before drawing noise, so a release file deleted or lost after a crash is rebuilt from the
    journal instead of being drawn again."""

    def recorded(self, iteration: int, candidate_ids: Sequence[str]) -> Release | None:
        """The recorded release of `iteration`, rebuilt for these candidates; None if none."""
        ...

    def latest(self) -> int:
        """The highest iteration with a recorded release; −1 when there is none."""
        ...

    def record(self, release: Release) -> None:
        """Make `release` durable; raise if a different release is recorded for its iteration."""
        ...


@dataclass(frozen=True)
class Release:
    """One DP release: publishing it costs no privacy beyond the accounted ε."""

    iteration: int
    sigma: float
    threshold: float
    candidate_ids: list[str]
    candidate_hash: str
    noisy: list[float]
    selected: list[int]
    cumulative_epsilon: float
    delta: float
    fixed_noise_seed: bool
    k: int = 1
    accountant: str = ACCOUNTANT
    noisy_votes: list[int] | None = None  # the integer release; `noisy` is noisy_votes / √k
    reused: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("reused")
        return data


def candidate_hash(ids: Sequence[str], payloads: Sequence[str]) -> str:
    h = hashlib.sha256()
    for cid, payload in zip(ids, payloads, strict=True):
        h.update(cid.encode() + b"\0" + payload.encode("utf-8") + b"\n")
    return h.hexdigest()
