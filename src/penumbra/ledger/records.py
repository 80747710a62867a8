"""What a run logs, and nothing more: public parameters, DP releases, lineage, file hashes.

Never private captions, private embeddings or anything derived from private data without
noise (DESIGN.md invariants 1-2): every field here is a parameter, a model identity, a hash of
public material, or a noisy (DP) histogram.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from penumbra.ledger.log import Ledger, LedgerError
from penumbra.models.fingerprint import file_sha256
from penumbra.pe.evolve import Release

CHUNK = 500  # outputs per log entry


def seed_commitment(seed: int | None) -> str | None:
    """Commits to the public generation seed without printing it in the log."""
    if seed is None:
        return None
    return hashlib.sha256(f"penumbra-seed-v1:{seed}".encode()).hexdigest()


def record_run_start(
    ledger: Ledger,
    *,
    penumbra_version: str,
    config_sha256: str,
    models: Sequence[dict[str, str]],
    n_private: int,
    epsilon: float,
    delta: float,
    sigma: float,
    iterations: int,
    seed: int | None,
    fixed_noise_seed: bool,
) -> int:
    existing = list(ledger.find("run_start"))
    fields: dict[str, Any] = {
        "penumbra_version": penumbra_version,
        "config_sha256": config_sha256,
        "models": [dict(m) for m in models],
        "n_private": n_private,
        "epsilon_target": epsilon,
        "delta": delta,
        "sigma": sigma,
        "iterations": iterations,
        "seed_commitment": seed_commitment(seed),
        "fixed_noise_seed": fixed_noise_seed,
    }
    if existing:  # a resumed run: the parameters must be the ones already logged
        index, entry = existing[0]
        if {k: entry.get(k) for k in fields if k != "penumbra_version"} != {
            k: v for k, v in fields.items() if k != "penumbra_version"
        }:
            raise LedgerError(f"entry {index}: this run was started with other parameters")
        return index
    return ledger.append("run_start", fields)


def release_fields(release: Release, k: int) -> dict[str, Any]:
    return {
        "iteration": release.iteration,
        "candidate_hash": release.candidate_hash,
        "k": k,
        "threshold": release.threshold,
        "sigma": release.sigma,
        "noisy_histogram": release.noisy,
        "selected_ids": [release.candidate_ids[i] for i in release.selected],
        "cumulative_epsilon": release.cumulative_epsilon,
        "delta": release.delta,
        "fixed_noise_seed": release.fixed_noise_seed,
    }


def release_hook(ledger: Ledger, *, k: int) -> Callable[[Release], None]:
    """The PE loop's `on_release`: log each release once; a resumed run's reused releases
    must match what was logged."""

    def hook(release: Release) -> None:
        fields = release_fields(release, k)
        for index, entry in ledger.find("release"):
            if entry["iteration"] == release.iteration:
                if {key: entry.get(key) for key in fields} != fields:
                    raise LedgerError(
                        f"entry {index}: release {release.iteration} on disk differs from the "
                        "logged one; the run directory was modified"
                    )
                return
        ledger.append("release", fields)

    return hook


def record_outputs(ledger: Ledger, run_dir: Path, outputs: Sequence[dict[str, Any]]) -> None:
    """Log every output file's SHA-256 with its lineage (candidate id → parents → iteration).

    `outputs` rows: {"file": path relative to run_dir, "candidate_id", "iteration", "lineage"}
    (lineage optional, e.g. for metadata.jsonl)."""
    rows = []
    for row in outputs:
        path = run_dir / row["file"]
        rows.append({**row, "sha256": file_sha256(path)})
    for start in range(0, len(rows), CHUNK):
        ledger.append("outputs", {"files": rows[start : start + CHUNK]})


def record_run_end(
    ledger: Ledger, *, epsilon_spent: float, delta: float, releases: int, num_outputs: int
) -> int:
    return ledger.append(
        "run_end",
        {
            "epsilon_spent": epsilon_spent,
            "delta": delta,
            "releases": releases,
            "num_outputs": num_outputs,
        },
    )
