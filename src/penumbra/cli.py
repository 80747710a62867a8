"""Thin Typer front: parse, load config, call a pipeline, print a summary.

Errors the user can fix arrive as PenumbraError (or click usage errors) and leave as one line
per problem on stderr with exit code 2; anything else is an internal error, exit 1. Tracebacks
only with --debug.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from penumbra.anonymize.cli import app as anonymize_app
from penumbra.compute.options import RAY_OPTION, ray_overrides
from penumbra.errors import PenumbraError
from penumbra.mpc.cli import app as mpc_app
from penumbra.version import __version__

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

app = typer.Typer(
    name="penumbra",
    help="Differentially private synthetic media from off-the-shelf foundation models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()

EXIT_USAGE = 2
EXIT_INTERNAL = 1


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """penumbra: DP synthetic images and texts, audit ledgers, anonymization."""


@app.command()
def version() -> None:
    """Print the penumbra version (and the Python and torch it runs on)."""
    import torch

    console.print(
        f"penumbra {__version__} (python {platform.python_version()}, torch {torch.__version__})",
        highlight=False,
    )


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every backend and builtin model, its role, and whether it is usable here and now."""
    from penumbra.models import catalogue

    rows = catalogue()
    if as_json:
        payload = [
            {
                "uri": r.uri,
                "roles": list(r.roles),
                "available": r.available,
                "problem": r.problem,
                "description": r.description,
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = Table(title="penumbra models", show_lines=False)
    table.add_column("URI", style="bold")
    table.add_column("role(s)")
    table.add_column("available")
    table.add_column("what it is")
    for r in rows:
        status = "[green]yes[/green]" if r.available else f"[red]no[/red]: {r.problem}"
        table.add_row(r.uri, ", ".join(r.roles), status, r.description)
    console.print(table)
    console.print(
        "Local weights: [bold]hf:/path/to/folder[/bold] (or a cached repo id with "
        "HF_HUB_OFFLINE=1). Servers: [bold]openai:MODEL@http://host:port/v1[/bold].",
        highlight=False,
    )


@app.command("config")
def show_config(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Run config YAML to start from.")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one field: KEY=VALUE, e.g. --set pe.iterations=5."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the resolved config here.")
    ] = None,
) -> None:
    """Validate a run config and print (or write) the fully resolved result."""
    from penumbra.config import config_to_yaml, load_config, write_config

    resolved = load_config(config, overrides or [])
    if out is not None:
        write_config(resolved, out)
        console.print(f"resolved config written to {out}", highlight=False)
    else:
        sys.stdout.write(config_to_yaml(resolved))


ledger_app = typer.Typer(help="Inspect a run's audit ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(anonymize_app, name="anonymize")
app.add_typer(mpc_app, name="mpc")


@app.command()
def verify(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to audit.")],
    pubkey: Annotated[
        str | None,
        typer.Option(
            "--pubkey",
            help="The verifier key the data holder published (a file or the key itself; "
            "never the run's own ledger/pubkey): the only way to know who signed.",
        ),
    ] = None,
    cosigner: Annotated[
        list[str] | None,
        typer.Option(
            "--cosigner",
            help="Multi-holder runs: an aggregator's published verifier key (a file or the "
            "key itself); once per aggregator.",
        ),
    ] = None,
    trust_run_key: Annotated[
        bool,
        typer.Option(
            "--trust-run-key",
            help="Accept the keys the run carries for any signer not given (--pubkey, "
            "--cosigner): exit 0 on integrity alone, still reported as not authenticated.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Audit a run without private data: signatures, Merkle proofs, ε, output hashes.

    Exit 0 when everything holds and the signer (and co-signers) were authenticated by the keys
    given; 1 with each failure and its location; 2 on bad input; 3 when every check holds but
    a signature was checked only against a key the run itself carries (no --pubkey /
    --cosigner and no --trust-run-key)."""
    from penumbra.ledger.note import NoteError, parse_vkey
    from penumbra.ledger.verify import verify_run

    def keys_of(option: str, value: str) -> list[str]:
        """A verifier key given as itself or as a file holding one or more."""
        path = Path(value)
        keys = path.read_text(encoding="utf-8").split() if path.is_file() else [value]
        for key in keys or [""]:
            try:
                parse_vkey(key)
            except NoteError as e:
                raise PenumbraError(f"{option} {value}: neither a key file nor a key ({e})") from e
        return keys

    key_text = None
    if pubkey is not None:
        found = keys_of("--pubkey", pubkey)
        if len(found) != 1:
            raise PenumbraError(f"--pubkey {pubkey}: holds {len(found)} keys, not one")
        key_text = found[0]
    cosigners = [key for value in cosigner or [] for key in keys_of("--cosigner", value)]
    report = verify_run(run_dir, pubkey=key_text, cosigners=cosigners or None)
    code = 1 if not report.ok else 0 if report.authenticated or trust_run_key else 3
    if as_json:
        sys.stdout.write(json.dumps({**report.to_json(), "exit": code}, indent=2) + "\n")
    else:
        _print_receipt(report.receipt)
        note = report.authentication_note()
        if not report.ok:
            console.print(f"[bold red]FAILED[/bold red]: {len(report.failures)} problem(s)")
            for failure in report.failures:
                console.print(f"  {failure}", highlight=False, markup=False)
            if not report.authenticated:
                console.print(f"  (and {note})", highlight=False, markup=False)
        elif report.authenticated:
            line = f"[bold green]VERIFIED[/bold green]: every check holds; {note}."
            console.print(line, highlight=False, soft_wrap=True)
        else:
            style = "yellow" if trust_run_key else "bold yellow"
            head = "VERIFIED (integrity only)" if trust_run_key else "NOT AUTHENTICATED"
            line = f"[{style}]{head}[/{style}]: integrity verified, {note}"
            console.print(line, highlight=False, soft_wrap=True)
    if code:
        raise typer.Exit(code)


def _print_receipt(receipt: dict) -> None:  # type: ignore[type-arg]
    table = Table(title="penumbra run receipt", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in (
        "n_private", "epsilon_target", "delta", "sigma", "iterations", "epsilon_spent",
        "fixed_noise_seed", "penumbra_version", "config_sha256", "entries", "output_files",
        "public_key_source", "composition", "class_counts", "class_noisy_counts",
        "class_fractions", "class_output_counts",
    ):  # fmt: skip
        if key in receipt:
            table.add_row(key, str(receipt[key]))
    if receipt.get("classes"):
        names = receipt["classes"]
        table.add_row("classes", f"{len(names)}: " + ", ".join(map(str, names[:12]))
                      + (" …" if len(names) > 12 else ""))  # fmt: skip
    eps = receipt.get("epsilon_per_iteration") or []
    if eps:
        per = " (of each class)" if receipt.get("classes") else ""
        table.add_row(f"ε after each release{per}", ", ".join(f"{e:.4g}" for e in eps))
    for model in receipt.get("models") or []:
        table.add_row(
            f"model: {model.get('role')}",
            f"{model.get('uri')} ({model.get('fingerprint', '')[:16]})",
        )
    for sample in receipt.get("sample_lineage") or []:
        table.add_row(f"lineage: {sample['file']}", " ← ".join(sample.get("lineage", [])))
    console.print(table)


@ledger_app.command("show")
def ledger_show(
    run_dir: Annotated[Path, typer.Argument(help="The run directory.")],
    entry: Annotated[int | None, typer.Option("--entry", help="Print entry N in full.")] = None,
    proof: Annotated[
        int | None, typer.Option("--proof", help="Print the inclusion proof of entry N.")
    ] = None,
) -> None:
    """List ledger entries, print one, or print an inclusion proof an auditor can check."""
    from penumbra.ledger.inspect import entry_json, inclusion_proof_json, summary_rows

    if entry is not None:
        sys.stdout.write(entry_json(run_dir, entry) + "\n")
        return
    if proof is not None:
        sys.stdout.write(json.dumps(inclusion_proof_json(run_dir, proof), indent=2) + "\n")
        return
    table = Table(title=f"ledger of {run_dir}")
    for col in ("#", "type", "summary"):
        table.add_column(col)
    for index, kind, text in summary_rows(run_dir):
        table.add_row(str(index), kind, text)
    console.print(table)


@app.command()
def synthesize(
    private: Annotated[
        Path | None, typer.Option("--private", help="Folder of private images (read only).")
    ] = None,
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="Target ε of the whole run.")
    ] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="δ (default 1/(N ln N)).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config YAML.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="New run directory.")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue the run in this directory.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config field: KEY=VALUE.")
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option("--modality", help="image (a folder of images) or text (JSONL / .txt files)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (σ, model calls, time) and exit.")
    ] = False,
    signing_key: Annotated[
        Path | None, typer.Option("--signing-key", help="Ed25519 PEM key to sign the ledger.")
    ] = None,
    run_evaluation: Annotated[
        bool,
        typer.Option(
            "--evaluate", help="Measure the synthetic set against the private one at the end."
        ),
    ] = False,
    holdout: Annotated[
        Path | None,
        typer.Option("--holdout", help="With --evaluate: unseen images for the privacy audit."),
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option("--classifier", help="With --evaluate: class mix by this classifier."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Labelled private set: folders (class subfolders) or metadata (the label "
            "column of metadata.jsonl); one PE per class, labelled outputs.",
        ),
    ] = None,
    ray: Annotated[str | None, RAY_OPTION] = None,
) -> None:
    """Make a DP synthetic image dataset from a folder of private images (SPTI)."""
    from penumbra.pe.evolve import Plan
    from penumbra.spti.pipeline import synthesize as run_synthesize

    if resume is None and out is None:
        raise PenumbraError("--out RUN_DIR is required (or --resume RUN_DIR)")
    if resume is not None and out is not None and resume != out:
        raise PenumbraError("give either --out or --resume, not both")
    run_dir = resume or out
    assert run_dir is not None
    if (holdout is not None or classifier is not None) and not run_evaluation:
        raise PenumbraError("--holdout and --classifier need --evaluate")
    if holdout is not None and not holdout.is_dir():
        raise PenumbraError(f"--holdout {holdout}: folder does not exist")
    result = run_synthesize(
        private, epsilon, out=run_dir, config=config, delta=delta,
        overrides=[
            *([f"data.labels={labels}"] if labels else []),
            *(overrides or []), *([f"modality={modality}"] if modality else []),
            *ray_overrides(ray),
        ],
        resume=resume is not None, dry_run=dry_run,
        signing_key=signing_key, console=console,
    )  # fmt: skip
    if isinstance(result, Plan):
        for line in result.lines():
            console.print(line, highlight=False)
        return
    _print_run(result)
    if run_evaluation:
        from penumbra.evaluate.run_eval import evaluate_run
        from penumbra.report.html import write_report

        with _evaluation_progress(show_counts=result.n_private is not None) as on_progress:
            evaluation = evaluate_run(
                run_dir, holdout=holdout, classifier=classifier, on_progress=on_progress
            )
        write_report(run_dir)
        from penumbra.ledger.tree import record_published

        record_published(run_dir, "evaluation", signing_key=signing_key)
        _print_evaluation(evaluation)


@contextmanager
def _evaluation_progress(show_counts: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """Progress bars for an evaluation; without counts where they would show the size of a
    private set the run keeps unpublished (privacy.public_n)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()] if show_counts else []
    with Progress(
        "[progress.description]{task.description}", *columns, console=console, transient=True,
    ) as progress:  # fmt: skip
        tasks: dict[str, Any] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(f"embed {name.lstrip('-')}", total=None)
            if show_counts:
                progress.update(tasks[name], completed=done, total=total)

        yield update


def _print_evaluation(result: dict[str, Any]) -> None:
    """Print the aggregates of an evaluation (outputs.public_view): never per-image values."""
    from penumbra.evaluate.audit import AUDIT_LABEL

    if "withheld" in result:
        console.print(f"evaluation: {result['withheld']}", highlight=False)
        return

    fid = result["fidelity"]
    space = result["feature_space"]["uri"]
    n_ref = result["reference"].get("images")
    counts = f"{result['synthetic']['images']} synthetic vs " + (
        f"{n_ref} reference images" if n_ref is not None else "the reference images"
    )
    table = Table(title=f"fidelity ({counts}, features: {space}; {AUDIT_LABEL})")
    table.add_column("metric", style="bold")
    table.add_column("value")
    table.add_row("Fréchet distance", f"{fid['frechet_distance']:.4g}")
    if "fid" in result:
        table.add_row("FID (Inception, pytorch-fid protocol)", f"{result['fid']['fid']:.4g}")
    table.add_row("KID (× 10³)", f"{1e3 * fid['kid']:.4g} ± {1e3 * fid['kid_std']:.2g}")
    for name in ("precision", "recall", "density", "coverage"):
        table.add_row(f"{name} (k={int(fid['k'])})", f"{fid[name]:.3f}")
    if "classes" in result:
        table.add_row("class-mix total variation", f"{result['classes']['total_variation']:.3f}")
    console.print(table)
    audit = result.get("privacy_audit")
    if audit is None:
        return
    mia, mem = audit["membership_inference"], audit["memorisation"]
    table = Table(title=f"privacy audit: {AUDIT_LABEL}")
    table.add_column("metric", style="bold")
    table.add_column("value")
    ci = f"95% CI {mia['auc_ci95_low']:.3f}-{mia['auc_ci95_high']:.3f}"
    table.add_row("membership inference AUC", f"{mia['auc']:.3f} ({ci})")
    table.add_row("TPR at 1% FPR", f"{mia['tpr_at_1pct_fpr']:.3f}")
    closer = mem.get("closer_to_member_share", float("nan"))
    table.add_row("synthetic closer to a member than to a non-member", f"{closer:.3f} (0.5: none)")
    table.add_row(
        "flagged near-copies", f"{mem['flagged']} ({mem.get('flagged_share', 0):.1%} of synthetic)"
    )
    for name, path in result.get("artifacts", {}).items():
        table.add_row(f"picture: {name}", path)
    table.add_row("per-image results (private)", str(result.get("private_details")))
    console.print(table)


def _print_tstr(section: dict[str, Any], picture: str | None) -> None:
    """The TSTR aggregates (outputs.public_view's "tstr"): accuracy, recall, chance level."""
    parts = (section["synthetic"], section["real_same_number"])
    table = Table(title="TSTR: train on synthetic, test on the reference (uses the reference "
                        "images and labels; not DP)")  # fmt: skip
    table.add_column("", style="bold")
    for label, part in zip(("trained on synthetic", "trained on real"), parts, strict=True):
        n = part.get("train_images")
        table.add_column(label if n is None else f"{label} ({n} images)")
    accuracy = [f"{p['accuracy']:.3f} ({p['accuracy_ci95'][0]:.3f}-{p['accuracy_ci95'][1]:.3f})"
                for p in parts]  # fmt: skip
    table.add_row("accuracy (95% CI)", *accuracy)
    for name in parts[0]["per_class_recall"]:
        table.add_row(f"recall: {name}", *(f"{p['per_class_recall'][name]:.3f}" for p in parts))
    table.add_row("chance (most common class)", *[f"{section['chance']:.3f}"] * 2)
    console.print(table)
    notes = [f"protocol: {section['protocol_text']}"]
    if section.get("synthetic_only_classes"):
        extra = ", ".join(section["synthetic_only_classes"])
        notes.append(f"classes only in the synthetic set (not tested): {extra}")
    if section.get("reference_only_classes"):
        missing = ", ".join(section["reference_only_classes"])
        notes.append(f"classes the synthetic set lacks (recall 0): {missing}")
    if picture is not None:
        notes.append(f"picture: {picture}")
    for note in notes:
        console.print(note, highlight=False)


@app.command("evaluate")
def evaluate_command(
    synthetic: Annotated[Path, typer.Option("--synthetic", help="Folder of synthetic images.")],
    reference: Annotated[
        Path,
        typer.Option("--reference", help="Folder of reference images (treated as private)."),
    ],
    embedder: Annotated[
        str, typer.Option("--embedder", help="Image embedder URI for the feature space.")
    ] = "builtin:effnet-lite0",
    inception_weights: Annotated[
        Path | None,
        typer.Option("--inception-weights", help="pt_inception-2015-12-05 file: standard FID."),
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option(
            "--classifier",
            help="Class mix vs the reference's labels, e.g. builtin:fashion-classifier.",
        ),
    ] = None,
    holdout: Annotated[
        Path | None,
        typer.Option(
            "--holdout",
            help="Unseen images from the private distribution: runs the "
            "privacy audit (members = --private, else --reference).",
        ),
    ] = None,
    private: Annotated[
        Path | None, typer.Option("--private", help="The private (member) images for the audit.")
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours for precision/recall.")] = 3,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the aggregates (JSON) here; per-image results go to OUT-STEM.private/.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the aggregates as JSON instead of tables.")
    ] = False,
    allow_remote_private: Annotated[
        bool,
        typer.Option(
            "--allow-remote-private",
            help="Let an openai: --embedder at a non-loopback URL, or a --ray cluster not on "
            "this machine, receive the reference, private and held-out images.",
        ),
    ] = False,
    tstr: Annotated[
        bool,
        typer.Option(
            "--tstr",
            help="Also train a classifier on the (labelled) synthetic set and test it on the "
            "labelled reference, beside one trained on as many real images.",
        ),
    ] = False,
    real_train: Annotated[
        Path | None,
        typer.Option(
            "--real-train",
            help="With --tstr: labelled real images for the real classifier; the whole "
            "reference is then the test set (default: half of the reference each).",
        ),
    ] = None,
    ray: Annotated[str | None, RAY_OPTION] = None,
) -> None:
    """Fidelity, class mix, a privacy audit (--holdout) and TSTR accuracy (--tstr) of a set.

    Fidelity metrics: Fréchet distance/FID, KID, precision/recall, density/coverage and the
    class mix; with --holdout, an empirical privacy audit; with --tstr, train-on-synthetic /
    test-on-real accuracy (uses the reference images and labels).

    --reference, --private and --holdout are treated as private data: every number is
    computed against them and is not DP. Printed output and the --out file hold aggregates
    only, each section labelled `not_dp`. With --out results/eval.json, everything else — the
    closest synthetic/private pairs with their distances and file names, the reference's class
    mix, the input folders — goes to results/eval.private/ (created mode 0700):
    evaluation.json (the full result) and closest_pairs.png; the ROC curve (rates only) is
    results/eval_roc.png and the TSTR confusion matrices (shares only)
    results/eval_tstr_confusion.png. Without --out no per-image result is written anywhere."""
    from penumbra.compute.engine import engine_for_cli
    from penumbra.evaluate import evaluate
    from penumbra.evaluate.outputs import private_dir, public_view, write_json
    from penumbra.evaluate.run_eval import write_audit_pictures
    from penumbra.models.remote import cluster_is_local, require_local

    if private is not None and holdout is None:
        raise PenumbraError("--private is used by the privacy audit; give --holdout too")
    if real_train is not None and not tstr:
        raise PenumbraError("--real-train needs --tstr (it trains the real TSTR classifier)")
    details = None
    if out is not None:
        details = out.with_name(f"{out.with_suffix('').name}.private")
        if details == out or (details.exists() and not details.is_dir()):
            raise PenumbraError(f"--out {out}: {details} must be free for the private results")
    receives = "the reference, private and held-out images"
    require_local({"--embedder": embedder}, allow=allow_remote_private, receives=receives,
                  opt_in="--allow-remote-private")  # fmt: skip
    if ray is not None and not cluster_is_local(ray) and not allow_remote_private:
        raise PenumbraError(
            f"--ray {ray} would send {receives} to a Ray cluster that is not provably this "
            "machine (only local and loopback HOST:PORT are); use --ray local, or "
            "--allow-remote-private to allow it"
        )
    if tstr:  # labels first: a missing one fails before any image is embedded
        from penumbra.evaluate.tstr import folder_labels

        for name, folder in (("--synthetic", synthetic), ("--reference", reference),
                             ("--real-train", real_train)):  # fmt: skip
            if folder is not None:
                folder_labels(folder, name)
    with _evaluation_progress() as on_progress, closing(engine_for_cli(ray)) as engine:
        result = evaluate(
            synthetic, reference, embedder=embedder, inception_weights=inception_weights,
            classifier=classifier, private=private, holdout=holdout, k=k,
            reference_is_private=True, on_progress=on_progress,
            engine=None if ray is None else engine,
        )  # fmt: skip
        if tstr:
            from penumbra.evaluate.tstr import tstr as run_tstr

            def tstr_progress(name: str, done: int, total: int) -> None:
                on_progress(f"{name} (TSTR)", done, total)

            result["tstr"] = run_tstr(
                synthetic, reference, embedder=embedder, real_train=real_train,
                engine=None if ray is None else engine, on_progress=tstr_progress,
            )  # fmt: skip
    if out is None or details is None:
        public = public_view(result, details=None)
    else:
        private_dir(details)
        pictures = write_audit_pictures(
            result, synthetic, details / "closest_pairs.png",
            out.with_name(f"{out.with_suffix('').name}_roc.png"),
        )  # fmt: skip
        artifacts = {"roc": pictures["roc"]} if "roc" in pictures else {}
        if "tstr" in result:
            from penumbra.evaluate.tstr import confusion_picture

            png = out.with_name(f"{out.with_suffix('').name}_tstr_confusion.png")
            pictures["tstr_confusion"] = artifacts["tstr_confusion"] = str(
                confusion_picture(result["tstr"], png)
            )
        if pictures:
            result["artifacts"] = pictures
        write_json(details / "evaluation.json", result)
        public = public_view(result, details=f"{details.name}/evaluation.json", artifacts=artifacts)
        write_json(out, public)
    if as_json:
        sys.stdout.write(json.dumps(public, indent=2) + "\n")
    else:
        _print_evaluation(public)
        if "tstr" in public:
            _print_tstr(public["tstr"], public.get("artifacts", {}).get("tstr_confusion"))


def _print_run(run: object) -> None:
    from penumbra.spti.pipeline import Run

    assert isinstance(run, Run)
    table = Table(title="penumbra synthesize: done")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("ε spent / target", f"{run.epsilon_spent:.4g} / {run.epsilon_target:g}")
    table.add_row("δ", f"{run.delta:.3g}")
    table.add_row("σ per release", f"{run.sigma:.4g}")
    table.add_row("DP iterations", str(run.iterations))
    if run.n_private is None:
        table.add_row("private images", "not published (privacy.public_n is set)")
    else:
        table.add_row(
            "private images", f"{run.n_private} ({run.skipped_private} unreadable, skipped)"
        )
    table.add_row("synthetic images", f"{run.num_images} in {run.run_dir / 'synthetic'}")
    for stage, seconds in run.stage_seconds.items():
        table.add_row(f"time: {stage}", f"{seconds:.1f} s")
    if run.captions.get("prompts"):
        c = run.captions
        table.add_row(
            "LLM captions",
            f"{int(c['prompts'])} written, {c['retried_share']:.0%} needed a retry, "
            f"{c['fell_back_share']:.0%} fell back to their parent or subject",
        )
    for model in run.models:
        table.add_row(f"model: {model['role']}", model["uri"])
    table.add_row("report", str(run.report))
    table.add_row(
        "verify with",
        f"penumbra verify {run.run_dir} --pubkey KEY_FILE (publish "
        f"{run.run_dir / 'ledger' / 'pubkey'} out of band; auditors check against that copy)",
    )
    console.print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path(
        "penumbra-demo"
    ),
    epsilon: Annotated[float, typer.Option("--epsilon", help="Target ε.")] = 1.0,
    labelled: Annotated[
        bool,
        typer.Option(
            "--labelled",
            help="Use the demo set's labels: one PE per class, labelled outputs, and a "
            "train-on-synthetic / test-on-real evaluation against held-out images.",
        ),
    ] = False,
    ray: Annotated[str | None, RAY_OPTION] = None,
) -> None:
    """The whole method offline on a laptop CPU, ending in a verifiable run with a report.

    A skewed Fashion-MNIST "private" set, the builtin models and penumbra's own text-to-image
    model."""
    from penumbra.spti.demo import run_demo

    if labelled:
        from penumbra.spti.demo import TSTR_PICTURE, run_labelled_demo

        run, evaluation = run_labelled_demo(
            out, epsilon=epsilon, console=console, overrides=ray_overrides(ray)
        )
        _print_run(run)
        _print_evaluation(evaluation)
        _print_tstr(evaluation["tstr"], str(out / TSTR_PICTURE))
        return

    run, mix, evaluation = run_demo(
        out, epsilon=epsilon, console=console, overrides=ray_overrides(ray)
    )
    _print_run(run)
    _print_evaluation(evaluation)
    table = Table(title="class mix (evaluation only: uses the demo set's labels)")
    for col in ("", "total variation to the private mix"):
        table.add_column(col)
    for name, value in mix.items():
        table.add_row(name, f"{value:.3f}")
    console.print(table)


def _fail(lines: list[str], code: int) -> int:
    for line in lines:
        sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (tests call it directly)."""
    args = list(sys.argv[1:] if argv is None else argv)
    # Libraries' own tqdm bars (GGUF de-quantisation, weight loading) would interleave with the
    # Rich progress display; penumbra reports progress itself.
    os.environ.setdefault("TQDM_DISABLE", "1")
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="penumbra", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as e:
        sys.stdout.write(e.ctx.get_help() + "\n")
        return 0
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        return _fail(["interrupted"], 130)
    except click_exc.UsageError as e:
        hint = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        return _fail([e.format_message().replace("\n", " ") + hint], EXIT_USAGE)
    except click_exc.ClickException as e:
        return _fail([e.format_message().replace("\n", " ")], EXIT_USAGE)
    except PenumbraError as e:
        if debug:
            raise
        return _fail(list(e.problems), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail(["interrupted"], 130)
    except Exception as e:
        if debug:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        return _fail(
            [f"internal error: {type(e).__name__}: {first} (rerun with --debug for the traceback)"],
            EXIT_INTERNAL,
        )
    return int(result) if isinstance(result, int) else 0


def entry() -> None:
    sys.exit(main())
