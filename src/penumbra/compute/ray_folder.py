"""The private Ray instance's temporary folder, noted under the run's private/ folder.

penumbra.compute.ray_engine writes the note when it starts a private instance; opening any
engine for a run (penumbra.compute.engine.open_engine) removes what a killed driver left."""

from __future__ import annotations

from pathlib import Path

RAY_FOLDER_NOTE = "ray-temp"  # under the run's private/: the private instance's temp folder


def remove_stale_ray_folder(private_dir: Path) -> None:
    """A driver killed while its private Ray instance ran leaves that instance's folder (logs,
    sockets) behind; the next start or resume of the run removes it."""
    import shutil
    import tempfile

    note = private_dir / RAY_FOLDER_NOTE
    if not note.is_file():
        return
    folder = Path(note.read_text(encoding="utf-8").strip())
    if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("penumbra-ray-"):
        shutil.rmtree(folder, ignore_errors=True)
    note.unlink(missing_ok=True)
