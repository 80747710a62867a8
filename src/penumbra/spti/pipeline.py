"""`penumbra synthesize`: SPTI end to end, resumable, audited.

config → models → private embeddings (holder boundary) → PE over captions [LLM random API →
render → embed → vote → noise → select → ledger → LLM variation] × T → final render →
synthetic/ (imagefolder) + ledger + report.html. The stages live in `spti.stages`; this module
resolves the config, runs the pre-flight and calls the stages in order.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from penumbra.compute import Engine, open_engine
from penumbra.config import (
    RunConfig,
    config_hash,
    load_config,
    problem_lines,
    write_config,
)
from penumbra.config.overrides import apply_overrides
from penumbra.data.labels import Labels
from penumbra.durable import run_lock
from penumbra.errors import ConfigError, DataError, PenumbraError
from penumbra.models.remote import require_local_private
from penumbra.pe.classes import class_population
from penumbra.pe.evolve import EvolveSettings
from penumbra.pe.plan import Plan, plan_run
from penumbra.privacy import (
    check_delta_for,
    default_delta,
    discrete_gaussian_epsilon,
    discrete_gaussian_sigma,
)
from penumbra.provenance.pdq import load_blocklist
from penumbra.spti import stages
from penumbra.spti.labelled import (
    check_labelled_config,
    count_extra,
    embedded_labels,
    read_private_labels,
)
from penumbra.spti.slot_api import check_slot_config
from penumbra.spti.stages import ExternalVoting, Stages

__all__ = ["ExternalVoting", "Run", "preflight", "resolve_run_config", "synthesize"]


@dataclass
class Run:
    """What a finished run produced (everything is also on disk under run_dir)."""

    run_dir: Path
    epsilon_spent: float
    epsilon_target: float
    delta: float
    sigma: float
    iterations: int
    num_images: int
    n_private: int | None  # None when privacy.public_n keeps the exact N unpublished
    skipped_private: int | None
    report: Path
    stage_seconds: dict[str, float] = field(default_factory=dict)
    models: list[dict[str, str]] = field(default_factory=list)
    # LLM prompts of this process, and how many needed a retry or fell back
    captions: dict[str, float] = field(default_factory=dict)


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
        transient=False,
    )


def _policy_recorded(out: Path) -> bool:
    path = out / "ledger" / "entries.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return any('"type":"policy"' in line.replace(" ", "") for line in lines)


def resolve_run_config(
    out: Path,
    *,
    config: RunConfig | Path | str | None,
    epsilon: float | None,
    delta: float | None,
    overrides: Sequence[str],
    resume: bool,
) -> RunConfig:
    run_yaml = out / "run.yaml"
    if resume:
        if not run_yaml.is_file():
            raise DataError(f"{out}: not a run to resume (no run.yaml); start it without --resume")
        resolved = load_config(run_yaml)
        if overrides:
            # where to compute may change on resume (--ray after a local start, or back);
            # what to compute may not: the config hash leaves out only `compute`
            data = apply_overrides(resolved.model_dump(mode="json"), list(overrides))
            try:
                updated = RunConfig.model_validate(data)
            except ValidationError as e:
                raise ConfigError(*problem_lines(e, "--set")) from None
            if config_hash(updated) != config_hash(resolved):
                raise ConfigError(
                    f"--resume: {' '.join(overrides)} would change the run's {run_yaml}; "
                    "only compute.*, ledger.* and policy.* (and --ray) may change on resume"
                )
            if updated.policy != resolved.policy and _policy_recorded(out):
                raise ConfigError(
                    "--resume: the run's ledger already holds the policy its outputs passed; "
                    "policy.* may change only before the final render is recorded"
                )
            resolved = updated
        asked = {"privacy.epsilon": epsilon, "privacy.delta": delta}
        for key, value in asked.items():
            section, name = key.split(".")
            if value is not None and getattr(getattr(resolved, section), name) != value:
                raise ConfigError(f"--resume: {key}={value} differs from the run's {run_yaml}")
        return resolved
    if (out / "run.yaml").exists() or (out / "ledger").exists():
        raise DataError(f"{out}: already holds a run; continue it with --resume {out}")
    extra = {"privacy.epsilon": epsilon, "privacy.delta": delta}
    if isinstance(config, RunConfig):
        sets = [f"{k}={v}" for k, v in extra.items() if v is not None]
        data = apply_overrides(config.model_dump(mode="json"), [*sets, *overrides])
        try:
            return RunConfig.model_validate(data)
        except ValidationError as e:
            raise ConfigError(*problem_lines(e, "config")) from None
    return load_config(config, overrides, extra=extra)


def _private_source(out: Path, private: Path | str | None, resume: bool) -> Path:
    """The private folder; remembered under private/ (a path can name people) for --resume."""
    record = out / "private" / "source.json"
    if private is None:
        if resume and record.is_file():
            return Path(json.loads(record.read_text(encoding="utf-8"))["private"])
        raise DataError("--private DIR is required (the folder of private images)")
    source = Path(private)
    if not source.exists():
        raise DataError(f"{source}: private folder does not exist; check --private")
    return source


def _remember_source(out: Path, source: Path) -> None:
    from penumbra.durable import atomic_write_bytes
    from penumbra.spti.private_embeddings import private_folder

    private_folder(out)
    payload = json.dumps({"private": str(source.resolve())}).encode("utf-8")
    atomic_write_bytes(out / "private" / "source.json", payload)


def _warn_identical_copies(out: Path, source: Path, console: Console | None) -> None:
    """Byte-identical private files at different paths count as different images (one image
    is one file); they are most likely one person's photo twice, whose ε is then that of two
    images. Say so, with the paths under private/ only (a file name can name a person)."""
    from penumbra.data.images import find_identical_copies, list_image_files
    from penumbra.durable import atomic_write_bytes

    copies = find_identical_copies(list_image_files(source))
    if not copies:
        return
    lines = ["\t".join(str(p) for p in group) for group in copies]
    atomic_write_bytes(out / "private" / "identical-copies.txt", "\n".join(lines).encode() + b"\n")
    if console is not None:
        extra = sum(len(group) - 1 for group in copies)
        console.print(
            f"warning: {extra} private file(s) are byte-identical copies of another and count "
            "as separate images (an image present twice has the ε of two); the groups are in "
            f"{out / 'private' / 'identical-copies.txt'}: remove the copies and start again",
            highlight=False,
        )


def recommended_population(
    n_accounted: int, sigma: float, *, most: int, votes_over_sigma: float = 2.0
) -> int:
    """Candidates per iteration so that each expects `votes_over_sigma`·σ votes: fewer and the
    noise swamps the histogram, more and the domain is covered more finely for free (on the
    demo's exact-vote grid, class-mix TV fell from 0.089 at 60 candidates to 0.064 at 240 with
    σ = 7.8). Uses the accounted N (privacy.public_n when set), never a hidden count."""
    return class_population(n_accounted, sigma, most, votes_over_sigma=votes_over_sigma)


def preflight(
    config: RunConfig, n_private: int, delta: float, *, classes: int | None = None
) -> tuple[EvolveSettings, Plan]:
    """σ, model calls and the signal-to-noise check; refuses runs the noise would drown.
    Resolves `pe.population: auto` in `config` (the run folder records the number chosen).

    A labelled run (`classes`) is planned for its average class (N / classes private images):
    each class's own population and outputs come later from public numbers (`spti.labelled`),
    and `pe.population: auto` stays auto in the config."""
    note = None
    extra = count_extra(config)
    if classes is not None:
        n_private = max(1, n_private // classes)
    if config.pe.population == "auto":
        try:
            sigma = discrete_gaussian_sigma(
                config.privacy.epsilon, delta, config.pe.iterations, config.pe.k, extra=extra
            )
        except ValueError as e:
            raise ConfigError(f"privacy: {e}") from None
        ideal = recommended_population(n_private, sigma, most=1_000_000)
        chosen = max(2, min(ideal, config.pe.max_population))
        per = "" if classes is None else " for the average class"
        note = f"population: auto → {chosen}{per} (N/2σ = {ideal}" + (
            f", capped at pe.max_population = {config.pe.max_population})"
            if ideal > config.pe.max_population else ")"
        )  # fmt: skip
        if classes is None:
            config.pe.population = chosen
        population = chosen
    else:
        population = int(config.pe.population)
    settings = EvolveSettings(
        epsilon=config.privacy.epsilon,
        delta=delta,
        iterations=config.pe.iterations,
        population=(population,),
        num_outputs=config.output.num_images,
        lookahead=config.pe.lookahead,
        keep_selected=config.pe.keep_selected,
        threshold=config.pe.threshold,
        selection=config.pe.selection,
        output_selection=config.output.selection,
        final=config.output.final,
        seed=config.seed if config.seed is not None else 0,
        k=config.pe.k,
        extra=extra,
    )
    try:
        plan = plan_run(settings, n_private)
    except ValueError as e:  # parameters the accountant cannot serve (e.g. δ below resolution)
        raise ConfigError(f"privacy: {e}") from None
    if note is not None:
        plan.notes.append(note)
    if classes is not None:
        source = "public class_fractions" if extra == 0 else "a DP release of the class counts"
        plan.notes.append(
            f"{classes} classes: one PE per class (parallel composition); outputs per class "
            f"from {source}"
        )
    if plan.votes_per_candidate < plan.sigma:
        sigma_ok = n_private / (2 * population)
        eps_min = discrete_gaussian_epsilon(
            sigma_ok, config.pe.iterations, delta, config.pe.k, extra=extra
        )
        size = f"N={n_private}" if config.privacy.public_n is None else f"public_n={n_private}"
        if classes is not None:
            size = f"{size} per class on average"
        raise PenumbraError(
            f"privacy.epsilon={config.privacy.epsilon:g} is too small for {size}: "
            f"σ={plan.sigma:.3g} exceeds the {plan.votes_per_candidate:.1f} votes a candidate "
            f"expects; use --epsilon >= {eps_min:.3g}, or pe.population <= "
            f"{max(2, int(n_private / (2 * plan.sigma)))}, or fewer pe.iterations"
        )
    return settings, plan


def privacy_terms(cfg: RunConfig, n_private: int) -> tuple[int, float]:
    """(N the accounting uses, δ): the public bound when privacy.public_n is set, which a
    larger private set may not exceed; δ defaults to 1/(N ln N) and must be below 1/N."""
    public_n = cfg.privacy.public_n
    if n_private < 3:
        raise DataError("too few readable private samples; PE needs at least 3")
    if public_n is not None and n_private > public_n:
        raise ConfigError(
            f"privacy.public_n={public_n}: the private set holds more samples than this "
            "public bound; raise privacy.public_n (the exact count is not printed)"
        )
    n_accounted = n_private if public_n is None else public_n
    delta = cfg.privacy.delta if cfg.privacy.delta is not None else default_delta(n_accounted)
    try:
        check_delta_for(delta, n_accounted)
    except ValueError as e:
        raise ConfigError(f"privacy.delta: {e}") from None
    return n_accounted, delta


def synthesize(
    private: Path | str | None,
    epsilon: float | None = None,
    *,
    out: Path | str,
    config: RunConfig | Path | str | None = None,
    delta: float | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    dry_run: bool = False,
    signing_key: Path | str | None = None,
    console: Console | None = None,
    external: ExternalVoting | None = None,
) -> Run | Plan:
    """Make a DP synthetic image dataset from the images under `private` into `out`.

    With `external`, `private` is ignored: votes come from `external.noisy_voter` (secure
    aggregation across holders) and no private data is read here."""
    out = Path(out)
    source = _private_source(out, private, resume) if external is None else Path()
    cfg = resolve_run_config(
        out, config=config, epsilon=epsilon, delta=delta, overrides=overrides, resume=resume
    )
    # A dry run removes only what it made itself, never anything of an existing run.
    made_out, made_private = not out.exists(), not (out / "private").exists()
    # Before any model is loaded: private data may not leave the machine without an opt-in.
    remote_private = require_local_private(cfg) if external is None else []
    check_labelled_config(cfg, external is not None)
    check_slot_config(cfg)
    if cfg.policy.blocklist is not None:  # a bad list stops the run before any DP step
        load_blocklist(cfg.policy.blocklist.file)
    if signing_key is None:
        signing_key = cfg.ledger.signer  # a key on a PKCS#11 token, or None
    if resume and external is None:
        stages.witness_before_resume(out, cfg, signing_key)
    labels = read_private_labels(cfg, source) if cfg.data.labels is not None else None
    engine = open_engine(cfg.compute, private_dir=out / "private")
    try:
        return _run_stages(
            out, cfg, engine, source, console=console, external=external, resume=resume,
            dry_run=dry_run, signing_key=signing_key, remote_private=remote_private,
            made=(made_out, made_private), labels=labels,
        )  # fmt: skip
    finally:
        engine.close()


def _run_stages(
    out: Path,
    cfg: RunConfig,
    engine: Engine,
    source: Path,
    *,
    console: Console | None,
    external: ExternalVoting | None,
    resume: bool,
    dry_run: bool,
    signing_key: Path | str | None,
    remote_private: list[str],
    made: tuple[bool, bool],
    labels: Labels | None = None,
) -> Run | Plan:
    made_out, made_private = made
    st = Stages(out, cfg, _progress(console), engine=engine)
    models = stages.load_voting_models(st)
    out.mkdir(parents=True, exist_ok=True)
    classes = len(cfg.data.classes) if cfg.data.classes is not None and labels else None
    with st.progress, ExitStack() as held:
        private_set = stages.embed_private_set(st, models, source, external)
        n_accounted, run_delta = privacy_terms(cfg, private_set.count)
        settings, plan = preflight(cfg, n_accounted, run_delta, classes=classes)
        if dry_run:
            if made_private:
                shutil.rmtree(out / "private", ignore_errors=True)
            if made_out and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            return plan
        held.enter_context(run_lock(out))  # one process per run: noise is drawn once
        if not resume or load_config(out / "run.yaml").policy != cfg.policy:
            write_config(cfg, out / "run.yaml")  # a resume may set a policy not yet applied
        if not resume and external is None:
            _remember_source(out, source)
            if cfg.modality == "image":
                _warn_identical_copies(out, source, console)
        stages.load_generators(st, models)
        record = stages.open_record(
            st, private_set, settings, plan.sigma, external=external, signing_key=signing_key
        )
        stages.record_start(
            st, record, models, n_private=private_set.count, delta=run_delta,
            remote_private=remote_private,
        )  # fmt: skip
        renderer = stages.caption_renderer(st, models, settings.seed)
        if labels is None:
            result = stages.evolve_captions(st, models, record, settings, renderer)
        else:
            result = stages.evolve_labelled(
                st, models, record, settings, renderer, private_set,
                embedded_labels(labels, private_set.report, private_set.count), n_accounted,
            )  # fmt: skip
        report = private_set.report
        del private_set, record.voter  # nothing below touches private data
        rows = stages.render_outputs(st, models, result, settings.seed, record.ledger)
        stages.record_end(record, out, rows, result, run_delta)
        from penumbra.report.html import write_report

        with st.timed("report"):
            report_path = write_report(out, renderer=renderer if cfg.voting == "image" else None)
            record.tree.record(record.ledger, "report")
    hidden = cfg.privacy.public_n is not None
    return Run(
        run_dir=out, epsilon_spent=result.epsilon_spent, epsilon_target=cfg.privacy.epsilon,
        delta=run_delta, sigma=result.sigma, iterations=len(result.releases),
        num_images=len(result.outputs["payload"]),
        n_private=None if hidden else n_accounted,
        skipped_private=None if hidden else (len(report.skipped) if report is not None else 0),
        report=report_path, stage_seconds=st.times, models=models.identities,
        captions=st.captions.as_dict(),
    )  # fmt: skip


def run_summary(run: Run) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(json.dumps(run.__dict__, default=str))
    return summary
