"""The Private Evolution loop, modality-agnostic and crash-safe.

Per iteration: candidates (random API, then variations of the last selection) → embeddings →
`voter(embeddings)` (the only contact with private data) → exact discrete Gaussian noise on the
integer votes → threshold → selection. Each population is written atomically before it is
used; each noisy histogram is recorded in the run's journal (the ledger) and then written
atomically, before it is used. A resumed run rebuilds a finished release from its file or, if
the file is gone, from the journal, and refuses to draw noise for an iteration when later
iterations already exist: no iteration ever has two different releases. σ is calibrated once
from (ε, δ, T, k) with the discrete Gaussian's exact accountant and the run refuses any
iteration that would overspend ε.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from penumbra.errors import PenumbraError
from penumbra.pe.mechanism import Selection, add_discrete_gaussian_noise, apply_threshold, select
from penumbra.pe.release import NoisyVoter, Release, ReleaseJournal, candidate_hash
from penumbra.pe.store import read_json, read_population, write_json, write_population
from penumbra.pe.voting import Voter
from penumbra.privacy import (
    discrete_gaussian_epsilon,
    discrete_gaussian_sigma,
    sampling_sigma,
    vote_noise_source,
)
from penumbra.privacy.discrete import ACCOUNTANT

_ARTEFACT = re.compile(r"(?:population|release)-(\d+)\.(?:parquet|json)")
STATE_VERSION = 2  # 1: continuous Gaussian noise (before the exact discrete sampler)


class PrivacyBudgetError(RuntimeError):
    """Starting the next DP release would spend more ε than the run's target."""


class RunStateError(PenumbraError):
    """The run folder does not match its own record (files missing, changed or out of order):
    continuing could release a second, different histogram for an iteration."""


class RandomAPI(Protocol):
    def random(self, count: int, *, seed: int) -> list[str]:
        """`count` fresh candidate payloads (caption text, or a path to an image file)."""
        ...


class VariationAPI(Protocol):
    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        """One variation per payload, same order."""
        ...


Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class EvolveSettings:
    epsilon: float
    delta: float
    iterations: int
    population: tuple[int, ...]  # candidates per iteration; one value repeats
    num_outputs: int
    lookahead: int = 0
    keep_selected: bool = False
    threshold: float = 0.0
    selection: Selection = "rank"  # parents of the next population
    output_selection: Selection = "proportional"  # the final set, from the last release
    seed: int = 0  # public randomness (generation, selection), safe to record
    k: int = 1  # votes per private sample; each adds 1/√k to a bin (L2 sensitivity 1)
    noise_seed: int | None = None  # tests only: fixed DP noise; recorded when used
    # A labelled run: candidate ids carry the class ("c3/"), and the DP class-count release
    # made before the loop is one more composition at the same noise (`extra` = 1).
    id_prefix: str = ""
    extra: int = 0
    # The final set: "draws" are the last release's selected candidates themselves (repeats
    # rendered with other seeds); "variations" is a final population, as in PE and SPTI: one
    # fresh variation of each selected parent (post-processing of DP captions, no ε), so
    # num_outputs outputs are num_outputs distinct samples.
    final: Literal["draws", "variations"] = "draws"

    def sizes(self) -> list[int]:
        if len(self.population) == 1:
            return [self.population[0]] * self.iterations
        if len(self.population) != self.iterations:
            raise ValueError(
                f"population schedule has {len(self.population)} sizes for "
                f"{self.iterations} iterations"
            )
        return list(self.population)

    def validate(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if any(s < 1 for s in self.sizes()):
            raise ValueError("every population size must be >= 1")
        if self.num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {self.num_outputs}")
        if self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


@dataclass
class EvolveResult:
    outputs: dict[str, list[Any]]  # the final selection, with lineage columns
    releases: list[Release]
    sigma: float
    epsilon_spent: float


def _seed(seed: int, iteration: int, purpose: str) -> int:
    tag = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:4], "big")
    return int(np.random.SeedSequence([seed, iteration, tag]).generate_state(1)[0])


@dataclass
class PopulationRequest:
    """One population's call to the random API (`count` fresh payloads) or the variation API
    (one variation of each of `payloads`), with the seed to use; `kept` are parents kept as
    they are (keep_selected), `parents`/`folds` the lineage columns of the whole population."""

    kind: str  # "random" | "vary"
    seed: int
    count: int
    parents: list[str]
    folds: list[int]
    payloads: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def generate(request: PopulationRequest, random_api: RandomAPI, variation_api: VariationAPI
             ) -> list[str]:  # fmt: skip
    if request.count == 0:
        return []
    if request.kind == "random":
        return random_api.random(request.count, seed=request.seed)
    return variation_api.vary(request.payloads, seed=request.seed)


