"""A toy modality for the PE loop: payloads are 2-D points written as text.

Run as a script it performs one PE run in a folder, optionally killing itself with SIGKILL at a
chosen point (`--kill-at vary:3`, `--kill-at release:1`), for the kill-and-resume test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from penumbra.pe.evolve import EvolveSettings, evolve
from penumbra.pe.release import Release, ReleaseJournal
from penumbra.pe.voting import local_voter

PRIVATE_CENTRE = np.array([5.0, 5.0])


def parse(payloads: list[str]) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in payloads], dtype=np.float32)


def fmt(points: np.ndarray) -> list[str]:
    return [f"{x:.6f},{y:.6f}" for x, y in points]


class Points:
    def __init__(self, kill_at: str | None = None) -> None:
        self.kill_at = kill_at
        self.vary_calls = 0

    def random(self, count: int, *, seed: int) -> list[str]:
        return fmt(np.random.default_rng(seed).uniform(-10, 10, size=(count, 2)))

    def vary(self, payloads: list[str], *, seed: int) -> list[str]:
        self.vary_calls += 1
        if self.kill_at == f"vary:{self.vary_calls}":
            os.kill(os.getpid(), signal.SIGKILL)
        rng = np.random.default_rng(seed)
        return fmt(parse(payloads) + rng.normal(0, 0.7, size=(len(payloads), 2)))


def private_points(n: int = 2000) -> np.ndarray:
    return (PRIVATE_CENTRE + np.random.default_rng(99).normal(0, 1.0, (n, 2))).astype(np.float32)


def settings(**overrides: object) -> EvolveSettings:
    base: dict[str, object] = {
        "epsilon": 4.0,
        "delta": 1e-5,
        "iterations": 5,
        "population": (60,),
        "num_outputs": 40,
        "seed": 1,
        "noise_seed": 123,
    }
    base.update(overrides)
    return EvolveSettings(**base)  # type: ignore[arg-type]


def run(
    folder: Path,
    kill_at: str | None = None,
    journal: ReleaseJournal | None = None,
    **overrides: object,
) -> dict[str, list]:
    api = Points(kill_at)

    def on_release(release: Release) -> None:
        assert (folder / f"release-{release.iteration:03d}.json").exists()
        if kill_at == f"release:{release.iteration}" and not release.reused:
            os.kill(os.getpid(), signal.SIGKILL)

    result = evolve(
        folder,
        random_api=api,
        variation_api=api,
        embed=parse,
        voter=local_voter(private_points()),
        settings=settings(**overrides),
        on_release=on_release,
        journal=journal,
    )
    return result.outputs


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--kill-at")
    args = parser.parse_args()
    outputs = run(args.folder, args.kill_at)
    sys.stdout.write(json.dumps(outputs) + "\n")
