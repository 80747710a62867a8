"""`penumbra evaluate`: fidelity, class mix, a privacy audit and TSTR accuracy of a set, and
the tables and progress bars that `synthesize --evaluate` and `demo` print too."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from penumbra.compute.options import RAY_OPTION
from penumbra.errors import PenumbraError

console = Console()


def register(root: typer.Typer) -> None:
    """Add `penumbra evaluate` to the root app."""
    root.command("evaluate")(evaluate_command)


@contextmanager
def evaluation_progress(show_counts: bool = True) -> Iterator[Callable[[str, int, int], None]]:
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


def print_evaluation(result: dict[str, Any]) -> None:
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


def print_tstr(section: dict[str, Any], picture: str | None) -> None:
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
    with evaluation_progress() as on_progress, closing(engine_for_cli(ray)) as engine:
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
        print_evaluation(public)
        if "tstr" in public:
            print_tstr(public["tstr"], public.get("artifacts", {}).get("tstr_confusion"))
