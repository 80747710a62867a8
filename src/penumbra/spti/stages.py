"""The named stages of `penumbra synthesize`, each callable on its own.

load models → embed private set → (pre-flight) → open the record → evolve → render outputs →
record outputs → report. `spti.pipeline.synthesize` calls them in that order; a test can call
any one of them with what the earlier ones returned. Only `embed_private_set` and the voter that
`open_record` builds from its result read private data (DESIGN.md invariant 1).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from rich.progress import Progress

from penumbra.compute.engine import Engine, LocalEngine, ModelSpec
from penumbra.config import RunConfig
from penumbra.data.imagefolder import read_imagefolder_metadata
from penumbra.data.images import ReadReport
from penumbra.durable import run_lock
from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger
from penumbra.ledger.records import LedgerJournal, record_outputs, record_run_end, record_run_start
from penumbra.ledger.schema import POLICY_ROW_FIELDS
from penumbra.ledger.tree import PublishedTree
from penumbra.ledger.witness_client import WitnessEndpoint, endpoints
from penumbra.models.protocols import (
    Captioner,
    ImageEmbedder,
    ImageGenerator,
    TextEmbedder,
    TextGenerator,
)
from penumbra.pe.evolve import EvolveResult, EvolveSettings, evolve
from penumbra.pe.release import NoisyVoter
from penumbra.privacy.discrete import ACCOUNTANT
from penumbra.provenance.mark import run_mark
from penumbra.provenance.policy import policy_entry, resolve_policy
from penumbra.spti.config_upgrade import recorded_config_hash
from penumbra.spti.final_set import final_render, label_outputs, read_policy_log, write_texts
from penumbra.spti.leftovers import clear_unlogged
from penumbra.spti.private_embeddings import embed_private_images, embed_private_texts
from penumbra.spti.render import CaptionRenderer
from penumbra.spti.slot_api import SlotCaptionAPI, check_slot_generator, slot_caption_api
from penumbra.spti.text_api import CaptionStats, LLMCaptionAPI
from penumbra.version import __version__


class ExternalVoting(Protocol):
    """Votes answered outside this process by secure aggregation over several data holders.

    The run then reads no private data at all: `n_private` is public (the holders' declared
    sample counts), the voter returns histograms already noised by the aggregators, and the
    ledger may be one whose checkpoints others co-sign.
    """

    n_private: int

    def open_ledger(self, out: Path, signing_key: Path | str | None) -> Ledger: ...

    def noisy_voter(self, settings: EvolveSettings, ledger: Ledger, out: Path) -> NoisyVoter: ...


@dataclass
class Stages:
    """What every stage shares: the run folder, its config, progress bars, stage timings and
    the compute engine the heavy work runs on (this process, or a Ray cluster)."""

    out: Path
    cfg: RunConfig
    progress: Progress
    times: dict[str, float] = field(default_factory=dict)
    engine: Engine = field(default_factory=LocalEngine)
    captions: CaptionStats = field(default_factory=CaptionStats)  # over every caption API

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.monotonic() - start

    @property
    def images(self) -> bool:
        return self.cfg.modality == "image"


@dataclass
class Models:
    """The run's models; the generators are loaded only once the pre-flight has passed."""

    text_embedder: TextEmbedder
    image_embedder: ImageEmbedder | None = None
    captioner: Captioner | None = None
    text_generator: TextGenerator | None = None
    voting_generator: ImageGenerator | None = None
    final_generator: ImageGenerator | None = None
    identities: list[dict[str, str]] = field(default_factory=list)


@dataclass
class PrivateSet:
    """Embeddings of the private set (None under secure aggregation) and how many there are."""

    embeddings: Any
    count: int
    report: ReadReport | None


@dataclass
class Record:
    """The open ledger, the voter that answers for the private data, the σ it uses, and the
    run folder's published tree (logged at every release and before run_end)."""

    ledger: Ledger
    voter: Any
    sigma: float
    tree: PublishedTree


def _load(st: Stages, uri: str, role: str, **extra: Any) -> Any:
    """The model, where the engine keeps it: in this process, or in Ray actors."""
    options = {**st.cfg.models.options_for(uri), **extra}
    return st.engine.model(ModelSpec.of(uri, role, options))


