"""The invisible watermark under common edits, and `identify`'s false positives.

Part 1 (robustness): at each output size, photos from scikit-image and renders of
builtin:fashion-t2i are marked (each with its own random run identifier, per seed) and then
edited: JPEG q90/75/50, resize x0.75 / x0.5 (not scaled back: `identify` must find it),
a 10% crop (90% of each side kept, centred), brightness +-10%. Reported per edit: bit
accuracy (the 72 payload bits as the decoder reads them, the edited image scaled back to the
marked size, as the library's own decoder would be used) and the detection rate of
`read_mark` (the full `identify` path: the right run identifier, nothing else). Baseline in
the same run: the library's dwtDct method at Stable Diffusion XL's settings (48 bits), bit
accuracy only. PSNR of marking and time per image are reported too.

Part 2 (false positives): `read_mark` on >= 10 000 unmarked images (Fashion-MNIST, upscaled
to 256 px, and random crops of the scikit-image photos at 256-1024 px); any mark found is a
false positive. 0 of n bounds the rate below 3/n at 95% (rule of three).

    python bench/provenance.py [--fp 10000] [--seeds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from penumbra.provenance.mark import encode_mark
from penumbra.provenance.watermark import embed_mark, read_bits, read_mark

SIZES = (256, 512, 1024)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "camera")
CAPTIONS = ("a photo of a coat", "a dark slim dress", "a bag", "a light pair of trousers",
            "a photo of a sneaker", "a shirt")  # fmt: skip


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def scaled(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((round(w * factor), round(h * factor)), Image.Resampling.BICUBIC)


def cropped(image: Image.Image, keep: float = 0.9) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return image.crop((dx, dy, w - dx, h - dy))


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return Image.fromarray(np.clip(np.asarray(image, float) * factor, 0, 255).astype(np.uint8))


EDITS = {
    "none": lambda im: im, "jpeg q90": lambda im: jpeg(im, 90),
    "jpeg q75": lambda im: jpeg(im, 75), "jpeg q50": lambda im: jpeg(im, 50),
    "resize x0.75": lambda im: scaled(im, 0.75), "resize x0.5": lambda im: scaled(im, 0.5),
    "crop 10%": cropped, "brightness +10%": lambda im: brightness(im, 1.1),
    "brightness -10%": lambda im: brightness(im, 0.9),
}  # fmt: skip


def originals(size: int) -> list[tuple[str, Image.Image]]:
    from skimage import data

    from penumbra.models.registry import load

    found = []
    for name in PHOTOS:
        array = getattr(data, name)()
        array = np.stack([array] * 3, -1) if array.ndim == 2 else array[..., :3]
        found.append((name, Image.fromarray(array).convert("RGB").resize((size, size))))
    generator = load("builtin:fashion-t2i", steps=6, image_size=size)
    for i, caption in enumerate(CAPTIONS):
        found.append((f"render {i}", generator.generate([caption], seed=100 + i)[0].convert("RGB")))
    return found


def baseline_marked(image: Image.Image, bits: np.ndarray) -> Image.Image:
    """The library's dwtDct at SDXL's settings (48 bits, default scales)."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits[:48].tolist())
    bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
    return Image.fromarray(np.ascontiguousarray(encoder.encode(bgr, "dwtDct")[..., ::-1]))


def baseline_bits(marked: Image.Image, bits: np.ndarray, edit) -> float:  # type: ignore[no-untyped-def]
    from imwatermark import WatermarkDecoder

    edited = edit(marked).convert("RGB").resize(marked.size, Image.Resampling.BICUBIC)
    read = WatermarkDecoder("bits", 48).decode(np.ascontiguousarray(np.asarray(edited)[..., ::-1]),
                                               "dwtDct")  # fmt: skip
    return float(np.mean(np.array(read, np.uint8) == bits[:48]))


