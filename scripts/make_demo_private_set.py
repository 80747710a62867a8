"""Build src/penumbra/data/assets/demo_private.npz from Debian's dataset-fashion-mnist.

apt-get install dataset-fashion-mnist && .venv/bin/python scripts/make_demo_private_set.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from penumbra.data.demo import build_demo_pool
from penumbra.data.fashion import load_fashion_mnist

ASSETS = Path(__file__).resolve().parents[1] / "src" / "penumbra" / "data" / "assets"


def main() -> None:
    test_x, test_y = load_fashion_mnist("test")
    train_x, train_y = load_fashion_mnist("train")
    pool, darkness = build_demo_pool(test_x, test_y, train_x, train_y, seed=0)
    ASSETS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        ASSETS / "demo_private.npz",
        images=test_x[pool],
        labels=test_y[pool],
        test_index=pool.astype(np.int32),
        darkness=darkness.astype(np.int8),
    )
    licence = Path("/usr/share/doc/dataset-fashion-mnist/copyright")
    notice = ASSETS / "demo_private.LICENSE"
    header = (
        "demo_private.npz holds 5000 images (and labels) of the Fashion-MNIST test split,\n"
        "Copyright (c) 2017 Zalando SE, https://tech.zalando.com, released under the MIT\n"
        "licence, as packaged by Debian (dataset-fashion-mnist). The package's copyright\n"
        "file follows.\n\n"
    )
    notice.write_text(header + licence.read_text())
    target = ASSETS / "demo_private.npz"
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