def load_voting_models(st: Stages) -> Models:
    """The embedders (and the captioner for text voting): what the private set needs."""
    cfg = st.cfg
    with st.timed("load models"):
        text_embedder = cast(TextEmbedder, _load(st, cfg.models.text_embedder, "text-embedder"))
        models = Models(text_embedder)
        if st.images:
            models.image_embedder = cast(
                ImageEmbedder, _load(st, cfg.models.image_embedder, "image-embedder")
            )
            if cfg.voting == "text":
                models.captioner = cast(Captioner, _load(st, cfg.models.captioner, "captioner"))
    return models


def load_generators(st: Stages, models: Models) -> None:
    """The LLM and the image generators, and every model's identity for the ledger."""
    cfg = st.cfg
    with st.timed("load models"):
        models.text_generator = cast(
            TextGenerator, _load(st, cfg.models.text_generator, "text-generator")
        )
        named: list[tuple[str, str, Any]] = [
            ("text-generator", cfg.models.text_generator, models.text_generator),
            ("text-embedder", cfg.models.text_embedder, models.text_embedder),
        ]
        if st.images:
            models.voting_generator = cast(
                ImageGenerator, _load(st, cfg.models.image_generator, "image-generator")
            )
            final_uri = cfg.models.final_image_generator or cfg.models.image_generator
            extra = (
                {"image_size": cfg.output.image_size} if final_uri == "builtin:fashion-t2i" else {}
            )
            models.final_generator = cast(
                ImageGenerator, _load(st, final_uri, "image-generator", **extra)
            )
            named += [
                ("image-embedder", cfg.models.image_embedder, models.image_embedder),
                ("image-generator", cfg.models.image_generator, models.voting_generator),
                ("final-image-generator", final_uri, models.final_generator),
            ]
        if models.captioner is not None:
            named.append(("captioner", cfg.models.captioner, models.captioner))
    models.identities = [{"role": r, "uri": u, "fingerprint": m.fingerprint} for r, u, m in named]
    check_slot_generator(cfg, models.text_generator)


def embed_private_set(
    st: Stages, models: Models, source: Path, external: ExternalVoting | None
) -> PrivateSet:
    """The holder boundary: private images (or texts) → embeddings cached under private/.
    With `public_n` set the progress shows no counts, which would reveal N."""
    cfg = st.cfg
    task = st.progress.add_task("embed private set", total=None, visible=external is None)
    show_counts = cfg.privacy.public_n is None

    def on_progress(done: int, total: int) -> None:
        if show_counts:
            st.progress.update(task, completed=done, total=total)

    with st.timed("embed private set"):
        if external is not None:
            return PrivateSet(None, external.n_private, None)
        if not st.images:
            emb, report = embed_private_texts(source, st.out, text_embedder=models.text_embedder)
        else:
            assert models.image_embedder is not None
            emb, report = embed_private_images(
                source, st.out, voting=cfg.voting, image_embedder=models.image_embedder,
                captioner=models.captioner,  # type: ignore[arg-type]
                text_embedder=models.text_embedder, on_error=cfg.data.on_unreadable,
                max_pixels=cfg.data.max_pixels, on_progress=on_progress,
                batch_size=cfg.compute.batch_size, engine=st.engine,
            )  # fmt: skip
    return PrivateSet(emb, len(emb), report)


def open_record(
    st: Stages,
    private: PrivateSet,
    settings: EvolveSettings,
    sigma: float,
    *,
    external: ExternalVoting | None,
    signing_key: Path | str | None,
) -> Record:
    """The ledger and the voter; refuses a ledger that lost what the run folder shows."""
    cfg, out = st.cfg, st.out
    if external is None:
        ledger = Ledger.open(out, signing_key=signing_key, witnesses=run_witnesses(cfg))
        voter: Any = st.engine.voter(private.embeddings, k=cfg.pe.k, metric=cfg.pe.metric)
    else:
        ledger = external.open_ledger(out, signing_key)
        ledger.add_witnesses(run_witnesses(cfg))
        voter = external.noisy_voter(settings, ledger, out)
        sigma = voter.sigma
    refuse_rolled_back_ledger(out, ledger, cfg)
    tree = PublishedTree(out)  # its hashes, taken once here, serve the first record below
    clear_unlogged(out, ledger, tree)  # nothing the ledger cannot vouch for gets signed below
    return Record(ledger, voter, sigma, tree)


