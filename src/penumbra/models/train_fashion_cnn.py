"""Train builtin:fashion-cnn: `python -m penumbra.models.train_fashion_cnn [--epochs E]`.

Public data only: the Fashion-MNIST train split (Debian's dataset-fashion-mnist) and renders
of public captions (`data.fashion.make_caption`, every class alike) by builtin:fashion-t2i.
The last 5000 train images and a second set of renders (another seed) are held out to report
how well the classes separate in each domain; the test split is measured once at the end
(the demo's private set is drawn from it; nothing from it is used to choose anything).
Seeded: data order, captions, render seeds and augmentation come from `--seed`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from penumbra.data.fashion import load_fashion_mnist, make_caption
from penumbra.models.fashion_cnn import FRAME, VERSION, WEIGHTS_DIR, WIDTHS, FashionCNN

VALIDATION = 5000


def render_set(per_class: int, seed: int, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [10·per_class, 28, 28] renders of public captions and their classes."""
    from penumbra.models import load

    generator = load("builtin:fashion-t2i", image_size=FRAME)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    captions = [
        make_caption(int(c), tuple(int(v) for v in rng.integers(-1, 2, size=3)), rng)  # type: ignore[arg-type]
        for c in labels
    ]
    task = progress.add_task(
        f"rendering {len(captions)} captions (seed {seed})", total=len(captions)
    )
    images = []
    batch = 64
    for start in range(0, len(captions), batch):
        out = generator.generate(captions[start : start + batch], seed=seed * 100_003 + start)  # type: ignore[attr-defined]
        images += [np.asarray(im.convert("L"), dtype=np.uint8) for im in out]
        progress.update(task, advance=len(out))
    return np.stack(images), labels


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by up to 2 pixels each way (black fill). No flips: Fashion-MNIST's
    shoes all point left, and so do the renders."""
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    shift = torch.randint(0, 25, (len(x),), generator=generator)
    out = torch.empty_like(x)
    for s in shift.unique().tolist():
        rows = shift == s
        dy, dx = divmod(s, 5)
        out[rows] = padded[rows, :, dy : dy + FRAME, dx : dx + FRAME]
    return out


def accuracy(net: FashionCNN, x: np.ndarray, y: np.ndarray) -> float:
    net.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), 1000):
            xb = torch.from_numpy(x[start : start + 1000].astype(np.float32) / 255.0).unsqueeze(1)
            correct += int((net(xb).argmax(1).numpy() == y[start : start + 1000]).sum())
    return correct / len(x)


def train(out: Path, *, epochs: int, renders_per_class: int, seed: int) -> dict[str, object]:
    torch.manual_seed(seed)
    started = time.time()
    x, y = load_fashion_mnist("train")
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns) as progress:
        rx, ry = render_set(renders_per_class, seed, progress)
        vrx, vry = render_set(max(renders_per_class // 5, 20), seed + 1, progress)
        real_x, real_y = x[:-VALIDATION], y[:-VALIDATION].astype(np.int64)
        val_x, val_y = x[-VALIDATION:], y[-VALIDATION:].astype(np.int64)
        train_x = np.concatenate([real_x, rx])
        train_y = np.concatenate([real_y, ry]).astype(np.int64)
        xt = torch.from_numpy(train_x.astype(np.float32) / 255.0).unsqueeze(1)
        yt = torch.from_numpy(train_y)
        net = FashionCNN()
        steps_per_epoch = (len(xt) + 127) // 128
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch
        )
        gen = torch.Generator().manual_seed(seed)
        task = progress.add_task("training", total=epochs * steps_per_epoch)
        curve = []
        for epoch in range(epochs):
            net.train()
            total = 0.0
            for idx in torch.randperm(len(xt), generator=gen).split(128):
                loss = torch.nn.functional.cross_entropy(net(augment(xt[idx], gen)), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                progress.update(task, advance=1)
            curve.append(
                {"epoch": epoch + 1, "loss": total / len(xt),
                 "val_real": accuracy(net, val_x, val_y), "val_renders": accuracy(net, vrx, vry)}
            )  # fmt: skip
            progress.console.print(curve[-1])
    test_x, test_y = load_fashion_mnist("test")
    metrics: dict[str, object] = {
        "version": VERSION,
        "widths": list(WIDTHS),
        "seed": seed,
        "epochs": epochs,
        "train_real": len(real_x),
        "train_renders": len(rx),
        "validation_real_accuracy": curve[-1]["val_real"],
        "validation_renders_accuracy": curve[-1]["val_renders"],
        "test_real_accuracy": accuracy(net, test_x, test_y.astype(np.int64)),
        "curve": curve,
        "minutes": (time.time() - started) / 60,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }
    save(net, out, metrics)
    return metrics


def save(net: FashionCNN, out: Path, metrics: dict[str, object]) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / "fashion_cnn.safetensors"))
    (out / "fashion_cnn.metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--renders-per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    metrics = train(args.out, epochs=args.epochs, renders_per_class=args.renders_per_class,
                    seed=args.seed)  # fmt: skip
    Console().print_json(json.dumps({k: v for k, v in metrics.items() if k != "curve"}))


if __name__ == "__main__":
    main()
