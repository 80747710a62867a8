"""`penumbra anonymize metadata`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from penumbra.compute.options import RAY_FILES_OPTION


def metadata(
    src: Annotated[Path, typer.Argument(help="An image/video file, or a folder (recursive).")],
    dst: Annotated[Path, typer.Argument(help="Output file, or folder (same layout).")],
    ray: Annotated[str | None, RAY_FILES_OPTION] = None,
) -> None:
    """Remove EXIF/GPS, IPTC, XMP, ICC, comments and container metadata; pixels untouched."""
    from contextlib import closing

    from rich.console import Console
    from rich.table import Table

    from penumbra.anonymize.metadata import strip_folder, strip_metadata
    from penumbra.compute.engine import engine_for_cli

    with closing(engine_for_cli(ray)) as engine:
        report = strip_folder(src, dst, engine=engine) if src.is_dir() else strip_metadata(src, dst)
    table = Table(title=f"metadata removed ({len(report.files)} file(s) written to {dst})")
    table.add_column("file")
    table.add_column("removed")
    for f in report.files:
        removed = ", ".join(f"{name} x{count}" for name, count in sorted(f.removed.items()))
        table.add_row(str(f.dst), removed or "nothing found")
    console = Console()
    console.print(table)
    if report.skipped:
        console.print(
            f"[yellow]skipped (unsupported type, not copied)[/yellow]: {len(report.skipped)} "
            f"file(s), e.g. {report.skipped[0]}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `anonymize` sub-app."""
    app.command("metadata")(metadata)
