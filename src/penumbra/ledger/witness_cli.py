"""`penumbra ledger witness init | add-log | serve`: run a witness for penumbra runs (or any
C2SP checkpoint log)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="A transparency-log witness (C2SP tlog-witness) that cosigns run checkpoints.",
    no_args_is_help=True,
)


def given_or_read(value: str) -> str:
    """An option that takes a value or the file holding it (a key, an origin)."""
    path = Path(value)
    return path.read_text(encoding="utf-8").strip() if path.is_file() else value


@app.command("init")
def witness_init(
    state_dir: Annotated[
        Path, typer.Argument(help="A new folder for the witness's key and state.")
    ],
    name: Annotated[
        str, typer.Option("--name", help="The witness's name, e.g. witness.example/w1.")
    ],
    pkcs11: Annotated[
        str | None,
        typer.Option(
            "--pkcs11",
            help="Cosign with an Ed25519 key on a PKCS#11 token (an RFC 7512 URI) instead of "
            "a key file; the PIN from pin-source=file:... or PENUMBRA_PKCS11_PIN.",
        ),
    ] = None,
) -> None:
    """Make the witness key; print its verifier key (also in STATE_DIR/witness.vkey)."""
    from penumbra.ledger.witness import init_state

    cosigner = init_state(state_dir, name, pkcs11)
    typer.echo(cosigner.vkey)


@app.command("add-log")
def witness_add_log(
    state_dir: Annotated[Path, typer.Argument(help="The witness's state folder.")],
    key: Annotated[
        str,
        typer.Option("--key", help="The log's verifier key (a run's ledger/pubkey), or a file."),
    ],
    origin: Annotated[
        str,
        typer.Option(
            "--origin",
            help="The log's origin (a run's ledger/origin), or that file: a log is its origin "
            "and its key.",
        ),
    ],
) -> None:
    """Witness the log ORIGIN signed by KEY; a running witness picks it up without a restart."""
    from penumbra.ledger.witness import add_log

    entry = add_log(state_dir, given_or_read(key), given_or_read(origin))
    typer.echo(f"witnessing {entry.origin} signed by {entry.vkey.split('+')[0]}")


@app.command("serve")
def witness_serve(
    state_dir: Annotated[Path, typer.Argument(help="The witness's state folder.")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve POST /add-checkpoint until interrupted."""
    from penumbra.ledger.witness import load_cosigner
    from penumbra.ledger.witness_app import serve

    cosigner = load_cosigner(state_dir)
    typer.echo(f"witness {cosigner.name} on http://{host}:{port}  key {cosigner.vkey}", err=True)
    serve(state_dir, host, port)
