"""`penumbra synthesize`: SPTI end to end, resumable, audited.

config → models → private embeddings (holder boundary) → PE over captions [LLM random API →
render → embed → vote → noise → select → ledger → LLM variation] × T → final render →
synthetic/ (imagefolder) + ledger + report.html.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from PIL import Image
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

from penumbra import __version__
from penumbra.config import (
    ContentCredentialsConfig,
    RunConfig,
    apply_overrides,
    config_hash,
    load_config,
    problem_lines,
    write_config,
)
from penumbra.data.imagefolder import write_imagefolder
from penumbra.durable import atomic_write_bytes, run_lock
from penumbra.errors import ConfigError, DataError, PenumbraError
from penumbra.ledger.log import Ledger
from penumbra.ledger.records import (
    LedgerJournal,
    record_outputs,
    record_run_end,
    record_run_start,
)
from penumbra.models import load
from penumbra.models.protocols import (
    Captioner,
    ImageEmbedder,
    ImageGenerator,
    TextEmbedder,
    TextGenerator,
)
from penumbra.models.remote import require_local_private
from penumbra.pe.evolve import EvolveSettings, NoisyVoter, Plan, evolve, plan_run
from penumbra.pe.voting import local_voter
from penumbra.privacy import check_delta_for, default_delta, discrete_gaussian_epsilon
from penumbra.privacy.discrete import ACCOUNTANT
from penumbra.spti.private_embeddings import embed_private_images, embed_private_texts
from penumbra.spti.render import CaptionRenderer
from penumbra.spti.text_api import LLMCaptionAPI


class ExternalVoting(Protocol):
    """Votes answered outside this process by secure aggregation over several data holders.

    The run then reads no private data at all: `n_private` is public (the holders' declared
    sample counts), the voter returns histograms already noised by the aggregators, and the
    ledger may be one whose checkpoints others co-sign.
    """

    n_private: int

    def open_ledger(self, out: Path, signing_key: Path | None) -> Ledger: ...

    def noisy_voter(self, settings: EvolveSettings, ledger: Ledger, out: Path) -> NoisyVoter: ...


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


@contextmanager
def _stage(times: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        times[name] = times.get(name, 0.0) + time.monotonic() - start


def _load(uri: str, role: str, config: RunConfig, **extra: Any) -> Any:
    options = {**config.models.options_for(uri), **extra}
    return load(uri, role=role, **options)  # type: ignore[arg-type]


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


def _refuse_rolled_back_ledger(out: Path, ledger: Ledger, iterations: int) -> None:
    """A run whose outputs exist has logged all its releases: fewer in the ledger means it was
    cut back to an earlier checkpoint, and resuming would draw the missing ones a second time."""
    finished = [p.name for p in (out / "synthetic", out / "report.html") if p.exists()]
    logged = len(list(ledger.find("release")))
    if finished and logged < iterations:
        raise PenumbraError(
            f"{out / 'ledger'}: {', '.join(finished)} exist but the ledger holds {logged} of "
            f"{iterations} releases: it was cut back; restore it (penumbra verify) or start a "
            "new run"
        )


def preflight(config: RunConfig, n_private: int, delta: float) -> tuple[EvolveSettings, Plan]:
    """σ, model calls and the signal-to-noise check; refuses runs the noise would drown."""
    settings = EvolveSettings(
        epsilon=config.privacy.epsilon,
        delta=delta,
        iterations=config.pe.iterations,
        population=(config.pe.population,),
        num_outputs=config.output.num_images,
        lookahead=config.pe.lookahead,
        keep_selected=config.pe.keep_selected,
        threshold=config.pe.threshold,
        selection=config.pe.selection,
        output_selection=config.output.selection,
        seed=config.seed if config.seed is not None else 0,
        k=config.pe.k,
    )
    try:
        plan = plan_run(settings, n_private)
    except ValueError as e:  # parameters the accountant cannot serve (e.g. δ below resolution)
        raise ConfigError(f"privacy: {e}") from None
    if plan.votes_per_candidate < plan.sigma:
        sigma_ok = n_private / (2 * config.pe.population)
        eps_min = discrete_gaussian_epsilon(sigma_ok, config.pe.iterations, delta, config.pe.k)
        size = f"N={n_private}" if config.privacy.public_n is None else f"public_n={n_private}"
        raise PenumbraError(
            f"privacy.epsilon={config.privacy.epsilon:g} is too small for {size}: "
            f"σ={plan.sigma:.3g} exceeds the {plan.votes_per_candidate:.1f} votes a candidate "
            f"expects; use --epsilon >= {eps_min:.3g}, or pe.population <= "
            f"{max(2, int(n_private / (2 * plan.sigma)))}, or fewer pe.iterations"
        )
    return settings, plan


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
    signing_key: Path | None = None,
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
    public_n = cfg.privacy.public_n
    # Before any model is loaded: private data may not leave the machine without an opt-in.
    remote_private = require_local_private(cfg) if external is None else []
    times: dict[str, float] = {}
    with _stage(times, "load models"):
        images = cfg.modality == "image"
        image_embedder = (
            cast(ImageEmbedder, _load(cfg.models.image_embedder, "image-embedder", cfg))
            if images
            else None
        )
        text_embedder = cast(TextEmbedder, _load(cfg.models.text_embedder, "text-embedder", cfg))
        captioner = cast(Captioner, _load(cfg.models.captioner, "captioner", cfg)) if (
            images and cfg.voting == "text"
        ) else None  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    progress = _progress(console)
    with progress, ExitStack() as held:
        task = progress.add_task("embed private set", total=None, visible=external is None)
        # With a public bound on N, the progress bar shows no file counts either.
        show_counts = public_n is None
        with _stage(times, "embed private set"):
            private_emb: Any
            if external is not None:
                private_emb, report = None, None
            elif not images:
                private_emb, report = embed_private_texts(source, out, text_embedder=text_embedder)
            else:
                private_emb, report = embed_private_images(
                source, out, voting=cfg.voting, image_embedder=image_embedder,  # type: ignore[arg-type]
                captioner=captioner,  # type: ignore[arg-type]
                text_embedder=text_embedder, on_error=cfg.data.on_unreadable,
                max_pixels=cfg.data.max_pixels,
                on_progress=lambda done, total: progress.update(
                    task, completed=done if show_counts else 0, total=total if show_counts else None
                ),
            )  # fmt: skip
        n_private = len(private_emb) if external is None else external.n_private
        if n_private < 3:
            raise DataError(f"{source}: too few readable images; PE needs at least 3")
        if public_n is not None and n_private > public_n:
            raise ConfigError(
                f"privacy.public_n={public_n}: the private set holds more samples than this "
                "public bound; raise privacy.public_n (the exact count is not printed)"
            )
        n_accounted = n_private if public_n is None else public_n
        run_delta = (
            cfg.privacy.delta if cfg.privacy.delta is not None else default_delta(n_accounted)
        )
        try:
            check_delta_for(run_delta, n_accounted)
        except ValueError as e:
            raise ConfigError(f"privacy.delta: {e}") from None
        settings, plan = preflight(cfg, n_accounted, run_delta)
        if dry_run:
            if made_private:
                shutil.rmtree(out / "private", ignore_errors=True)
            if made_out and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            return plan
        held.enter_context(run_lock(out))  # one process per run: noise is drawn once
        if not resume:
            write_config(cfg, out / "run.yaml")
            if external is None:
                _remember_source(out, source)
        with _stage(times, "load models"):
            text_gen = cast(TextGenerator, _load(cfg.models.text_generator, "text-generator", cfg))
            named: list[tuple[str, str, Any]] = [
                ("text-generator", cfg.models.text_generator, text_gen),
                ("text-embedder", cfg.models.text_embedder, text_embedder),
            ]
            if images:
                voting_gen = cast(
                    ImageGenerator, _load(cfg.models.image_generator, "image-generator", cfg)
                )
                final_uri = cfg.models.final_image_generator or cfg.models.image_generator
                extra = {}
                if final_uri == "builtin:fashion-t2i":
                    extra["image_size"] = cfg.output.image_size
                final_gen = cast(ImageGenerator, _load(final_uri, "image-generator", cfg, **extra))
                named += [
                    ("image-embedder", cfg.models.image_embedder, image_embedder),
                    ("image-generator", cfg.models.image_generator, voting_gen),
                    ("final-image-generator", final_uri, final_gen),
                ]
        if captioner is not None:
            named.append(("captioner", cfg.models.captioner, captioner))
        models = [{"role": r, "uri": u, "fingerprint": m.fingerprint} for r, u, m in named]
        if external is None:
            ledger = Ledger.open(out, signing_key=signing_key)
            voter: Any = local_voter(private_emb, k=cfg.pe.k, metric=cfg.pe.metric)
            sigma = plan.sigma
        else:
            ledger = external.open_ledger(out, signing_key)
            voter = external.noisy_voter(settings, ledger, out)
            sigma = voter.sigma
        _refuse_rolled_back_ledger(out, ledger, cfg.pe.iterations)
        if (out / "candidates" / "state.json").exists() and not list(ledger.find("run_start")):
            raise PenumbraError(
                f"{out / 'ledger'}: the run has started (candidates/state.json) but its ledger "
                "has no run_start: the ledger was removed or replaced; restore it or start a "
                "new run"
            )
        record_run_start(
            ledger, penumbra_version=__version__, config_sha256=config_hash(cfg), models=models,
            n_private=n_private, epsilon=cfg.privacy.epsilon, delta=run_delta, sigma=sigma,
            iterations=cfg.pe.iterations, seed=cfg.seed, fixed_noise_seed=False, k=cfg.pe.k,
            accountant=str(getattr(voter, "accountant", ACCOUNTANT)), public_n=public_n,
            remote_private=remote_private,
        )  # fmt: skip
        api = LLMCaptionAPI(
            text_gen, domain=cfg.domain, random_template=cfg.prompts.random,
            variation_template=cfg.prompts.variation, examples=cfg.prompts.examples,
            max_words=cfg.prompts.max_words,
            max_new_tokens=cfg.prompts.max_new_tokens, temperature=cfg.prompts.temperature,
            retries=cfg.prompts.retries, categories=cfg.prompts.categories,
            attributes=cfg.prompts.attributes, steer=cfg.prompts.steer,
        )  # fmt: skip
        render_settings = json.dumps(
            cfg.models.options_for(cfg.models.image_generator), sort_keys=True, default=str
        )  # steps, guidance, size...: part of every render's cache key
        renderer = (
            CaptionRenderer(
                voting_gen, image_embedder, out, seed=settings.seed,  # type: ignore[arg-type]
                settings=render_settings,
            )
            if images
            else None
        )  # fmt: skip
        embed = renderer if renderer is not None and cfg.voting == "image" else text_embedder.embed
        pe_task = progress.add_task("PE iterations (DP)", total=cfg.pe.iterations)
        with _stage(times, "private evolution"):
            result = evolve(
                out / "candidates", random_api=api, variation_api=api, embed=embed,
                voter=voter, settings=settings, journal=LedgerJournal(ledger, k=cfg.pe.k),
                on_iteration=lambda done, total: progress.update(pe_task, completed=done),
            )  # fmt: skip
        del private_emb, voter  # nothing below touches private data
        if images:
            final_task = progress.add_task("final render", total=len(result.outputs["payload"]))
            with _stage(times, "final render"):
                _final_render(
                    out, final_gen, result.outputs, settings.seed, cfg.output.image_format,
                    progress, final_task,
                )  # fmt: skip
            if cfg.output.content_credentials is not None and not list(ledger.find("outputs")):
                with _stage(times, "content credentials"):
                    label_outputs(out, cfg.output.content_credentials)
            rows = [
                {"file": f"synthetic/{i:06d}.{cfg.output.image_format}", "candidate_id": cid,
                 "iteration": it, "lineage": lineage}
                for i, (cid, it, lineage) in enumerate(zip(
                    result.outputs["id"], result.outputs["iteration"], result.outputs["lineage"],
                    strict=True))
            ]  # fmt: skip
            rows.append({"file": "synthetic/metadata.jsonl"})
        else:
            _write_texts(out, result.outputs)
            rows = [{"file": "synthetic/texts.jsonl"}]
        if not list(ledger.find("outputs")):
            record_outputs(ledger, out, rows)
        if not list(ledger.find("run_end")):
            record_run_end(
                ledger, epsilon_spent=result.epsilon_spent, delta=run_delta,
                releases=len(result.releases), num_outputs=len(result.outputs["payload"]),
            )  # fmt: skip
    from penumbra.report.html import write_report

    with _stage(times, "report"):
        report_path = write_report(out, renderer=renderer if cfg.voting == "image" else None)
    return Run(
        run_dir=out, epsilon_spent=result.epsilon_spent, epsilon_target=cfg.privacy.epsilon,
        delta=run_delta, sigma=result.sigma, iterations=len(result.releases),
        num_images=len(result.outputs["payload"]),
        n_private=n_private if public_n is None else None,
        skipped_private=(len(report.skipped) if report is not None else 0)
        if public_n is None else None,
        report=report_path,
        stage_seconds=times, models=models,
    )  # fmt: skip


def label_outputs(out: Path, credentials: ContentCredentialsConfig) -> None:
    """C2PA-label every synthetic image before the ledger records its hash. A list of the
    files already labelled (under cache/) makes a resumed run skip them: a second manifest
    would not validate as ours."""
    from penumbra.anonymize.credentials import label_synthetic

    done_path = out / "cache" / "c2pa-labelled.json"
    done: list[str] = json.loads(done_path.read_text()) if done_path.exists() else []
    for path in sorted((out / "synthetic").iterdir()):
        if path.suffix == ".jsonl" or path.name in done:
            continue
        label_synthetic(path, path, signer_cert=credentials.cert, signer_key=credentials.key,
                        tsa_url=credentials.tsa_url)  # fmt: skip
        done.append(path.name)
        done_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(done_path, json.dumps(done).encode())


def _final_render(
    out: Path,
    generator: ImageGenerator,
    outputs: dict[str, list[Any]],
    seed: int,
    image_format: str,
    progress: Progress,
    task: Any,
) -> None:
    """Render the DP captions (one seed per output) into synthetic/, atomically."""
    target = out / "synthetic"
    if target.exists() and (target / "metadata.jsonl").exists():
        return  # rendered before a crash: the folder only appears once complete

    def items() -> Iterator[tuple[Image.Image, dict[str, Any]]]:
        captions = outputs["payload"]
        for start in range(0, len(captions), 32):
            batch = captions[start : start + 32]
            images = [
                generator.generate([c], seed=seed * 1_000_003 + start + i)[0]
                for i, c in enumerate(batch)
            ]
            for i, image in enumerate(images):
                j = start + i
                chain = outputs["lineage"][j]
                yield (
                    image,
                    {
                        "caption": captions[j],
                        "iteration": outputs["iteration"][j],
                        "candidate_id": outputs["id"][j],
                        "parent_chain": chain,
                    },
                )
            progress.update(task, advance=len(batch))

    write_imagefolder(target, items(), image_format=image_format, overwrite=True)


def _write_texts(out: Path, outputs: dict[str, list[Any]]) -> None:
    """DP synthetic texts (Aug-PE) as JSONL with their lineage, written atomically."""
    lines = [
        json.dumps({"text": text, "iteration": it, "candidate_id": cid, "parent_chain": chain},
                   ensure_ascii=False, sort_keys=True)
        for text, it, cid, chain in zip(outputs["payload"], outputs["iteration"], outputs["id"],
                                        outputs["lineage"], strict=True)
    ]  # fmt: skip
    atomic_write_bytes(out / "synthetic" / "texts.jsonl", ("\n".join(lines) + "\n").encode())


def run_summary(run: Run) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(json.dumps(run.__dict__, default=str))
    return summary
