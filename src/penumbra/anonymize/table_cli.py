"""`penumbra anonymize table`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def table(
    src: Annotated[Path, typer.Argument(help="Input CSV (first line: column names).")],
    dst: Annotated[Path, typer.Argument(help="Output CSV (written atomically).")],
    quasi_identifiers: Annotated[
        str, typer.Option("--quasi-identifiers", help="Comma-separated quasi-identifier columns.")
    ],
    sensitive: Annotated[str, typer.Option("--sensitive", help="The sensitive column.")],
    k: Annotated[int, typer.Option("--k", help="Minimum rows per group of equal QIs (>= 2).")],
    l: Annotated[  # noqa: E741
        float | None, typer.Option("--l", help="Require l-diversity of the sensitive column.")
    ] = None,
    l_kind: Annotated[
        str, typer.Option("--l-kind", help="distinct or entropy l-diversity.")
    ] = "distinct",
    t: Annotated[
        float | None, typer.Option("--t", help="Require t-closeness (EMD), t in (0, 1].")
    ] = None,
    suppression_limit: Annotated[
        float,
        typer.Option("--suppression-limit", help="Largest fraction of rows that may be dropped."),
    ] = 0.0,
    categorical: Annotated[
        str | None,
        typer.Option(
            "--categorical",
            help="QIs to treat as categories; the others must be numeric. Default: "
            "columns holding non-numbers are categorical.",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the report as JSON.")
    ] = None,
) -> None:
    """Generalise a table (Mondrian) until it is k-anonymous [and l-diverse, t-close]."""
    from rich.console import Console
    from rich.table import Table

    from penumbra.anonymize.tables import anonymize_table
    from penumbra.durable import atomic_write_bytes

    result = anonymize_table(
        src,
        _names(quasi_identifiers),
        sensitive,
        k,
        l,
        t,
        l_kind=l_kind,  # type: ignore[arg-type]  # validated inside
        suppression_limit=suppression_limit,
        # not given: columns with non-numeric values are categorical, the rest numeric
        categorical=_names(categorical) if categorical is not None else None,
    )
    atomic_write_bytes(dst, result.table.to_csv(index=False).encode("utf-8"))
    r = result.report
    if report is not None:
        atomic_write_bytes(report, (json.dumps(r.to_json(), indent=2) + "\n").encode("utf-8"))
    summary = Table(title=f"{dst}", show_header=False)
    summary.add_column("")
    summary.add_column("")
    rows = [
        ("rows in / out / suppressed", f"{r.rows_in} / {r.rows_out} / {r.suppressed}"),
        ("equivalence classes", str(r.partitions)),
        ("achieved k", str(r.k)),
        ("achieved l (distinct / entropy)", f"{r.l_distinct} / {r.l_entropy:.3f}"),
        ("achieved t (EMD)", f"{r.t:.4f}"),
        ("NCP (mean, 0 = none lost)", f"{r.ncp:.4f}"),
        ("discernibility", str(r.discernibility)),
        ("seconds", f"{r.seconds:.2f}"),
    ]
    for name, value in rows:
        summary.add_row(name, value)
    console = Console()
    console.print(summary)
    if r.passthrough_columns:
        console.print(
            f"[yellow]copied unchanged[/yellow] (drop direct identifiers yourself): "
            f"{', '.join(r.passthrough_columns)}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `anonymize` sub-app."""
    app.command("table")(table)
