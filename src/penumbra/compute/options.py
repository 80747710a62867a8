"""The `--ray ADDRESS` option, as every command that can run on a cluster spells it."""

from __future__ import annotations

import typer

RAY_OPTION = typer.Option(
    "--ray",
    metavar="ADDRESS",
    help="Run the heavy stages on Ray: local (a private instance), auto, HOST:PORT or "
    "ray://HOST:PORT. Shorthand for --set compute.engine=ray --set compute.address=ADDRESS.",
)

RAY_FILES_OPTION = typer.Option(
    "--ray",
    metavar="ADDRESS",
    help="One file per task on Ray: local, auto, HOST:PORT or ray://HOST:PORT "
    "(folders on storage every node mounts).",
)


def ray_overrides(address: str | None) -> list[str]:
    """`--ray ADDRESS` as config overrides (validated with the rest of the config)."""
    return [] if address is None else ["compute.engine=ray", f"compute.address={address}"]