class _Loop:
    def __init__(
        self,
        folder: Path,
        settings: EvolveSettings,
        random_api: RandomAPI,
        variation_api: VariationAPI,
        embed: Embed,
        voter: Voter | NoisyVoter,
        journal: ReleaseJournal | None = None,
    ) -> None:
        self.folder = folder
        self.journal = journal
        self.s = settings
        self.random_api = random_api
        self.variation_api = variation_api
        self.embed = embed
        self.voter = voter
        self.sizes = settings.sizes()
        self.noisy_voter = voter if isinstance(voter, NoisyVoter) else None
        if self.noisy_voter is not None:
            self.sigma = float(self.noisy_voter.sigma)
        else:
            self.sigma = discrete_gaussian_sigma(
                settings.epsilon, settings.delta, settings.iterations, settings.k,
                extra=settings.extra,
            )  # fmt: skip
        self.accountant = str(getattr(self.noisy_voter, "accountant", ACCOUNTANT))

    def spent(self, steps: int) -> float:
        if self.noisy_voter is not None:
            return float(self.noisy_voter.epsilon(steps, self.s.delta))
        return discrete_gaussian_epsilon(
            self.sigma, steps, self.s.delta, self.s.k, extra=self.s.extra
        )

    def check_state(self) -> None:
        """Record the run's privacy parameters; refuse to resume with different ones."""
        path = self.folder / "state.json"
        settings = {k: v for k, v in asdict(self.s).items() if k != "noise_seed"}
        settings["population"] = list(self.s.population)
        # as runs before labels (and before final populations) wrote it
        for name, unset in (("id_prefix", ""), ("extra", 0), ("final", "draws")):
            if settings[name] == unset:
                del settings[name]
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "settings": settings,
            "fixed_noise_seed": self.s.noise_seed is not None,
            "sigma": self.sigma,
            "accountant": self.accountant,
        }
        if path.exists():
            old = read_json(path)
            if old.get("version") != STATE_VERSION:
                raise RunStateError(
                    f"{path}: this run was started by an older penumbra (state version "
                    f"{old.get('version')}, continuous Gaussian noise); finish it with that "
                    "version or start a new run directory"
                )
            if old != state:
                raise RunStateError(
                    f"{path}: this run was started with other settings; resume it with the same "
                    "settings or start a new run directory"
                )
        else:
            write_json(path, state)

    def size(self, t: int) -> int:
        """Population t's size; t == iterations is the final population (one per output)."""
        return self.s.num_outputs if t == self.s.iterations else self.sizes[t]

    def population(self, t: int, previous: Release | None) -> dict[str, list[Any]]:
        path = self.folder / f"population-{t:03d}.parquet"
        if path.exists():
            return read_population(path)
        request = self.request(t, previous)
        return self.write_population(t, request, generate(request, self.random_api,
                                                          self.variation_api))  # fmt: skip

    def request(self, t: int, previous: Release | None) -> PopulationRequest:
        """What population t needs from the random or variation API (public randomness only):
        apart from the API call itself, so that several loops can share one call."""
        size = self.size(t)
        if t == 0:
            seed = _seed(self.s.seed, 0, "random")
            return PopulationRequest("random", seed, count=size, parents=[""] * size,
                                     folds=[0] * size)  # fmt: skip
        assert previous is not None
        prev = read_population(self.folder / f"population-{t - 1:03d}.parquet")
        chosen = previous.selected
        kept: list[int] = []
        if self.s.keep_selected and t < self.s.iterations:
            kept = list(dict.fromkeys(chosen))[:size]
        fill = size - len(kept)
        sources = [chosen[i % len(chosen)] for i in range(fill)]
        return PopulationRequest(
            "vary", _seed(self.s.seed, t, "vary"), count=fill,
            payloads=[prev["payload"][i] for i in sources],
            kept=[prev["payload"][i] for i in kept],
            parents=[prev["id"][i] for i in kept + sources],
            folds=[0] * len(kept) + [1 + sources[:i].count(j) for i, j in enumerate(sources)],
        )  # fmt: skip

    def write_population(
        self, t: int, request: PopulationRequest, generated: list[str]
    ) -> dict[str, list[Any]]:
        """Population t from its request and what the API wrote, durably before any use."""
        payloads = request.kept + list(generated)
        size = self.size(t)
        if len(payloads) != size:
            raise RuntimeError(f"iteration {t}: expected {size} candidates, got {len(payloads)}")
        rows: dict[str, list[Any]] = {
            "id": [f"{self.s.id_prefix}{t}-{i}" for i in range(size)],
            "parent_id": request.parents,
            "iteration": [t] * size,
            "fold": request.folds,
            "payload": payloads,
        }
        write_population(self.folder / f"population-{t:03d}.parquet", rows)
        return rows

    def embeddings(self, t: int, payloads: list[str]) -> np.ndarray:
        if self.s.lookahead == 0:
            return np.asarray(self.embed(payloads), dtype=np.float32)
        # PE lookahead: a candidate is represented by the mean embedding of its variations.
        repeated = payloads * self.s.lookahead
        varied = self.variation_api.vary(repeated, seed=_seed(self.s.seed, t, "lookahead"))
        emb = np.asarray(self.embed(varied), dtype=np.float32)
        mean: np.ndarray = emb.reshape(self.s.lookahead, len(payloads), -1).mean(axis=0)
        return mean

    def release(self, t: int, rows: dict[str, list[Any]]) -> Release:
        path = self.folder / f"release-{t:03d}.json"
        ids, payloads = rows["id"], rows["payload"]
        digest = candidate_hash(ids, payloads)
        recorded = self.journal.recorded(t, ids) if self.journal is not None else None
        if recorded is not None and recorded.candidate_hash != digest:
            raise RunStateError(
                f"the ledger's release {t} was made for other candidates than "
                f"population-{t:03d}.parquet: the run directory was modified; start a new run"
            )
        if path.exists():
            data = read_json(path)
            if data.get("candidate_hash") != digest:
                raise RunStateError(
                    f"{path}: release does not match population {t}; the run directory was "
                    "modified; start a new run"
                )
            release = Release(**data, reused=True)
            if self.journal is not None:
                if recorded is None:
                    # Releases reach the journal before their file: a file the journal lacks
                    # means the journal lost entries (wiped, cut back or replaced), and
                    # nothing it says about later iterations can be trusted.
                    raise RunStateError(
                        f"{path} exists but the ledger has no record of release {t}: the "
                        "ledger was removed or cut back; restore it or start a new run"
                    )
                self.journal.record(release)  # refuses a file that differs from the record
            return release
        if recorded is not None:  # the file was lost: the ledger holds the one true release
            write_json(path, recorded.to_json())
            return replace(recorded, reused=True)
        self.refuse_gap(t)
        spent = self.spent(t + 1)
        if spent > self.s.epsilon * (1 + 1e-9):
            raise PrivacyBudgetError(
                f"iteration {t} would spend ε={spent:.6g} > target {self.s.epsilon:g}"
            )
        if self.noisy_voter is not None:
            noisy = np.asarray(self.noisy_voter(self.embeddings(t, payloads), t), dtype=np.float64)
            if noisy.shape != (len(ids),):
                raise RuntimeError(f"voter returned shape {noisy.shape} for {len(ids)} candidates")
        else:
            voter: Voter = self.voter  # type: ignore[assignment]
            clean = np.asarray(voter(self.embeddings(t, payloads)), dtype=np.float64)
            if clean.shape != (len(ids),):
                raise RuntimeError(f"voter returned shape {clean.shape} for {len(ids)} candidates")
            votes = integer_votes(clean, self.s.k)
            del clean
            noisy_votes = add_discrete_gaussian_noise(
                votes, sampling_sigma(self.sigma, self.s.k), vote_noise_source(self.s.noise_seed, t)
            )
            del votes  # only the noisy histogram may leave this function
            noisy = noisy_votes / np.sqrt(self.s.k)
        weights = apply_threshold(noisy, self.s.threshold)
        last = t + 1 == self.s.iterations
        count = self.s.num_outputs if last else self.sizes[t + 1]
        rng = np.random.default_rng(_seed(self.s.seed, t, "select"))
        selected = select(
            weights, count, self.s.output_selection if last else self.s.selection, rng
        )
        release = Release(
            iteration=t,
            sigma=self.sigma,
            threshold=self.s.threshold,
            candidate_ids=list(ids),
            candidate_hash=digest,
            noisy=[float(v) for v in noisy],
            selected=[int(i) for i in selected],
            cumulative_epsilon=spent,
            delta=self.s.delta,
            fixed_noise_seed=self.s.noise_seed is not None,
            k=self.s.k,
            accountant=self.accountant,
            noisy_votes=None if self.noisy_voter is not None else [int(v) for v in noisy_votes],
        )
        if self.journal is not None:
            self.journal.record(release)  # in the signed log first: a lost file is rebuilt
        write_json(path, release.to_json())  # durable before anything uses it
        return release

    def refuse_gap(self, t: int) -> None:
        """Release t is about to be drawn: nothing of a later iteration may exist already."""
        numbered = (_ARTEFACT.fullmatch(p.name) for p in sorted(self.folder.iterdir()))
        later = [m.group(0) for m in numbered if m is not None and int(m.group(1)) > t]
        if self.journal is not None and self.journal.latest() > t:
            later.append(f"ledger release {self.journal.latest()}")
        if later:
            raise RunStateError(
                f"{self.folder / f'release-{t:03d}.json'} is missing but later iterations exist "
                f"({', '.join(later[:3])}): refusing to draw new noise for iteration {t}; "
                "restore the file from a backup or start a new run"
            )


