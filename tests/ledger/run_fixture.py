"""A complete, small run directory with a ledger: toy PE + synthetic imagefolder outputs."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from penumbra import __version__
from penumbra.data import write_imagefolder
from penumbra.ledger.log import Ledger
from penumbra.ledger.records import (
    record_outputs,
    record_run_end,
    record_run_start,
    release_hook,
)
from penumbra.pe.evolve import evolve, plan_run
from penumbra.pe.voting import local_voter

from ..pe import toy


def build_run(run_dir: Path, *, signing_key: Path | None = None) -> Path:
    settings = toy.settings(iterations=3, num_outputs=6)
    private = toy.private_points()
    ledger = Ledger.open(run_dir, signing_key=signing_key)
    record_run_start(
        ledger,
        penumbra_version=__version__,
        config_sha256="0" * 64,
        models=[{"role": "text-embedder", "uri": "toy:points", "fingerprint": "f" * 64}],
        n_private=len(private),
        epsilon=settings.epsilon,
        delta=settings.delta,
        sigma=plan_run(settings, len(private)).sigma,
        iterations=settings.iterations,
        seed=settings.seed,
        fixed_noise_seed=True,
    )
    api = toy.Points()
    result = evolve(
        run_dir / "pe",
        random_api=api,
        variation_api=api,
        embed=toy.parse,
        voter=local_voter(private),
        settings=settings,
        on_release=release_hook(ledger, k=1),
    )
    points = toy.parse(result.outputs["payload"])
    items = [
        (
            Image.new("RGB", (8, 8), (int(128 + 10 * x) % 256, int(128 + 10 * y) % 256, 0)),
            {"caption": payload, "candidate_id": cid},
        )
        for (x, y), payload, cid in zip(
            points, result.outputs["payload"], result.outputs["id"], strict=True
        )
    ]
    write_imagefolder(run_dir / "synthetic", items)
    rows = [
        {
            "file": f"synthetic/{i:06d}.png",
            "candidate_id": cid,
            "iteration": it,
            "lineage": lineage,
        }
        for i, (cid, it, lineage) in enumerate(
            zip(result.outputs["id"], result.outputs["iteration"], result.outputs["lineage"],
                strict=True)
        )
    ]  # fmt: skip
    rows.append({"file": "synthetic/metadata.jsonl"})
    record_outputs(ledger, run_dir, rows)
    record_run_end(
        ledger,
        epsilon_spent=result.epsilon_spent,
        delta=settings.delta,
        releases=len(result.releases),
        num_outputs=len(items),
    )
    return run_dir
