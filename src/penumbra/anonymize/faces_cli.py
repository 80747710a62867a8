"""`penumbra anonymize faces`: mask faces in images and videos, one file or a folder tree."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from penumbra.compute.options import RAY_FILES_OPTION
from penumbra.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from penumbra.anonymize.face_jobs import Job
    from penumbra.anonymize.faces import FaceReport, FaceSettings
    from penumbra.anonymize.video import VideoReport


def parse_size(text: str | None) -> tuple[int, int] | None:
    """ "640x360" -> (640, 360); ConfigError naming --scale otherwise."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--scale: expected WIDTHxHEIGHT such as 640x360, got {text!r}")
    return int(parts[0]), int(parts[1])


def describe(report: FaceReport | VideoReport) -> str:
    """One line per file: what was found, what a second look at the output found, speed."""
    from penumbra.anonymize.faces import FaceReport

    res = report.residual
    if isinstance(report, FaceReport):
        return (
            f"{report.src} -> {report.dst}: {report.faces} face(s) masked; residual faces on "
            f"output: CenterFace {res.primary}, MTCNN {res.second}; {report.fps:.1f} images/s"
        )
    audio = "audio copied" if report.audio_kept else "no audio"
    return (
        f"{report.src} -> {report.dst}: {report.frames} frames, faces {report.faces_total} total, "
        f"max {report.faces_max} per frame, {report.held} box(es) added by the hold; residual "
        f"faces in {report.frames_checked} checked frame(s): CenterFace {res.primary}, MTCNN "
        f"{res.second}; {audio}; {report.fps:.1f} frames/s"
    )


def _frame_counter(progress: Progress, task: TaskID) -> Callable[[int, int | None], None]:
    """A progress callback that shows frames/s since the first frame came out."""
    started: list[float] = []

    def update(done: int, total: int | None) -> None:
        now = time.perf_counter()
        if not started:
            started.append(now)
        rate = (done - 1) / (now - started[0]) if now > started[0] else 0.0
        if total is not None and done > total:
            total = None  # the container's duration under-estimated the frame count
        progress.update(task, completed=done, total=total, rate=f"{rate:.1f} frames/s")

    return update


def anonymize_job(settings: FaceSettings, job: Job) -> FaceReport | VideoReport:
    """One file: an image, or a whole video (a task on a cluster worker)."""
    from penumbra.anonymize.faces import anonymize_image
    from penumbra.anonymize.video import anonymize_video

    if job.kind == "image":
        return anonymize_image(job.src, job.dst, settings)
    return anonymize_video(job.src, job.dst, settings)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `anonymize` sub-app."""

    @app.command("faces")
    def faces(
        src: Annotated[Path, typer.Argument(help="An image, a video, or a folder of them.")],
        dst: Annotated[
            Path, typer.Argument(help="Output file, or folder (mirrors the input folder).")
        ],
        mode: Annotated[str, typer.Option(help="blur, mosaic or solid.")] = "blur",
        threshold: Annotated[
            float, typer.Option(help="CenterFace score above which a face is masked.")
        ] = 0.2,
        mask_scale: Annotated[float, typer.Option(help="Grow each face box by this.")] = 1.3,
        keep_audio: Annotated[
            bool, typer.Option("--keep-audio", help="Copy the audio (dropped by default).")
        ] = False,
        scale: Annotated[
            str | None,
            typer.Option(help="Detection input size WxH, e.g. 640x360 (default: full size)."),
        ] = None,
        hold: Annotated[
            int, typer.Option(help="Video: keep a face's box across up to this many missed frames.")
        ] = 5,
        boxes: Annotated[
            bool, typer.Option("--boxes", help="Mask whole boxes instead of ellipses.")
        ] = False,
        backend: Annotated[str, typer.Option(help="auto, onnxruntime or opencv.")] = "auto",
        check_every: Annotated[
            int, typer.Option(help="Video: count residual faces on every Nth frame (0: off).")
        ] = 10,
        ray: Annotated[str | None, RAY_FILES_OPTION] = None,
    ) -> None:
        """Mask faces in images and videos, and report faces a second detector still finds.

        CenterFace masks; MTCNN looks for residual faces in the output. Metadata is not
        copied; audio only with --keep-audio."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        from penumbra.anonymize.face_jobs import plan
        from penumbra.anonymize.faces import FaceSettings, anonymize_image
        from penumbra.anonymize.video import anonymize_video
        from penumbra.compute.engine import LocalEngine, engine_for_cli
        from penumbra.compute.files import per_file
        from penumbra.errors import PenumbraError

        settings = FaceSettings(
            mode=mode,  # type: ignore[arg-type]  # validated by FaceSettings
            threshold=threshold, mask_scale=mask_scale, keep_audio=keep_audio,
            scale=parse_size(scale), hold=hold, backend=backend,  # type: ignore[arg-type]
            ellipse=not boxes, check_every=check_every,
        )  # fmt: skip
        jobs, skipped = plan(src, dst)
        console = Console()
        failures: list[str] = []
        columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
        )  # fmt: skip
        engine = engine_for_cli(ray)
        with Progress(*columns, console=console, transient=True) as progress, closing(engine):
            files = progress.add_task("files", total=len(jobs), rate="")
            if not isinstance(engine, LocalEngine):  # one file per task on the cluster
                work = partial(anonymize_job, settings)
                for _job, done, problems in per_file(engine, work, jobs):
                    if problems and len(jobs) == 1:
                        raise PenumbraError(*problems)
                    if problems:
                        failures.extend(problems)
                        console.print(
                            f"[red]failed[/red]: {problems[0]}", highlight=False, soft_wrap=True
                        )
                    else:
                        console.print(describe(done), highlight=False, markup=False, soft_wrap=True)
                    progress.advance(files)
                jobs = []
            for job in jobs:
                try:
                    if job.kind == "image":
                        report: FaceReport | VideoReport = anonymize_image(
                            job.src, job.dst, settings
                        )
                    else:
                        task = progress.add_task(job.src.name, total=None, rate="")
                        on_progress = _frame_counter(progress, task)
                        report = anonymize_video(job.src, job.dst, settings, on_progress)
                        progress.remove_task(task)
                except PenumbraError as e:
                    if len(jobs) == 1:
                        raise
                    failures.extend(e.problems)
                    console.print(
                        f"[red]failed[/red]: {e.problems[0]}", highlight=False, soft_wrap=True
                    )
                else:
                    console.print(describe(report), highlight=False, markup=False, soft_wrap=True)
                progress.advance(files)
        if skipped:
            console.print(f"{skipped} file(s) that are not images or videos were left out")
        if failures:
            raise PenumbraError(*failures)