def run_witnesses(cfg: RunConfig) -> list[WitnessEndpoint]:
    """The config's `ledger.witnesses`, each key parsed (one line naming a bad one)."""
    pairs = [(w.url, w.key) for w in cfg.ledger.witnesses]
    return endpoints(pairs, cfg.ledger.witness_timeout_s)


def witness_before_resume(out: Path, cfg: RunConfig, signing_key: Path | str | None) -> None:
    """A resumed run's newest checkpoint, cosigned by every witness before any model loads: a
    copied or rolled-back folder stops in seconds, not after the models are up."""
    if cfg.ledger.witnesses:
        with run_lock(out):
            Ledger.open(out, signing_key=signing_key, witnesses=run_witnesses(cfg))


def record_start(
    st: Stages,
    record: Record,
    models: Models,
    *,
    n_private: int,
    delta: float,
    remote_private: list[str],
) -> None:
    cfg = st.cfg
    record_run_start(
        record.ledger, penumbra_version=__version__,
        config_sha256=recorded_config_hash(cfg, st.out / "run.yaml"),
        models=models.identities, n_private=n_private, epsilon=cfg.privacy.epsilon, delta=delta,
        sigma=record.sigma, iterations=cfg.pe.iterations, seed=cfg.seed, fixed_noise_seed=False,
        k=cfg.pe.k, accountant=str(getattr(record.voter, "accountant", ACCOUNTANT)),
        public_n=cfg.privacy.public_n, remote_private=remote_private,
        classes=cfg.data.classes if cfg.data.labels is not None else None,
        class_fractions=cfg.output.class_fractions, final=cfg.output.final,
    )  # fmt: skip


def refuse_rolled_back_ledger(out: Path, ledger: Ledger, cfg: RunConfig) -> None:
    """Every artefact of a release must have that release in the ledger, class by class: a
    population made from release t's selection, a release file, and (for every class and
    iteration) the outputs, `synthetic/` and the report. Anything less means the ledger was cut
    back or replaced, and resuming would draw the missing releases a second time."""
    finished = [p.name for p in (out / "synthetic", out / "report.html", out / "evaluation.json")
                if p.exists()]  # fmt: skip
    logged: dict[Any, set[Any]] = {}
    for _, e in ledger.find("release"):
        logged.setdefault(e.get("label"), set()).add(e.get("iteration"))
    for label, folder in _pe_folders(out, cfg):
        needed: dict[int, str] = {}
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                found = _ARTEFACT.fullmatch(path.name)
                if found is not None:
                    t = int(found.group(2)) - (found.group(1) == "population")
                    if t >= 0:
                        needed.setdefault(t, path.relative_to(out).as_posix())
        if finished:
            for t in range(cfg.pe.iterations):
                needed.setdefault(t, finished[0])
        missing = sorted(set(needed) - logged.get(label, set()))
        if missing:
            t = missing[0]
            of = "" if label is None else f" of class {label}"
            raise PenumbraError(
                f"{out / 'ledger'}: {needed[t]} exists but the ledger holds no release {t}{of}: "
                "it was cut back or replaced; restore it (penumbra verify) or start a new run"
            )
    states = [out / "candidates" / "state.json", *(out / "candidates").glob("class-*/state.json")]
    if any(p.exists() for p in states) and not list(ledger.find("run_start")):
        raise PenumbraError(
            f"{out / 'ledger'}: the run has started (candidates/state.json) but its ledger "
            "has no run_start: the ledger was removed or replaced; restore it or start a "
            "new run"
        )


_ARTEFACT = re.compile(r"(population|release)-(\d+)\.(?:parquet|json)")


