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
from penumbra.ledger.tree import PublishedTree
from penumbra.models.fingerprint import file_sha256
from penumbra.pe.release import Release
from penumbra.privacy.discrete import ACCOUNTANT

NEIGHBOURING_PUBLIC_N = "add/remove one image; the number of images is published"
NEIGHBOURING_BOUNDED = (
    "add/remove one image; the number of images is not published, only a public bound on it"
)

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
    k: int = 1,
    accountant: str = ACCOUNTANT,
    public_n: int | None = None,
    remote_private: Sequence[str] = (),
    classes: Sequence[str] | None = None,
    class_fractions: dict[str, float] | None = None,
    final: str = "draws",
) -> int:
    """The run's public parameters. With `public_n` the exact N is left out (only the bound is
    public); `remote_private` names the opted-in endpoints that receive private data.

    A labelled run (`classes`) runs PE once per class, `iterations` releases each, on disjoint
    private subsets (parallel composition); its outputs per class come from the public
    `class_fractions` or, without them, from a DP `class_counts` entry that follows."""
    existing = list(ledger.find("run_start"))
    fields: dict[str, Any] = {
        "penumbra_version": penumbra_version,
        "config_sha256": config_sha256,
        "models": [dict(m) for m in models],
        "n_private": n_private if public_n is None else None,
        "public_n": public_n,
        "neighbouring": NEIGHBOURING_PUBLIC_N if public_n is None else NEIGHBOURING_BOUNDED,
        "accountant": accountant,
        "k": k,
        "remote_private": list(remote_private),
        "epsilon_target": epsilon,
        "delta": delta,
        "sigma": sigma,
        "iterations": iterations,
        "seed_commitment": seed_commitment(seed),
        "fixed_noise_seed": fixed_noise_seed,
    }
    if final != "draws":  # outputs are a final population of variations (`verify` checks it)
        fields["final"] = final
    if classes is not None:
        fields.update(
            {
                "classes": list(classes),
                "class_counts": "public" if class_fractions is not None else "dp",
                "class_fractions": dict(class_fractions) if class_fractions is not None else None,
                "composition": "parallel over classes",
            }
        )
    if existing:  # a resumed run: the parameters must be the ones already logged
        index, entry = existing[0]
        differ = [k for k, v in fields.items() if k != "penumbra_version" and entry.get(k) != v]
        if differ:
            raise LedgerError(
                f"entry {index}: this run was started with other parameters: "
                f"{', '.join(differ)} differ from what it recorded"
            )
        return index
    return ledger.append("run_start", fields)


def record_class_counts(
    ledger: Ledger,
    *,
    noisy_counts: Sequence[int],
    sigma: float,
    k: int,
    delta: float,
    cumulative_epsilon: float,
    fixed_noise_seed: bool,
    accountant: str = ACCOUNTANT,
) -> int:
    """The DP release of the class counts: integer counts plus discrete Gaussian noise at the
    votes' integer scale σ·√k (one more composition for every image). Logged before use."""
    return ledger.append(
        "class_counts",
        {
            "noisy_counts": [int(c) for c in noisy_counts],
            "sigma": sigma,
            "k": k,
            "delta": delta,
            "cumulative_epsilon": cumulative_epsilon,
            "fixed_noise_seed": fixed_noise_seed,
            "accountant": accountant,
        },
    )


def release_fields(release: Release, k: int, label: int | None = None) -> dict[str, Any]:
    labelled = {} if label is None else {"label": label}
    return {
        **labelled,
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
        "accountant": release.accountant,
        "noisy_votes": release.noisy_votes,
    }


class LedgerJournal:
    """The PE engine's `ReleaseJournal`: releases live in the signed ledger, written there
    before the release file, and are rebuilt from it when the file is gone. In a labelled run
    each class has its own journal (`label`): its releases carry the class's label. With
    `tree`, each new release is followed by the run folder's published tree as it is then."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        k: int,
        label: int | None = None,
        tree: PublishedTree | None = None,
    ) -> None:
        self.ledger = ledger
        self.k = k
        self.label = label
        self.tree = tree

    def _releases(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, e) for i, e in self.ledger.find("release") if e.get("label") == self.label]

    def _entry(self, iteration: int) -> tuple[int, dict[str, Any]] | None:
        found = [(i, e) for i, e in self._releases() if e["iteration"] == iteration]
        if len(found) > 1:
            raise LedgerError(f"the ledger holds {len(found)} releases for iteration {iteration}")
        return found[0] if found else None

    def latest(self) -> int:
        return max((e["iteration"] for _, e in self._releases()), default=-1)

    def recorded(self, iteration: int, candidate_ids: Sequence[str]) -> Release | None:
        found = self._entry(iteration)
        if found is None:
            return None
        index, e = found
        position = {cid: i for i, cid in enumerate(candidate_ids)}
        missing = [cid for cid in e["selected_ids"] if cid not in position]
        if missing or len(e["noisy_histogram"]) != len(candidate_ids):
            raise LedgerError(
                f"entry {index}: release {iteration} does not fit population {iteration} "
                "(the run directory was modified)"
            )
        return Release(
            iteration=iteration,
            sigma=e["sigma"],
            threshold=e["threshold"],
            candidate_ids=list(candidate_ids),
            candidate_hash=e["candidate_hash"],
            noisy=list(e["noisy_histogram"]),
            selected=[position[cid] for cid in e["selected_ids"]],
            cumulative_epsilon=e["cumulative_epsilon"],
            delta=e["delta"],
            fixed_noise_seed=e["fixed_noise_seed"],
            k=e.get("k", self.k),
            accountant=e.get("accountant", ACCOUNTANT),
            noisy_votes=e.get("noisy_votes"),
        )

    def record(self, release: Release) -> None:
        fields = release_fields(release, self.k, self.label)
        found = self._entry(release.iteration)
        if found is not None:
            index, entry = found
            if {key: entry.get(key) for key in fields} != fields:
                raise LedgerError(
                    f"entry {index}: release {release.iteration} on disk differs from the "
                    "logged one; the run directory was modified"
                )
            return
        self.ledger.append("release", fields)
        if self.tree is not None:
            where = "" if self.label is None else f"class {self.label} "
            self.tree.record(self.ledger, f"{where}release {release.iteration}")


def release_hook(ledger: Ledger, *, k: int) -> Callable[[Release], None]:
    """An `on_release` callback that logs each release once (prefer `LedgerJournal`, which
    the engine also consults before drawing noise)."""
    return LedgerJournal(ledger, k=k).record


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
