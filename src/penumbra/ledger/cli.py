"""`penumbra verify` and `penumbra ledger ...`: audit a run, and look inside its ledger.

`verify` is a command of the root app (`register`); `ledger` is this module's group (`app`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from penumbra.errors import PenumbraError
from penumbra.ledger.cosignature import CosignerKey
from penumbra.ledger.witness_cli import app as witness_app
from penumbra.ledger.witness_cli import given_or_read

app = typer.Typer(help="Inspect a run's audit ledger.", no_args_is_help=True)
console = Console()
app.add_typer(witness_app, name="witness")


# set by `register`: the output checks of the rooms above (provenance), made for a --blocklist
_output_checks: Callable[[Path | None], Any] | None = None


def register(root: typer.Typer, output_checks: Callable[[Path | None], Any] | None = None) -> None:
    """Add `penumbra verify` to the root app; `output_checks(blocklist)` makes the check
    verify runs on the outputs after its own (penumbra.provenance.verify_outputs)."""
    global _output_checks
    _output_checks = output_checks
    root.command()(verify)


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
    witness_key: Annotated[
        list[str] | None,
        typer.Option(
            "--witness-key",
            help="A witness's verifier key (a file or the key itself); the newest checkpoint "
            "must carry its cosignature. Repeatable.",
        ),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint of this run you received earlier (a signed note file); the log "
            "must still extend it. Repeatable.",
        ),
    ] = None,
    blocklist: Annotated[
        Path | None,
        typer.Option(
            "--blocklist",
            help="The PDQ blocklist the run's policy names (by digest); every output is "
            "re-checked against it. Without it, only the recorded hashes are re-checked.",
        ),
    ] = None,
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
    witnesses = [witness_key_of(value) for value in witness_key or []]
    held = [(str(path), read_checkpoint_file(path)) for path in checkpoint or []]
    report = verify_run(
        run_dir, pubkey=key_text, cosigners=cosigners or None, witnesses=witnesses,
        checkpoints=held,
        output_check=_output_checks(blocklist) if _output_checks is not None else None,
    )  # fmt: skip
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


def witness_key_of(value: str) -> CosignerKey:
    """`--witness-key`: the key itself, or a file holding it (witness.vkey)."""
    from penumbra.ledger.cosignature import parse_cosigner_key
    from penumbra.ledger.note import NoteError

    try:
        return parse_cosigner_key(given_or_read(value))
    except NoteError as e:
        raise PenumbraError(f"--witness-key {value}: neither a key file nor a key ({e})") from None


def read_checkpoint_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PenumbraError(f"--checkpoint {path}: cannot read it ({type(e).__name__})") from None


def _print_receipt(receipt: dict) -> None:  # type: ignore[type-arg]
    table = Table(title="penumbra run receipt", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key in (
        "n_private", "epsilon_target", "delta", "sigma", "iterations", "epsilon_spent",
        "fixed_noise_seed", "penumbra_version", "config_sha256", "entries", "output_files",
        "public_key_source", "composition", "class_counts", "class_noisy_counts",
        "class_fractions", "class_output_counts", "witnessed", "held_checkpoints",
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


@app.command("show")
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


@app.command("pubkey")
def ledger_pubkey(
    signing_key: Annotated[
        str, typer.Argument(help="A PEM key file or a PKCS#11 URI (pkcs11:...?module-path=...).")
    ],
    name: Annotated[
        str,
        typer.Option("--name", help="The key name: penumbra-run, or penumbra-mpc-leader/helper."),
    ] = "penumbra-run",
) -> None:
    """Print the verifier key of a signing key, to publish before a run (for --pubkey)."""
    from penumbra.ledger.hsm import open_pkcs11_key
    from penumbra.ledger.note import NoteError, Signer, load_private_key

    try:
        if signing_key.startswith("pkcs11:"):
            signer = Signer(name, open_pkcs11_key(signing_key))
        else:
            signer = load_private_key(Path(signing_key), name)
        typer.echo(signer.vkey)
    except NoteError as e:
        raise PenumbraError(str(e)) from None  # names the file or the key name