def _pe_folders(out: Path, cfg: RunConfig) -> list[tuple[int | None, Path]]:
    """(class label or None, PE folder) of every PE the run runs."""
    candidates = out / "candidates"
    if cfg.data.labels is None or not cfg.data.classes:
        return [(None, candidates)]
    return [(c, candidates / f"class-{c:03d}") for c in range(len(cfg.data.classes))]


def caption_renderer(st: Stages, models: Models, seed: int) -> CaptionRenderer | None:
    """Renders (and embeds) candidate captions for image voting, cached by content."""
    if not st.images:
        return None
    render_settings = json.dumps(
        st.cfg.models.options_for(st.cfg.models.image_generator), sort_keys=True, default=str
    )  # steps, guidance, size...: part of every render's cache key
    return CaptionRenderer(
        models.voting_generator, models.image_embedder, st.out, seed=seed,  # type: ignore[arg-type]
        settings=render_settings, engine=st.engine, batch_size=st.cfg.compute.batch_size,
    )  # fmt: skip


def caption_api(
    st: Stages, models: Models, categories: list[str]
) -> LLMCaptionAPI | SlotCaptionAPI:
    """The LLM's random and variation APIs, from public prompts and words only: slot-form
    captions when the config names slots, free text otherwise."""
    cfg = st.cfg
    assert models.text_generator is not None
    if cfg.prompts.slots is not None:
        return slot_caption_api(cfg, models.text_generator, categories, st.captions)
    return LLMCaptionAPI(
        models.text_generator, domain=cfg.domain, random_template=cfg.prompts.random,
        variation_template=cfg.prompts.variation, examples=cfg.prompts.examples,
        max_words=cfg.prompts.max_words, max_new_tokens=cfg.prompts.max_new_tokens,
        temperature=cfg.prompts.temperature, retries=cfg.prompts.retries,
        categories=categories, attributes=cfg.prompts.attributes,
        steer=cfg.prompts.steer, keep_attributes=cfg.prompts.keep_attributes,
        stats=st.captions,
    )  # fmt: skip


def evolve_labelled(
    st: Stages,
    models: Models,
    record: Record,
    settings: EvolveSettings,
    renderer: CaptionRenderer | None,
    private: PrivateSet,
    labels: Any,
    n_accounted: int,
) -> EvolveResult:
    """One PE per class (`spti.labelled`): the class counts' DP release (unless the user gave
    public fractions) is logged first, then each class's releases."""
    from penumbra.spti.labelled import evolve_classes, plan_classes, release_class_counts

    cfg = st.cfg
    assert cfg.data.classes is not None
    classes = list(cfg.data.classes)
    counts = None
    if settings.extra:
        with st.timed("class counts (DP)"):
            counts = release_class_counts(record.ledger, labels, len(classes), settings,
                                          record.sigma, st.out)  # fmt: skip
    plan = plan_classes(cfg, counts, n_accounted, record.sigma)
    words = cfg.prompts.class_words or {}
    task = st.progress.add_task("PE iterations (DP)", total=cfg.pe.iterations * len(classes))
    with st.timed("private evolution"):
        return evolve_classes(
            st.out / "candidates", plan=plan, settings=settings,
            embeddings=private.embeddings, labels=labels,
            apis=[caption_api(st, models, [words.get(name, name)]) for name in classes],
            embed=_candidate_embedder(st, models, renderer), engine=st.engine,
            metric=cfg.pe.metric, ledger=record.ledger, tree=record.tree,
            on_iteration=lambda done: st.progress.update(task, completed=done),
        )  # fmt: skip


def _candidate_embedder(st: Stages, models: Models, renderer: CaptionRenderer | None) -> Any:
    if renderer is not None and st.cfg.voting == "image":
        return renderer
    return models.text_embedder.embed


