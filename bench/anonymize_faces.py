"""Face anonymization: detection quality, residual faces, and video speed next to `deface`.

1. Detection on scikit-image's `lfw_subset` (100 face and 100 non-face 25x25 grey crops):
   each crop upscaled to 100x100 (bicubic) and set on a 40-px grey border (180x180 image), since
   neither detector looks for 25-px faces. CenterFace (masking detector) at 0.2 (penumbra's and
   deface's default) and 0.5; MTCNN (second detector) at 0.9 (penumbra's residual threshold).
   Plus the 512x512 astronaut photograph.
2. Residual faces after `anonymize_image` in each mode, on the same images.
3. Video throughput on a generated 1280x720, 30 frames/s, 5 s clip (two moving faces):
   `penumbra anonymize faces` logic (residual checks off) at full size and with detection at
   640x360, and the `deface` CLI on the same clip with the same options, in the same run.

    .venv/bin/python bench/anonymize_faces.py      # ~5 minutes on 2 cores

Writes bench/results/anonymize_faces.md and .png.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data
from PIL import Image
from rich.progress import Progress

from penumbra.anonymize.detect import detect_faces, resolve_backend, second_detector
from penumbra.anonymize.faces import FaceSettings, anonymize_image
from penumbra.anonymize.video import anonymize_video

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
W, H, FPS, SECONDS = 1280, 720, 30, 5


def lfw_images() -> tuple[list[np.ndarray], list[np.ndarray]]:
    def prep(crop: np.ndarray) -> np.ndarray:
        grey = cv2.resize((crop * 255).round().astype(np.uint8), (100, 100),
                          interpolation=cv2.INTER_CUBIC)  # fmt: skip
        rgb = np.stack([grey] * 3, axis=-1)
        return cv2.copyMakeBorder(rgb, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=(128, 128, 128))

    data = skimage.data.lfw_subset()
    return [prep(c) for c in data[:100]], [prep(c) for c in data[100:]]


def detection_table(progress: Progress) -> list[tuple[str, str, str, str]]:
    faces, others = lfw_images()
    astronaut = skimage.data.astronaut()
    detectors = {
        "CenterFace @0.2": lambda im: detect_faces(im, 0.2),
        "CenterFace @0.5": lambda im: detect_faces(im, 0.5),
        "MTCNN @0.9": lambda im: second_detector()(im, 0.9),
    }
    rows = []
    task = progress.add_task("detection", total=len(detectors) * 201)
    for name, run in detectors.items():
        hits = 0
        for im in faces:
            hits += bool(run(im))
            progress.advance(task)
        false = 0
        for im in others:
            false += len(run(im))
            progress.advance(task)
        astro = len(run(astronaut))
        progress.advance(task)
        rows.append((name, f"{hits}/100", f"{false} (on 100 images)", str(astro)))
    return rows


def residual_table(progress: Progress, tmp: Path) -> list[tuple[str, str, str, str]]:
    faces, _ = lfw_images()
    images = [*faces, skimage.data.astronaut()]
    rows = []
    task = progress.add_task("residual", total=3 * len(images))
    for mode in ("blur", "mosaic", "solid"):
        settings = FaceSettings(mode=mode)  # type: ignore[arg-type]
        masked = primary = second = 0
        for k, im in enumerate(images):
            src = tmp / f"r{k}.png"
            Image.fromarray(im).save(src)
            report = anonymize_image(src, tmp / f"r{k}-{mode}.png", settings)
            masked += report.faces
            primary += report.residual.primary
            second += report.residual.second
            progress.advance(task)
        rows.append((mode, str(masked), str(primary), str(second)))
    return rows


def make_clip(path: Path) -> None:
    from imageio_ffmpeg import get_ffmpeg_exe

    astronaut = skimage.data.astronaut()
    big = cv2.resize(astronaut[30:210, 150:300], (240, 288), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(astronaut[30:210, 150:300], (120, 144), interpolation=cv2.INTER_AREA)
    cmd = [get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-crf", "18",
           "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    yy, xx = np.mgrid[0:H, 0:W]
    background = np.stack([(xx * 200 // W), (yy * 200 // H), np.full_like(xx, 90)], -1)
    background = background.astype(np.uint8)
    for i in range(FPS * SECONDS):
        frame = background.copy()
        x = 40 + i * 6
        frame[200:488, x : x + 240] = big
        y = 40 + i * 3
        frame[y : y + 144, 1000:1120] = small
        proc.stdin.write(frame.tobytes())
    proc.stdin.close()
    assert proc.wait() == 0


def time_penumbra(
    clip: Path, out: Path, scale: tuple[int, int] | None, backend: str = "auto"
) -> tuple[float, int]:
    settings = FaceSettings(scale=scale, check_every=0, backend=backend)  # type: ignore[arg-type]
    detect_faces(np.zeros((H, W, 3), np.uint8), 0.2, in_size=scale, backend=backend)  # type: ignore[arg-type]
    start = time.perf_counter()
    report = anonymize_video(clip, out, settings)
    return report.frames / (time.perf_counter() - start), report.faces_max


def time_deface(clip: Path, out: Path, scale: str | None, backend: str) -> float | str:
    exe = shutil.which("deface", path=str(Path(sys.executable).parent))
    if exe is None:
        return "deface console script not found"
    cmd = [exe, str(clip), "-o", str(out), "--backend", backend]
    if scale:
        cmd += ["--scale", scale]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        return f"failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    return FPS * SECONDS / seconds  # includes its ~1 s start-up (model load, imports)


def plot(rows: list[tuple[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.4))
    names = [r[0] for r in rows]
    values = [r[1] for r in rows]
    colours = ["tab:blue" if n.startswith("penumbra") else "tab:grey" for n in names]
    ax.barh(names, values, color=colours)
    for k, v in enumerate(values):
        ax.text(v, k, f" {v:.1f}", va="center")
    ax.set_xlabel("frames/s, 1280x720 clip, 2 CPU cores (higher is better)")
    ax.set_xlim(0, max(values) * 1.15)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    backend = resolve_backend("auto")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmpdir, Progress() as progress:
        tmp = Path(tmpdir)
        det = detection_table(progress)
        res = residual_table(progress, tmp)
        clip = tmp / "clip.mp4"
        make_clip(clip)
        speed: list[tuple[str, float | str]] = []
        task = progress.add_task("video", total=5)
        for label, scale in (("full size", None), ("detection at 640x360", (640, 360))):
            fps, faces_max = time_penumbra(clip, tmp / f"p{label[:4]}.mp4", scale)
            speed.append((f"penumbra, {label} (max {faces_max} faces/frame)", fps))
            progress.advance(task)
            deface = time_deface(clip, tmp / f"d{label[:4]}.mp4",
                                 None if scale is None else "640x360", "opencv")  # fmt: skip
            speed.append((f"deface 1.5.0 CLI (OpenCV backend), {label}", deface))
            progress.advance(task)
        fps, _ = time_penumbra(clip, tmp / "pcv.mp4", (640, 360), "opencv")
        speed.append(("penumbra, OpenCV backend, detection at 640x360", fps))
        progress.advance(task)
    load_after = os.getloadavg()[0]
    lines = [
        "# Face anonymization (`bench/anonymize_faces.py`)",
        "",
        f"Machine: developer VM, {os.cpu_count()} CPU cores, {platform.processor() or 'x86_64'}, "
        f"no GPU; shared with other jobs (1-min load average {load_before:.1f} before, "
        f"{load_after:.1f} after), so speeds are indicative and both tools ran under the same "
        f"load. penumbra CenterFace backend: {backend}. Python {platform.python_version()}, "
        f"OpenCV {cv2.__version__}.",
        f"Command: `.venv/bin/python bench/anonymize_faces.py` ({time.strftime('%Y-%m-%d')}).",
        "",
        "## Detection (scikit-image lfw_subset, 25x25 crops upscaled to 100x100 on a 40-px "
        "grey border; astronaut 512x512)",
        "",
        "| detector | LFW faces found | detections on LFW non-faces | astronaut faces |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in det),
        "",
        "## Residual faces after anonymization (100 upscaled LFW faces + astronaut)",
        "",
        "Residual = detections on the written output: CenterFace at 0.5, MTCNN at 0.9.",
        "",
        "| mode | faces masked | residual CenterFace | residual MTCNN |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in res),
        "",
        f"## Video speed ({W}x{H}, {FPS} frames/s, {SECONDS} s, two moving faces)",
        "",
        "penumbra: `anonymize_video` with residual checks off (`--check-every 0`), H.264 "
        "veryfast/CRF 20, model loaded beforehand. deface: its CLI as a subprocess "
        "(`deface CLIP -o OUT --backend opencv [--scale 640x360]`, libx264 via imageio), "
        "wall time including its start-up (~1-2 s). deface runs with opencv-python-headless 5 "
        "in place of its declared opencv-python. Its `auto` backend would take onnxruntime "
        "only when `onnx` is installed; the bench pins OpenCV, which is what a plain "
        "`--no-deps` install gets. The last row isolates penumbra's pipeline from its faster "
        "backend. 'faces masked' above counts detections: one LFW image gets two.",
        "",
        "| run | frames/s |",
        "|---|---|",
        *(
            f"| {name} | {v:.1f} |" if isinstance(v, float) else f"| {name} | {v} |"
            for name, v in speed
        ),
        "",
    ]
    (RESULTS / "anonymize_faces.md").write_text("\n".join(lines))
    plot([(n, v) for n, v in speed if isinstance(v, float)], RESULTS / "anonymize_faces.png")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