def robustness(seeds: int) -> dict:  # type: ignore[type-arg]
    results: dict = {}  # type: ignore[type-arg]
    for size in SIZES:
        images = originals(size)
        rows = {e: {"bits": [], "detected": [], "baseline_bits": []} for e in EDITS}
        psnr, embed_s, read_s = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            for _, image in images:
                mark = rng.bytes(4).hex()
                bits = encode_mark(mark)
                start = time.perf_counter()
                marked = embed_mark(image, mark)
                embed_s.append(time.perf_counter() - start)
                base = baseline_marked(image, bits)
                a, b = np.asarray(image, float), np.asarray(marked, float)
                psnr.append(10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-12)))
                for name, edit in EDITS.items():
                    edited = edit(marked).convert("RGB")
                    back = edited.resize(marked.size, Image.Resampling.BICUBIC)
                    rows[name]["bits"].append(float(np.mean(read_bits(back) == bits)))
                    start = time.perf_counter()
                    rows[name]["detected"].append(read_mark(edited).mark == mark)
                    read_s.append(time.perf_counter() - start)
                    rows[name]["baseline_bits"].append(baseline_bits(base, bits, edit))
        results[size] = {
            "psnr_db": [float(np.mean(psnr)), float(np.std(psnr))],
            "embed_s": float(np.mean(embed_s)), "identify_s": float(np.mean(read_s)),
            "images": len(images) * seeds,
            "edits": {n: {k: [float(np.mean(v)), float(np.std(v))] for k, v in r.items()}
                      for n, r in rows.items()},
        }  # fmt: skip
        print(json.dumps({size: results[size]}), flush=True)
    return results


def _unmarked(index: int) -> Image.Image:
    if index < _FASHION.shape[0]:
        return Image.fromarray(_FASHION[index]).convert("RGB").resize((256, 256))
    rng = np.random.default_rng(index)
    photo = _PHOTOS[index % len(_PHOTOS)]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w)))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    out = int(rng.choice([256, 384, 512, 640, 768, 1024]))
    return Image.fromarray(photo[y : y + side, x : x + side]).resize((out, out))


def _read(index: int) -> tuple[int, str | None]:
    return index, read_mark(_unmarked(index)).mark


def _init(fashion: np.ndarray, photos: list[np.ndarray]) -> None:
    global _FASHION, _PHOTOS
    _FASHION, _PHOTOS = fashion, photos


def false_positives(n: int, workers: int) -> dict:  # type: ignore[type-arg]
    from skimage import data

    from penumbra.data.fashion import load_fashion_mnist  # the Debian package's copy

    images, _ = load_fashion_mnist("test")
    fashion = images[: int(n * 0.8)]
    photos = []
    for name in (
        *PHOTOS,
        "cat",
        "hubble_deep_field",
        "retina",
        "colorwheel",
        "brick",
        "grass",
        "gravel",
        "moon",
        "coins",
    ):
        array = getattr(data, name)()
        photos.append(np.stack([array] * 3, -1) if array.ndim == 2 else array[..., :3])
    start = time.perf_counter()
    with Pool(workers, initializer=_init, initargs=(fashion, photos)) as pool:
        found = [(i, m) for i, m in pool.imap_unordered(_read, range(n), chunksize=50) if m]
    seconds = time.perf_counter() - start
    return {"images": n, "fashion_mnist": len(fashion), "photo_crops": n - len(fashion),
            "false_positives": found, "seconds": seconds,
            "upper_95": 3 / n if not found else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fp", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("bench/results/provenance.json"))
    args = parser.parse_args()
    result = {"robustness": robustness(args.seeds)}
    result["false_positives"] = false_positives(args.fp, args.workers)
    print(json.dumps(result["false_positives"]))
    args.out.write_text(json.dumps(result, indent=1))
    plot(result["robustness"], args.out.with_suffix(".png"))


def plot(robust: dict, path: Path) -> None:  # type: ignore[type-arg]
    """Detection rate and bit accuracy per edit and size, with the SDXL-setting baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edits = list(EDITS)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    width = 0.8 / (len(robust) + 1)
    for k, (size, res) in enumerate(robust.items()):
        x = np.arange(len(edits)) + k * width
        det = [res["edits"][e]["detected"] for e in edits]
        bits = [res["edits"][e]["bits"] for e in edits]
        axes[0].bar(x, [d[0] for d in det], width, label=f"{size} px")
        axes[1].bar(x, [b[0] for b in bits], width, yerr=[b[1] for b in bits], label=f"{size} px")
    base = [np.mean([r["edits"][e]["baseline_bits"][0] for r in robust.values()]) for e in edits]
    axes[1].bar(np.arange(len(edits)) + len(robust) * width, base, width, color="grey",
                label="baseline: dwtDct, SDXL settings")  # fmt: skip
    for ax, title in zip(axes, ("identify: right run found", "payload bit accuracy"), strict=True):
        ax.set_xticks(np.arange(len(edits)) + width * len(robust) / 2, edits, rotation=35,
                      ha="right")  # fmt: skip
        ax.set_title(title)
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
    axes[0].legend()
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


_FASHION: np.ndarray = np.zeros((0, 28, 28), np.uint8)
_PHOTOS: list[np.ndarray] = []

if __name__ == "__main__":
    main()