def evolve_captions(
    st: Stages,
    models: Models,
    record: Record,
    settings: EvolveSettings,
    renderer: CaptionRenderer | None,
) -> EvolveResult:
    """Private Evolution over captions: every release in the ledger before it is used."""
    cfg = st.cfg
    api = caption_api(st, models, cfg.prompts.categories)
    embed = _candidate_embedder(st, models, renderer)
    task = st.progress.add_task("PE iterations (DP)", total=cfg.pe.iterations)
    with st.timed("private evolution"):
        return evolve(
            st.out / "candidates", random_api=api, variation_api=api, embed=embed,
            voter=record.voter, settings=settings,
            journal=LedgerJournal(record.ledger, k=cfg.pe.k, tree=record.tree),
            on_iteration=lambda done, total: st.progress.update(task, completed=done),
        )  # fmt: skip


def render_outputs(
    st: Stages, models: Models, result: EvolveResult, seed: int, ledger: Ledger
) -> list[dict[str, Any]]:
    """The final set into synthetic/ (images, or texts.jsonl); the rows the ledger lists. The
    output policy (mark, blocklist, faces) runs on each render and its `policy` entry goes
    into the ledger before the outputs entry does."""
    cfg, out = st.cfg, st.out
    if not st.images:
        write_texts(out, result.outputs)
        return [{"file": "synthetic/texts.jsonl"}]
    assert models.final_generator is not None
    mark = run_mark(ledger.signer.vkey)
    policy = None  # a run made before output policies: synthetic/ as the ledger lists it
    if list(ledger.find("policy")) or not list(ledger.find("outputs")):
        policy = resolve_policy(cfg.policy, domain=cfg.domain, mark=mark)
    task = st.progress.add_task("final render", total=len(result.outputs["payload"]))
    with st.timed("final render"):
        final_render(
            out, models.final_generator, result.outputs, seed, cfg.output.image_format,
            st.progress, task, engine=st.engine, batch_size=cfg.compute.batch_size,
            classes=cfg.data.classes if cfg.data.labels is not None else None, policy=policy,
        )  # fmt: skip
    if policy is not None:
        record_policy(ledger, policy_entry(policy, read_policy_log(out)))
    if cfg.output.content_credentials is not None and not list(ledger.find("outputs")):
        with st.timed("content credentials"):
            label_outputs(out, cfg.output.content_credentials, mark=mark)
    labels = result.outputs.get("label")
    checked = {row["file_name"]: row for row in read_imagefolder_metadata(out / "synthetic")}
    rows = []
    for i, (cid, it, lineage) in enumerate(zip(
            result.outputs["id"], result.outputs["iteration"], result.outputs["lineage"],
            strict=True)):  # fmt: skip
        name = f"{i:06d}.{cfg.output.image_format}"
        row = {"file": f"synthetic/{name}", "candidate_id": cid, "iteration": it,
               "lineage": lineage, **({} if labels is None else {"label": labels[i]})}  # fmt: skip
        row.update({k: checked[name][k] for k in POLICY_ROW_FIELDS if k in checked.get(name, {})})
        rows.append(row)
    return [*rows, {"file": "synthetic/metadata.jsonl"}]


def record_policy(ledger: Ledger, entry: dict[str, Any]) -> None:
    """The policy entry, once. A resumed run that renders again (its outputs were not yet
    logged) must have applied the policy the ledger already states, with the same result."""
    recorded = [e for _, e in ledger.find("policy")]
    if not recorded:
        ledger.append("policy", entry)
        return
    stated = {k: v for k, v in recorded[0].items() if k not in ("schema", "type", "index")}
    if json.loads(json.dumps(entry)) != stated:
        raise PenumbraError(
            f"{ledger.entries_path}: the policy entry differs from the policy this resume "
            "applied; resume with the run's own policy: settings (see the policy entry)"
        )


def record_end(record: Record, out: Path, rows: list[dict[str, Any]], result: EvolveResult,
               delta: float) -> None:  # fmt: skip
    """Every output file's hash with its lineage, the published tree, then run_end (each
    once, also on resume)."""
    ledger = record.ledger
    if not list(ledger.find("outputs")):
        record_outputs(ledger, out, rows)
    if not list(ledger.find("run_end")):
        record.tree.record(ledger, "outputs")
        record_run_end(
            ledger, epsilon_spent=result.epsilon_spent, delta=delta,
            releases=len(result.releases), num_outputs=len(result.outputs["payload"]),
        )  # fmt: skip
