"""What a run will do, before it touches anything: σ, model calls, wall time and the
signal-to-noise check (`penumbra synthesize --dry-run` prints it). Public quantities only."""

from __future__ import annotations

from dataclasses import dataclass, field

from penumbra.pe.evolve import EvolveSettings
from penumbra.privacy import discrete_gaussian_sigma


@dataclass(frozen=True)
class CallCosts:
    """Seconds per item for each model call, measured on a small probe or assumed."""

    random: float = 0.0
    variation: float = 0.0
    embed: float = 0.0
    vote_throughput: float = 1e11  # n·m·d per second (bench/voting.py; ~1e11 on 2 CPU cores)


@dataclass
class Plan:
    """What a run will do, before it touches anything."""

    sigma: float
    sizes: list[int]
    random_calls: int
    variation_calls: int
    embeddings: int
    votes_per_candidate: float
    seconds: float
    warnings: list[str]
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"σ = {self.sigma:.4g} per release, {len(self.sizes)} releases",
            f"population sizes: {self.sizes}",
            *self.notes,
            f"random-API items: {self.random_calls}, variation-API items: {self.variation_calls}",
            f"embeddings: {self.embeddings}",
            f"expected votes per candidate: {self.votes_per_candidate:.1f}",
            f"estimated wall time: {self.seconds / 60:.1f} min",
            *[f"warning: {w}" for w in self.warnings],
        ]


def plan_run(
    settings: EvolveSettings,
    n_private: int,
    *,
    costs: CallCosts | None = None,
    dim: int = 384,
) -> Plan:
    """Model calls, wall time and signal-to-noise of a run, with suggestions when the noise
    will dominate. Uses only public quantities (N is the size of the private set)."""
    settings.validate()
    costs = costs or CallCosts()
    sigma = discrete_gaussian_sigma(
        settings.epsilon, settings.delta, settings.iterations, settings.k, extra=settings.extra
    )
    sizes = settings.sizes()
    variation_calls = sum(sizes[1:]) + settings.lookahead * sum(sizes)
    if settings.final == "variations":
        variation_calls += settings.num_outputs
    embeddings = sum(sizes) * max(1, settings.lookahead)
    per_candidate = n_private / max(sizes)
    seconds = (
        sizes[0] * costs.random
        + variation_calls * costs.variation
        + embeddings * costs.embed
        + sum(n_private * m * dim for m in sizes) / costs.vote_throughput
    )
    warnings = []
    if per_candidate < 2 * sigma:
        warnings.append(
            f"expected votes per candidate ({per_candidate:.1f}) is below 2σ ({2 * sigma:.1f}): "
            "the noise will drown the signal; use fewer candidates "
            f"(<= {max(1, int(n_private / (2 * sigma)))}), fewer iterations, or a larger ε"
        )
    return Plan(
        sigma, sizes, sizes[0], variation_calls, embeddings, per_candidate, seconds, warnings
    )