def evolve(
    folder: Path | str,
    *,
    random_api: RandomAPI,
    variation_api: VariationAPI,
    embed: Embed,
    voter: Voter | NoisyVoter,
    settings: EvolveSettings,
    on_release: Callable[[Release], None] | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
    journal: ReleaseJournal | None = None,
) -> EvolveResult:
    """Run (or resume) Private Evolution in `folder` and return the DP-selected outputs.

    `voter` is a plain `Voter` (clean histogram; the engine adds Gaussian noise) or a
    `NoisyVoter` (already noised; the engine uses its σ and accountant). `on_release` sees
    every release the run uses, new or reused (`release.reused`), after it
    is on disk and before it is used; `on_iteration(t, T)` reports progress. `journal` (the
    run's ledger) records each release before its file is written and is consulted before
    any noise is drawn.
    """
    settings.validate()
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    loop = _Loop(root, settings, random_api, variation_api, embed, voter, journal)
    loop.check_state()
    releases: list[Release] = []
    previous: Release | None = None
    rows: dict[str, list[Any]] = {}
    for t in range(settings.iterations):
        rows = loop.population(t, previous)
        previous = loop.release(t, rows)
        if on_release is not None:
            on_release(previous)
        releases.append(previous)
        if on_iteration is not None:
            on_iteration(t + 1, settings.iterations)
    assert previous is not None
    return finish(loop, rows, previous, releases)


