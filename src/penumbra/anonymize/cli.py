"""`penumbra anonymize ...`: one Typer sub-app; each media kind registers its own commands.

Heavy libraries (OpenCV, ffmpeg, audio) are imported inside the commands so that
`penumbra --help` stays fast.
"""

from __future__ import annotations

import typer

from . import faces_cli, metadata_cli, table_cli, voice_cli

app = typer.Typer(
    help="Remove faces, voices, metadata and re-identifying table rows from media.",
    no_args_is_help=True,
)

for _module in (faces_cli, voice_cli, metadata_cli, table_cli):
    _module.register(app)
