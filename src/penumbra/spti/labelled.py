"""Labelled runs: one Private Evolution per class (DESIGN.md: parallel composition).

Each class's private images vote only on that class's candidates, which the LLM writes about
the class's public words; the classes' private subsets are disjoint, so the run spends one
class's ε. How many outputs (and, with `pe.population: auto`, candidates) a class gets comes
from a DP release of the class counts, logged before use and accounted as one more
composition at the votes' noise, or from public fractions the user gives; the exact private
class counts are never used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from penumbra.config import RunConfig
from penumbra.data.images import ReadReport, scan_image_files
from penumbra.data.labels import Labels, read_labels
from penumbra.errors import ConfigError, DataError
from penumbra.ledger.records import LedgerJournal, record_class_counts
from penumbra.pe.classes import (
    class_output_counts,
    class_population,
    class_seed,
    class_sizes,
    class_weights,
)
from penumbra.pe.evolve import EvolveResult, EvolveSettings, PopulationRequest, RunStateError
from penumbra.pe.lockstep import EvolveJob, GenerateMany, evolve_together
from penumbra.pe.mechanism import add_discrete_gaussian_noise
from penumbra.privacy import discrete_gaussian_epsilon, sampling_sigma, vote_noise_source
from penumbra.privacy.discrete import ACCOUNTANT
from penumbra.spti.slot_api import SlotCaptionAPI
from penumbra.spti.text_api import LLMCaptionAPI

COUNTS_NOISE_TAG = 1_000_003  # the count release's noise stream (tests with fixed noise only)


@dataclass
class ClassPlan:
    """What each class gets, from public numbers only (noisy counts or public fractions)."""

    classes: list[str]
    outputs: list[int]
    populations: list[int]


def count_extra(cfg: RunConfig) -> int:
    """Compositions besides the votes: 1 for the DP class-count release, 0 with public
    fractions or without labels."""
    return 1 if cfg.data.labels is not None and cfg.output.class_fractions is None else 0


def check_labelled_config(cfg: RunConfig, external: bool) -> None:
    if cfg.data.labels is None:
        if cfg.output.class_fractions is not None:
            raise ConfigError("output.class_fractions needs labels: add --labels folders|metadata")
        return
    if cfg.modality != "image":
        raise ConfigError("data.labels: labelled runs are image runs; remove --labels for texts")
    if external:
        raise ConfigError(
            "data.labels: labelled runs with secure aggregation are not supported yet; run "
            "without --labels"
        )


def read_private_labels(cfg: RunConfig, source: Path) -> Labels:
    """Labels of every private image file (before any is embedded: a bad label fails fast).
    Resolves `data.classes` in `cfg` from the folders or label values when not given. A file
    reachable under two labels (links) is refused: one image is in one class only."""
    assert cfg.data.labels is not None
    listing = scan_image_files(source)
    labels = read_labels(
        source, listing.files, cfg.data.labels, cfg.data.classes, aliases=listing.aliases
    )
    if cfg.data.classes is None:
        cfg.data.classes = labels.classes
    fractions = cfg.output.class_fractions
    if fractions is not None and set(fractions) != set(labels.classes):
        missing = sorted(set(labels.classes) - set(fractions))
        extra = sorted(set(fractions) - set(labels.classes))
        what = f"lacks {missing[0]!r}" if missing else f"names {extra[0]!r}, not a class"
        raise ConfigError(
            f"output.class_fractions {what}; give one fraction for each of the "
            f"{len(labels.classes)} classes"
        )
    if cfg.output.num_images < len(labels.classes):
        raise ConfigError(
            f"output.num_images={cfg.output.num_images} cannot hold one image of each of the "
            f"{len(labels.classes)} classes; raise it"
        )
    return labels


def embedded_labels(labels: Labels, report: ReadReport | None, count: int) -> np.ndarray:
    """The labels of the `count` images that were embedded (unreadable ones were skipped, in
    order); a folder that changed since its labels were read is refused, not mislabelled."""
    skipped = {rel for rel, _ in (report.skipped if report is not None else [])}
    kept = [
        label
        for rel, label in zip(labels.relpaths, labels.labels, strict=True)
        if rel not in skipped
    ]
    if len(kept) != count:
        raise DataError(
            f"the private folder changed while the run read it ({len(kept)} labelled images, "
            f"{count} embedded); rerun on a folder that is not being written to"
        )
    return np.asarray(kept, dtype=np.int64)


def release_class_counts(
    ledger: Any,
    labels: np.ndarray,
    n_classes: int,
    settings: EvolveSettings,
    sigma: float,
    folder: Path,
) -> list[int]:
    """The DP class counts: reused from the ledger on resume (never drawn twice), else drawn
    with the votes' integer noise and logged before anything uses them. `folder` is the run
    folder."""
    logged = list(ledger.find("class_counts"))
    if logged:
        counts = [int(c) for c in logged[0][1]["noisy_counts"]]
        if len(counts) != n_classes:
            raise DataError(
                f"{ledger.dir}: the logged class counts are for {len(counts)} classes, the "
                f"run has {n_classes}; start a new run"
            )
        return counts
    started = list(ledger.find("release")) or list((folder / "candidates").glob("class-*"))
    if started:
        # counts are logged before any class starts: a run past that point without them lost
        # ledger entries, and drawing them again would release the counts a second time
        raise RunStateError(
            f"{ledger.dir}: the run's classes have started but the ledger holds no class "
            "counts: it was cut back or replaced; restore it or start a new run"
        )
    clean = np.bincount(labels, minlength=n_classes).astype(np.int64)
    noisy = add_discrete_gaussian_noise(
        clean,
        sampling_sigma(sigma, settings.k),
        vote_noise_source(settings.noise_seed, COUNTS_NOISE_TAG),
    )
    del clean  # only the noisy counts leave this function
    record_class_counts(
        ledger, noisy_counts=[int(c) for c in noisy], sigma=sigma, k=settings.k,
        delta=settings.delta,
        cumulative_epsilon=discrete_gaussian_epsilon(sigma, 0, settings.delta, settings.k,
                                                     extra=1),
        fixed_noise_seed=settings.noise_seed is not None, accountant=ACCOUNTANT,
    )  # fmt: skip
    return [int(c) for c in noisy]


def plan_classes(
    cfg: RunConfig, noisy_counts: list[int] | None, n_accounted: int, sigma: float
) -> ClassPlan:
    assert cfg.data.classes is not None
    classes = list(cfg.data.classes)
    fractions = cfg.output.class_fractions
    weights = class_weights(classes, noisy_counts=noisy_counts, fractions=fractions)
    sizes = class_sizes(
        classes, noisy_counts=noisy_counts, fractions=fractions, n_accounted=n_accounted
    )
    if cfg.pe.population == "auto":
        populations = [class_population(s, sigma, cfg.pe.max_population) for s in sizes]
    else:
        populations = [int(cfg.pe.population)] * len(classes)
    outputs = class_output_counts(weights, cfg.output.num_images)
    return ClassPlan(classes, outputs, populations)


def class_settings(settings: EvolveSettings, plan: ClassPlan, label: int) -> EvolveSettings:
    return replace(
        settings,
        population=(plan.populations[label],),
        num_outputs=plan.outputs[label],
        seed=class_seed(settings.seed, label),
        id_prefix=f"c{label}/",
    )


def _no_votes(candidates: np.ndarray) -> np.ndarray:
    """The voter of a class with no private image: every bin gets only noise."""
    return np.zeros(len(candidates), dtype=np.float64)


def generate_together(apis: Sequence[LLMCaptionAPI | SlotCaptionAPI]) -> GenerateMany:
    """The classes' population requests of one iteration as ONE batch of LLM prompts (each
    class's prompts name its own words): an LLM call costs nearly the same for 15 prompts as
    for 150, so ten classes cost about one."""

    def many(pending: Sequence[tuple[int, PopulationRequest]]) -> list[list[str]]:
        parts: list[Any] = []  # one API kind's requests (Prompts or SlotRequests) add up
        for i, request in pending:
            api = apis[i]
            if request.kind == "random":
                parts.append(api.random_prompts(request.count, seed=request.seed))
            else:
                parts.append(api.vary_prompts(request.payloads if request.count else []))
        seeds = [request.seed for _, request in pending]
        seed = int(np.random.SeedSequence(seeds).generate_state(1)[0] >> 1)
        combined = sum(parts[1:], parts[0])
        replies = apis[pending[0][0]].complete(combined, seed) if combined.prompts else []
        out, start = [], 0
        for part in parts:
            out.append(replies[start : start + len(part.prompts)])
            start += len(part.prompts)
        return out

    return many


def evolve_classes(
    folder: Path,
    *,
    plan: ClassPlan,
    settings: EvolveSettings,
    embeddings: np.ndarray,
    labels: np.ndarray,
    apis: Sequence[LLMCaptionAPI | SlotCaptionAPI],
    embed: Any,
    engine: Any,
    metric: str,
    ledger: Any,
    on_iteration: Any,
    tree: Any = None,
) -> EvolveResult:
    """PE for every class in lock-step (`pe.lockstep`), in candidates/class-NNN/; the outputs,
    class by class, with their `label`. Each class's voter holds only that class's private
    embeddings; the LLM calls and renders of all classes share batches."""
    jobs = []
    for c in range(len(plan.classes)):
        members = embeddings[labels == c]
        voter = engine.voter(members, k=settings.k, metric=metric) if len(members) else _no_votes
        jobs.append(EvolveJob(
            folder / f"class-{c:03d}", class_settings(settings, plan, c), apis[c], apis[c],
            voter, LedgerJournal(ledger, k=settings.k, label=c, tree=tree),
        ))  # fmt: skip
    results = evolve_together(
        jobs, embed=embed, generate_many=generate_together(apis),
        prefetch=embed if hasattr(embed, "render") else None,
        on_iteration=lambda done, _total: on_iteration(done),
    )  # fmt: skip
    del jobs
    merged: dict[str, list[Any]] = {"id": [], "payload": [], "iteration": [], "lineage": []}
    merged["label"] = []
    for c, result in enumerate(results):
        for key in ("id", "payload", "iteration", "lineage"):
            merged[key] += result.outputs[key]
        merged["label"] += [c] * len(result.outputs["id"])
    releases = [r for result in results for r in result.releases]
    spent = max(result.epsilon_spent for result in results)
    return EvolveResult(merged, releases, results[0].sigma, spent)
