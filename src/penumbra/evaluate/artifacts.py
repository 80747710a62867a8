"""Pictures of an evaluation: the closest synthetic/private pairs and the attack's ROC curve.

The pairs picture holds private images, so it is written only where the caller says (inside a
run: the private/ folder, mode 0700) and never embedded in a report.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from penumbra.data.images import read_image
from penumbra.durable import atomic_write_bytes

CELL = 96


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pairs_picture(
    pairs: list[dict[str, Any]], synthetic: Path, members: Path, out: Path, label: str
) -> Path:
    """One row per pair: synthetic image | nearest private image | distance (red if flagged)."""
    rows = max(len(pairs), 1)
    sheet = Image.new("RGB", (2 * CELL + 150, rows * (CELL + 6) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 4), label.replace("—", "-"), fill=(160, 0, 0))  # PIL's default font is ASCII
    for r, pair in enumerate(pairs):
        y = 24 + r * (CELL + 6)
        for c, path in enumerate((synthetic / pair["synthetic_file"],
                                  members / pair["member_file"])):  # fmt: skip
            tile = read_image(path).resize((CELL, CELL), Image.Resampling.NEAREST)
            sheet.paste(tile, (c * (CELL + 4), y))
        colour = (200, 0, 0) if pair["flagged"] else (0, 0, 0)
        text = f"d = {pair['distance']:.3g}\n{'FLAGGED' if pair['flagged'] else ''}"
        draw.text((2 * CELL + 12, y + CELL // 3), text, fill=colour)
    atomic_write_bytes(out, _png(sheet))
    return out


def roc_picture(fpr: np.ndarray, tpr: np.ndarray, auc: float, out: Path) -> Path:
    """The membership-inference ROC on log-scaled FPR, where low-FPR leakage shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=110)
    ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"distance attack (AUC {auc:.3f})")
    grid = np.logspace(-4, 0, 50)
    ax.plot(grid, grid, "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_xlabel("false positive rate (non-members)")
    ax.set_ylabel("true positive rate (members)")
    ax.set_title("Membership inference (not DP)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buffer.getvalue())
    return out
