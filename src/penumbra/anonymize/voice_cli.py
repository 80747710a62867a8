"""`penumbra anonymize voice`: McAdams voice anonymization of a file or a folder tree."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from penumbra.compute.options import RAY_FILES_OPTION
from penumbra.errors import ConfigError, DataError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from .voice import VoiceReport


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `anonymize` sub-app."""
    app.command("voice")(voice)


def voice(
    src: Annotated[Path, typer.Argument(metavar="IN", help="A .wav/.flac/.mp3 file or a folder.")],
    dst: Annotated[
        Path,
        typer.Argument(
            metavar="OUT", help="Output file (same format as IN), or folder (tree mirrored)."
        ),
    ],
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="Fixed McAdams coefficient for every file (1 = unchanged)."),
    ] = None,
    alpha_range: Annotated[
        str | None,
        typer.Option(
            "--alpha-range",
            metavar="LO,HI",
            help="Draw α uniformly per file from [LO, HI] (default 0.7,0.9; VPC 2020 B2 uses 0.8).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Make the α draws reproducible (an attacker who knows α "
            "can partly undo the change: omit it for real releases).",
        ),
    ] = None,
    ray: Annotated[str | None, RAY_FILES_OPTION] = None,
) -> None:
    """Change speakers' voices (formant warping, McAdams coefficient) keeping words and timing.

    Format, sample rate, channels (each processed alike) and length are kept; existing output
    files are replaced atomically."""
    from rich.console import Console

    from penumbra.compute.engine import engine_for_cli
    from penumbra.compute.files import per_file

    from .voice import DEFAULT_ALPHA_RANGE, check_alpha, draw_alpha, make_rng

    if alpha is not None and alpha_range is not None:
        raise ConfigError("give --alpha or --alpha-range, not both")
    if alpha is not None:
        check_alpha(alpha)
    bounds = _parse_range(alpha_range) if alpha_range is not None else DEFAULT_ALPHA_RANGE
    rng = make_rng(seed)
    # α per file drawn here, in file order: the same α for a file on any engine
    jobs = [
        (a, b, alpha if alpha is not None else draw_alpha(bounds, rng)) for a, b in _plan(src, dst)
    ]
    console = Console()
    failures: list[str] = []
    total_audio = total_seconds = 0.0
    progress = _progress(console, len(jobs))
    with progress, closing(engine_for_cli(ray)) as engine:
        task = progress.add_task("anonymizing voices", total=len(jobs))
        for (_, file_dst, _), rep, problems in per_file(engine, voice_job, jobs):
            if problems:
                if len(jobs) == 1:
                    raise DataError(*problems)
                failures.extend(problems)
            else:
                total_audio += rep.duration_s
                total_seconds += rep.seconds
                gain = f", turned down {rep.peak_gain:.2f}x to avoid clipping"
                progress.console.print(
                    f"{file_dst}: {rep.duration_s:.2f} s, {rep.sample_rate} Hz, "
                    f"{rep.channels} ch, α={rep.alpha:.3f}, RTF {rep.rtf:.3f}"
                    + (gain if rep.peak_gain < 1 else ""),
                    highlight=False,
                    markup=False,
                )
            progress.advance(task)
    done = len(jobs) - len(failures)
    if len(jobs) > 1:
        rtf = total_seconds / total_audio if total_audio > 0 else float("nan")
        console.print(
            f"{done} of {len(jobs)} files anonymized ({total_audio:.1f} s of audio, RTF {rtf:.3f})",
            highlight=False,
        )
    if failures:
        raise DataError(*failures)


def voice_job(job: tuple[Path, Path, float]) -> VoiceReport:
    """One file with its own α (a task on a cluster worker)."""
    from .voice import anonymize_file

    src, dst, alpha = job
    return anonymize_file(src, dst, alpha)


def _parse_range(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--alpha-range: expected LO,HI such as 0.7,0.9, got {text!r}") from None
    return lo, hi


def _plan(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs; a folder is walked recursively and mirrored under `dst`."""
    from .audio_io import SUPPORTED_SUFFIXES, check_suffix

    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"{dst}: OUT must differ from IN (the input is never overwritten)")
    if src.is_file():
        suffix = check_suffix(src)
        out = dst / src.name if dst.is_dir() else dst
        if out.suffix.lower() != suffix:
            raise ConfigError(
                f"{out}: OUT must have the extension of IN ({suffix}); formats are not converted"
            )
        return [(src, out)]
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"{dst}: IN is a folder, so OUT must be a folder too")
    skip = dst.resolve()
    files = sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not p.resolve().is_relative_to(skip)
    )
    if not files:
        raise DataError(f"{src}: no {'/'.join(SUPPORTED_SUFFIXES)} files in this folder tree")
    return [(p, dst / p.relative_to(src)) for p in files]


def _progress(console: Console, total: int) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=total < 2,
    )
