"""Train builtin:fashion-t2i: `python -m penumbra.models.train_fashion_t2i [--minutes M]`.

Seeded and reproducible on one machine: data order, caption draws, CFG dropout, noise and
timesteps all come from the seed. Writes EMA weights (fp16 safetensors), the architecture
config and a metrics file into --out (default: the package's weights folder).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from penumbra.data.fashion import attributes, class_thresholds, load_fashion_mnist, make_caption
from penumbra.models.fashion_t2i import FRAME, NATIVE, VERSION, WEIGHTS_DIR, FlowUNet

CAPTIONS_PER_IMAGE = 4
# chosen by bench/fashion_t2i.py --oracle (bench/RESULTS.md): guidance 2 over 3 and 1.5
DEFAULT_SAMPLER = {"steps": 12, "guidance": 2.0}


def caption_table(
    images: np.ndarray, labels: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """[n, CAPTIONS_PER_IMAGE] indices into the unique captions, their embeddings, and texts."""
    from penumbra.models import load

    cuts = class_thresholds(images, labels)
    attrs = attributes(images, labels, cuts)
    rng = np.random.default_rng(seed)
    index: dict[str, int] = {}
    table = np.zeros((len(images), CAPTIONS_PER_IMAGE), dtype=np.int64)
    for i in range(len(images)):
        levels = (
            int(attrs.intensity_level[i]), int(attrs.area_level[i]), int(attrs.texture_level[i])
        )  # fmt: skip
        for j in range(CAPTIONS_PER_IMAGE):
            text = make_caption(int(labels[i]), levels, rng)
            table[i, j] = index.setdefault(text, len(index))
    texts = list(index)
    embedder = load("builtin:minilm-l6", batch_size=256)
    embeddings = embedder.embed(texts)  # type: ignore[attr-defined]
    return table, embeddings, texts


def train(
    out: Path,
    *,
    minutes: float,
    max_steps: int,
    batch: int,
    lr: float,
    seed: int,
    base: int,
) -> dict[str, object]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images, labels = load_fashion_mnist("train")
    table, text_emb, texts = caption_table(images, labels, seed)
    pad = (NATIVE - FRAME) // 2
    x_all = torch.from_numpy(
        np.pad(images, ((0, 0), (pad, pad), (pad, pad))).astype(np.float32) / 127.5 - 1.0
    )[:, None]
    emb_all = torch.from_numpy(text_emb)
    model = FlowUNet(base=base)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    start = time.monotonic()
    budget = minutes * 60
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    step = 0
    with Progress(
        TextColumn("training fashion-t2i"), BarColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
    ) as progress:  # fmt: skip
        task = progress.add_task("train", total=budget, info="")
        while step < max_steps and time.monotonic() - start < budget:
            idx = torch.from_numpy(rng.integers(0, len(x_all), batch))
            which = torch.from_numpy(rng.integers(0, CAPTIONS_PER_IMAGE, batch))
            cond = emb_all[torch.from_numpy(table)[idx, which]]
            drop = torch.from_numpy(rng.random(batch) < 0.1)
            cond = torch.where(drop[:, None], model.null_text[None, :].expand(batch, -1), cond)
            x1 = x_all[idx]
            x0 = torch.randn_like(x1)
            t = torch.rand(batch)
            xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * x1
            loss = ((model(xt, t, cond) - (x1 - x0)) ** 2).mean()
            frac = (time.monotonic() - start) / budget
            for group in opt.param_groups:  # warm-up, then cosine to 10%
                group["lr"] = (
                    lr
                    * min(1.0, (step + 1) / 100)
                    * (0.55 + 0.45 * math.cos(math.pi * min(frac, 1.0)))
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            decay = min(0.999, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                curve.append((step, float(np.mean(losses[-50:]))))
            progress.update(
                task, completed=time.monotonic() - start,
                info=f"step {step} loss {np.mean(losses[-50:]):.4f}",
            )  # fmt: skip
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in ema.state_dict().items()}
    save_file(state, str(out / "fashion_t2i.safetensors"))
    config = {**ema.config, "frame": FRAME, "version": VERSION, "sampler": DEFAULT_SAMPLER}
    (out / "fashion_t2i.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics: dict[str, object] = {
        "seed": seed,
        "steps": step,
        "batch": batch,
        "samples_seen": step * batch,
        "epochs": step * batch / len(x_all),
        "minutes": (time.monotonic() - start) / 60,
        "final_loss": float(np.mean(losses[-200:])),
        "loss_curve": curve,
        "unique_captions": len(texts),
        "parameters": sum(p.numel() for p in ema.parameters()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    (out / "fashion_t2i.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--base", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    metrics = train(
        args.out, minutes=args.minutes, max_steps=args.max_steps, batch=args.batch,
        lr=args.lr, seed=args.seed, base=args.base,
    )  # fmt: skip
    summary = {k: v for k, v in metrics.items() if k != "loss_curve"}
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