def finish(
    loop: _Loop, rows: dict[str, list[Any]], last: Release, releases: list[Release]
) -> EvolveResult:
    """The outputs (the last release's selection, or one fresh variation of each selected
    candidate: the final population), with their lineage, and the ε spent."""
    if loop.s.final == "variations":
        final = loop.population(loop.s.iterations, last)
        ids, payloads = list(final["id"]), list(final["payload"])
        iterations = [loop.s.iterations] * len(ids)
        lineage = _lineage(loop.folder, loop.s.iterations + 1)
    else:
        ids = [rows["id"][i] for i in last.selected]
        payloads = [rows["payload"][i] for i in last.selected]
        iterations = [rows["iteration"][i] for i in last.selected]
        lineage = _lineage(loop.folder, loop.s.iterations)
    outputs: dict[str, list[Any]] = {"id": ids, "payload": payloads, "iteration": iterations,
                                     "lineage": [lineage[cid] for cid in ids]}  # fmt: skip
    return EvolveResult(outputs, releases, loop.sigma, loop.spent(loop.s.iterations))


def integer_votes(histogram: np.ndarray, k: int) -> np.ndarray:
    """The voter's histogram (k-NN counts / √k) back as exact integer counts; refuses anything
    else, since the accountant's sensitivity assumes integer votes."""
    scaled = np.asarray(histogram, dtype=np.float64) * np.sqrt(k)
    votes = np.rint(scaled)
    if not np.all(np.abs(scaled - votes) < 1e-6) or (votes < 0).any():
        raise ValueError(f"the voter must return k-NN vote counts divided by √k (k={k})")
    result: np.ndarray = votes.astype(np.int64)
    return result


def _lineage(root: Path, iterations: int) -> dict[str, list[str]]:
    """Candidate id → chain of ancestor ids (itself first, back to the random population)."""
    parent: dict[str, str] = {}
    for t in range(iterations):
        rows = read_population(root / f"population-{t:03d}.parquet")
        parent.update(zip(rows["id"], rows["parent_id"], strict=True))
    chains: dict[str, list[str]] = {}
    for cid in parent:
        chain = [cid]
        while parent.get(chain[-1]):
            chain.append(parent[chain[-1]])
        chains[cid] = chain
    return chains


__all__ = [
    "EvolveResult",
    "EvolveSettings",
    "NoisyVoter",
    "PrivacyBudgetError",
    "RandomAPI",
    "Release",
    "ReleaseJournal",
    "RunStateError",
    "VariationAPI",
    "evolve",
]
