"""`penumbra identify IMAGE... [--ledger RUN ...] [--json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress

console = Console(highlight=False)


def register(root: typer.Typer) -> None:
    root.command()(identify)


def identify(
    images: Annotated[list[Path], typer.Argument(help="Image files to read a mark from.")],
    ledger: Annotated[
        list[Path] | None,
        typer.Option("--ledger", help="A run folder whose mark to name (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Say whether each image carries a penumbra watermark, and which run made it.

    One line per file and exit 0; a file that cannot be read gets its own line, and the
    command exits 2 after the others. A mark names a run by its key: give the run folders
    with --ledger to name them (and the output, where the file is unchanged)."""
    from penumbra.provenance.identify import describe, identify_file, load_run

    runs = [load_run(folder) for folder in ledger or []]
    failed = False
    with Progress(console=Console(stderr=True), transient=True, disable=len(images) < 20) as bar:
        task = bar.add_task("identify", total=len(images))
        for path in images:
            result = identify_file(path, runs)
            failed |= "error" in result
            if as_json:
                sys.stdout.write(json.dumps(result) + "\n")
            else:
                console.print(describe(result), markup=False, soft_wrap=True)
            bar.advance(task)
    if failed:
        raise typer.Exit(2)
