"""Thin Typer front: parse, load config, call a pipeline, print a summary.

The commands of a room live beside the code they drive, each module registering its own:
penumbra.anonymize.cli, penumbra.evaluate.cli (`evaluate`), penumbra.ledger.cli (`verify`,
`ledger`), penumbra.mpc.cli. Here: `version`, `models`, `config`, the single-holder pipeline's
`synthesize` and `demo`, and the error handling every command shares.

Errors the user can fix arrive as PenumbraError (or click usage errors) and leave as one line
per problem on stderr with exit code 2; anything else is an internal error, exit 1. Tracebacks
only with --debug.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from penumbra.anonymize.cli import app as anonymize_app
from penumbra.compute.options import RAY_OPTION, ray_overrides
from penumbra.errors import PenumbraError
from penumbra.evaluate import cli as evaluate_cli
from penumbra.evaluate.cli import evaluation_progress, print_evaluation, print_tstr
from penumbra.ledger import cli as ledger_cli
from penumbra.mpc.cli import app as mpc_app
from penumbra.provenance import cli as provenance_cli
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


def output_checks(blocklist: Path | None) -> object:
    """verify's checks of the outputs (policy, watermark, credentials), loaded on use."""
    from penumbra.provenance.verify_outputs import output_checks as make

    return make(blocklist)


ledger_cli.register(app, output_checks)  # verify, with the checks of the outputs
provenance_cli.register(app)  # identify
app.add_typer(ledger_cli.app, name="ledger")
app.add_typer(anonymize_app, name="anonymize")
app.add_typer(mpc_app, name="mpc")


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
        str | None,
        typer.Option(
            "--signing-key",
            help="Ed25519 key to sign the ledger: a PEM file, or a PKCS#11 URI "
            "(pkcs11:token=...;object=...?module-path=...) for a key on a token.",
        ),
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
    from penumbra.pe.plan import Plan
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

        with evaluation_progress(show_counts=result.n_private is not None) as on_progress:
            evaluation = evaluate_run(
                run_dir, holdout=holdout, classifier=classifier, on_progress=on_progress
            )
        write_report(run_dir)
        from penumbra.ledger.tree import record_published

        record_published(run_dir, "evaluation", signing_key=signing_key)
        print_evaluation(evaluation)


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


evaluate_cli.register(app)  # evaluate: after synthesize, as `penumbra --help` lists them


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
        print_evaluation(evaluation)
        print_tstr(evaluation["tstr"], str(out / TSTR_PICTURE))
        return

    run, mix, evaluation = run_demo(
        out, epsilon=epsilon, console=console, overrides=ray_overrides(ray)
    )
    _print_run(run)
    print_evaluation(evaluation)
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
