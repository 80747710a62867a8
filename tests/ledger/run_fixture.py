"""Complete, small run directories with a ledger: toy PE + synthetic outputs.

`build_run`: one holder, imagefolder outputs (or, `texts=True`, a texts.jsonl as text runs
write). `build_mpc_run`: a multi-holder run as the coordinator logs it (`mpc_setup`, one
`mpc_round` per iteration with its integer noisy histogram, an aborted round that spent nothing,
every checkpoint co-signed by both aggregators), with the secure aggregation replaced by the
toy votes plus rounded Gaussian noise. `build_labelled_run`: a class-conditional run as a
labelled run logs it: PE once per class on disjoint private subsets, with the class counts
released first (DP, real CSPRNG noise) or given as public fractions. `resign` rewrites a ledger
and re-signs every checkpoint, as a forger holding (or replacing) the keys would.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from penumbra import __version__
from penumbra.data import write_imagefolder
from penumbra.ledger.log import KEY_NAME, Ledger
from penumbra.ledger.merkle import leaf_hash, root_from_hashes
from penumbra.ledger.note import (
    Checkpoint,
    Signer,
    generate_signer,
    load_private_key,
    save_private_key,
    sign_checkpoint,
)
from penumbra.ledger.records import (
    LedgerJournal,
    record_class_counts,
    record_outputs,
    record_run_end,
    record_run_start,
    release_hook,
)
from penumbra.ledger.tree import PublishedTree
from penumbra.pe.classes import class_output_counts, class_seed, class_weights
from penumbra.pe.evolve import EvolveSettings, evolve
from penumbra.pe.mechanism import add_discrete_gaussian_noise
from penumbra.pe.plan import plan_run
from penumbra.pe.voting import local_voter
from penumbra.privacy import (
    discrete_gaussian_epsilon,
    discrete_gaussian_sigma,
    sampling_sigma,
    vote_noise_source,
)
from penumbra.privacy.zcdp import ACCOUNTANT, dgauss_epsilon, dgauss_sigma, total_sigma

from ..pe import toy

AGGREGATORS = ("leader", "helper")
CLASSES = ("cats", "dogs", "owls")
CLASS_SIZES = (1100, 600, 300)  # disjoint slices of the toy private points


def _settings(final: str = "draws") -> EvolveSettings:
    return toy.settings(iterations=3, num_outputs=6, noise_seed=None, final=final)


def build_run(
    run_dir: Path, *, signing_key: Path | None = None, texts: bool = False, final: str = "draws"
) -> Path:
    """A finished toy run; `final: variations` makes its outputs a final population."""
    settings = _settings(final)
    private = toy.private_points()
    ledger = Ledger.open(run_dir, signing_key=signing_key)
    _start(ledger, settings, len(private), plan_run(settings, len(private)).sigma, final=final)
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
    _finish(ledger, run_dir, settings, result, texts=texts)
    return run_dir


def _start(
    ledger: Ledger,
    settings: EvolveSettings,
    n_private: int,
    sigma: float,
    **extra: Any,  # k, accountant, classes, final
) -> None:
    record_run_start(
        ledger,
        penumbra_version=__version__,
        config_sha256="0" * 64,
        models=[{"role": "text-embedder", "uri": "toy:points", "fingerprint": "f" * 64}],
        n_private=n_private,
        epsilon=settings.epsilon,
        delta=settings.delta,
        sigma=sigma,
        iterations=settings.iterations,
        seed=settings.seed,
        fixed_noise_seed=False,
        **extra,
    )


def _finish(
    ledger: Ledger, run_dir: Path, settings: EvolveSettings, result: Any, *, texts: bool = False
) -> None:
    outputs = result.outputs
    if texts:  # what spti.pipeline._write_texts writes; the log lists only the file
        (run_dir / "synthetic").mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"text": p, "iteration": it, "candidate_id": cid, "parent_chain": chain})
            for p, it, cid, chain in zip(
                outputs["payload"], outputs["iteration"], outputs["id"], outputs["lineage"],
                strict=True,
            )
        ]  # fmt: skip
        (run_dir / "synthetic" / "texts.jsonl").write_text("\n".join(lines) + "\n")
        rows: list[dict[str, Any]] = [{"file": "synthetic/texts.jsonl"}]
    else:
        points = toy.parse(outputs["payload"])
        items = [
            (
                Image.new("RGB", (8, 8), (int(128 + 10 * x) % 256, int(128 + 10 * y) % 256, 0)),
                {"caption": payload, "candidate_id": cid, "iteration": it, "parent_chain": chain},
            )
            for (x, y), payload, cid, it, chain in zip(
                points, outputs["payload"], outputs["id"], outputs["iteration"],
                outputs["lineage"], strict=True,
            )
        ]  # fmt: skip
        write_imagefolder(run_dir / "synthetic", items)
        rows = [
            {
                "file": f"synthetic/{i:06d}.png",
                "candidate_id": cid,
                "iteration": it,
                "lineage": lineage,
            }
            for i, (cid, it, lineage) in enumerate(
                zip(outputs["id"], outputs["iteration"], outputs["lineage"], strict=True)
            )
        ]
        rows.append({"file": "synthetic/metadata.jsonl"})
    record_outputs(ledger, run_dir, rows)
    PublishedTree(run_dir).record(ledger, "outputs")
    record_run_end(
        ledger,
        epsilon_spent=result.epsilon_spent,
        delta=settings.delta,
        releases=len(result.releases),
        num_outputs=len(outputs["payload"]),
    )


def build_labelled_run(
    run_dir: Path,
    *,
    fractions: dict[str, float] | None = None,
    num_outputs: int = 8,
    final: str = "draws",
) -> Path:
    """Three classes of toy points around different centres, 3 releases each. Without
    `fractions` the class counts are a DP release (extra = 1) that allocates the outputs."""
    base = _settings(final)
    extra = 0 if fractions is not None else 1
    points = toy.private_points(sum(CLASS_SIZES))
    bounds = np.cumsum((0, *CLASS_SIZES))
    private = [points[a:b] + 3.0 * c for c, (a, b) in enumerate(itertools.pairwise(bounds))]
    sigma = discrete_gaussian_sigma(base.epsilon, base.delta, base.iterations, base.k, extra=extra)
    ledger = Ledger.open(run_dir)
    _start(ledger, base, len(points), sigma, classes=CLASSES, class_fractions=fractions,
           final=final)  # fmt: skip
    if fractions is None:
        clean = np.asarray(CLASS_SIZES, dtype=np.int64)
        noise = sampling_sigma(sigma, base.k)
        noisy = [
            int(v) for v in add_discrete_gaussian_noise(clean, noise, vote_noise_source(None, 0))
        ]
        record_class_counts(
            ledger,
            noisy_counts=noisy,
            sigma=sigma,
            k=base.k,
            delta=base.delta,
            cumulative_epsilon=discrete_gaussian_epsilon(sigma, 0, base.delta, base.k, extra=1),
            fixed_noise_seed=False,
        )
        weights = class_weights(CLASSES, noisy_counts=noisy)
    else:
        weights = class_weights(CLASSES, fractions=fractions)
    api = toy.Points()
    rows: list[dict[str, Any]] = []
    items = []
    releases, spent = 0, 0.0
    for c, count in enumerate(class_output_counts(weights, num_outputs)):
        settings = replace(
            base, num_outputs=count, seed=class_seed(base.seed, c), id_prefix=f"c{c}/", extra=extra
        )
        result = evolve(
            run_dir / "pe" / f"class-{c}",
            random_api=api,
            variation_api=api,
            embed=toy.parse,
            voter=local_voter(private[c]),
            settings=settings,
            journal=LedgerJournal(ledger, k=base.k, label=c),
        )
        releases += len(result.releases)
        spent = max(spent, result.epsilon_spent)
        out = result.outputs
        for cid, it, lineage, payload in zip(
            out["id"], out["iteration"], out["lineage"], out["payload"], strict=True
        ):
            n = len(rows)
            row = {"caption": payload, "candidate_id": cid, "label": c, "class_name": CLASSES[c],
                   "iteration": it, "parent_chain": lineage}  # fmt: skip
            items.append((Image.new("RGB", (8, 8), (40 * c, n, 0)), row))
            rows.append(
                {
                    "file": f"synthetic/{n:06d}.png",
                    "label": c,
                    "candidate_id": cid,
                    "iteration": it,
                    "lineage": lineage,
                }
            )
    write_imagefolder(run_dir / "synthetic", items)
    record_outputs(ledger, run_dir, [*rows, {"file": "synthetic/metadata.jsonl"}])
    PublishedTree(run_dir).record(ledger, "outputs")
    record_run_end(
        ledger, epsilon_spent=spent, delta=base.delta, releases=releases, num_outputs=len(rows)
    )
    return run_dir


class _CoSignedLedger(Ledger):
    """Every checkpoint also carries each aggregator's signature (as the coordinator's)."""

    cosigners: tuple[Signer, ...] = ()

    def checkpoint(self) -> Path:
        cp = Checkpoint(self.origin, self.size, root_from_hashes(self._hashes))
        path = self.dir / "checkpoints" / f"{self.size:08d}"
        path.write_text(sign_checkpoint(cp, [self.signer, *self.cosigners]))
        return path


class _ToyMPCVoter:
    """The coordinator's MPCVoter with the network replaced: integer votes + rounded noise."""

    accountant = ACCOUNTANT

    def __init__(
        self,
        ledger: Ledger,
        settings: EvolveSettings,
        private: np.ndarray,
        k: int,
        vkeys: list[str],
    ) -> None:
        self.ledger, self.settings, self.k, self.vkeys = ledger, settings, k, vkeys
        self.votes = local_voter(private, k=k)
        self.sigma_agg = dgauss_sigma(
            settings.epsilon, settings.delta, settings.iterations, sensitivity=math.sqrt(k)
        )
        self.sigma = self.sigma_agg / math.sqrt(k)
        self.rng = np.random.default_rng()

    def epsilon(self, steps: int, delta: float) -> float:
        return dgauss_epsilon(self.sigma_agg, steps, delta, math.sqrt(self.k))

    def __call__(self, embeddings: np.ndarray, iteration: int) -> np.ndarray:
        if not list(self.ledger.find("mpc_setup")):
            self.ledger.append(
                "mpc_setup",
                {
                    "accountant": ACCOUNTANT,
                    "deployment": "toy",
                    "protocol": "Prio3L1BoundedSumVec",
                    "bits": 8,
                    "k": self.k,
                    "sigma_per_aggregator": self.sigma_agg,
                    "sigma_total": total_sigma(self.sigma_agg),
                    "holders": [{"name": "holder-1", "declared_count": 2000}],
                    "aggregator_vkeys": self.vkeys,
                    "round_deadline_s": 60,
                },
            )
        attempt = 1
        if iteration == 1:  # an aborted attempt: nothing was released, no ε spent
            self.ledger.append(
                "mpc_round",
                {
                    "iteration": iteration,
                    "attempt": attempt,
                    "outcome": "aborted",
                    "reason": "helper unreachable",
                    "epsilon_spent_by_round": 0.0,
                },
            )
            attempt += 1
        clean = np.rint(self.votes(embeddings) * math.sqrt(self.k))
        noise = np.rint(self.rng.normal(0, total_sigma(self.sigma_agg), size=clean.shape))
        noisy = [int(v) for v in clean + noise]
        digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype="<f4").tobytes())
        self.ledger.append(
            "mpc_round",
            {
                "iteration": iteration,
                "attempt": attempt,
                "round_id": f"round-{iteration}-{attempt}",
                "outcome": "released",
                "embeddings_sha256": digest.hexdigest(),
                "length": len(embeddings),
                "bits": 8,
                "k": self.k,
                "sigma_per_aggregator": self.sigma_agg,
                "accepted_ids": ["r1"],
                "accepted": [{"holder": "holder-1", "report_id": "r1"}],
                "rejected": [],
                "holders_present": ["holder-1"],
                "holders_missing": [],
                "noisy_histogram": noisy,
                "cumulative_epsilon": self.epsilon(iteration + 1, self.settings.delta),
            },
        )
        return np.asarray(noisy, dtype=np.float64) / math.sqrt(self.k)


def aggregator_signers(run_dir: Path) -> list[Signer]:
    """The toy aggregators' signing keys (kept in the run's private/ for the tests only)."""
    return [
        load_private_key(run_dir / "private" / f"{n}.key", f"penumbra-mpc-{n}") for n in AGGREGATORS
    ]


def build_mpc_run(run_dir: Path, *, k: int = 2) -> Path:
    settings = replace(_settings(), k=k)  # the engine writes each release with its k
    private = toy.private_points()
    ledger = _CoSignedLedger.open(run_dir)
    assert isinstance(ledger, _CoSignedLedger)
    for name in AGGREGATORS:
        save_private_key(
            generate_signer(f"penumbra-mpc-{name}"), run_dir / "private" / f"{name}.key"
        )
    ledger.cosigners = tuple(aggregator_signers(run_dir))
    vkeys = [s.vkey for s in ledger.cosigners]
    (run_dir / "ledger" / "cosigners").write_text("".join(v + "\n" for v in vkeys))
    voter = _ToyMPCVoter(ledger, settings, private, k, vkeys)
    _start(ledger, settings, len(private), voter.sigma, k=k, accountant=ACCOUNTANT)
    api = toy.Points()
    result = evolve(
        run_dir / "pe",
        random_api=api,
        variation_api=api,
        embed=toy.parse,
        voter=voter,
        settings=settings,
        journal=LedgerJournal(ledger, k=k),
    )
    _finish(ledger, run_dir, settings, result)
    return run_dir


def run_signer(run_dir: Path) -> Signer:
    return load_private_key(run_dir / "private" / "ledger.key", KEY_NAME)


def read_entries(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "ledger" / "entries.jsonl").read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in lines]


def resign(
    run_dir: Path,
    entries: list[dict[str, Any]],
    *,
    signer: Signer | None = None,
    cosigners: list[Signer] | None = None,
    consistent: bool = True,
) -> None:
    """Write `entries` (renumbered) as the run's log and sign every prefix with `signer`
    (default: the run's own key) and `cosigners` (default: the run's aggregators, if any).
    A new signer's key replaces ledger/pubkey, as a forger would leave it. `consistent`: the
    forger also makes the published files agree with the forged log (release files restate
    their entries; the `files` entries hash what is on disk), so that each test sees only the
    check it is about."""
    from penumbra.ledger.log import canonical

    if consistent:
        sync_published(run_dir, entries)
    signer = signer or run_signer(run_dir)
    if cosigners is None:
        has = (run_dir / "private" / "leader.key").exists()
        cosigners = aggregator_signers(run_dir) if has else []
    lines = [canonical({**e, "index": i}) for i, e in enumerate(entries)]
    folder = run_dir / "ledger"
    (folder / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (folder / "pubkey").write_text(signer.vkey + "\n")
    origin = (folder / "origin").read_text().strip()
    for old in (folder / "checkpoints").iterdir():
        old.unlink()
    hashes = [leaf_hash(line) for line in lines]
    for size in range(1, len(lines) + 1):
        cp = Checkpoint(origin, size, root_from_hashes(hashes[:size]))
        (folder / "checkpoints" / f"{size:08d}").write_text(
            sign_checkpoint(cp, [signer, *cosigners])
        )


def sync_published(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    """What a forger holding the key does besides re-signing: rewrite each release file from
    its (forged) entry, then re-hash every file the `files` entries list (dropping the gone)."""
    import re

    from penumbra.ledger.tree import sha256_file

    releases = {(e.get("label"), e["iteration"]): e for e in entries if e["type"] == "release"}
    for path in sorted(run_dir.rglob("release-*.json")):
        folder = re.fullmatch(r"class-(\d+)", path.parent.name)
        key = (int(folder[1]) if folder else None, int(path.stem.split("-")[1]))
        entry = releases.get(key)
        if entry is None:
            continue
        data = json.loads(path.read_text())
        ids = data["candidate_ids"]
        data.update(
            {
                name: entry.get(name)
                for name in (
                    "candidate_hash",
                    "sigma",
                    "threshold",
                    "cumulative_epsilon",
                    "delta",
                    "fixed_noise_seed",
                    "accountant",
                    "noisy_votes",
                    "k",
                    "iteration",
                )
            }
        )
        data["noisy"] = entry["noisy_histogram"]
        data["selected"] = [ids.index(c) for c in entry["selected_ids"] if c in ids]
        path.write_text(json.dumps(data, sort_keys=True))
    _sync_metadata(run_dir, entries)
    for entry in entries:
        if entry["type"] != "files":
            continue
        kept = []
        for row in entry["files"]:
            path = run_dir / row["file"]
            if path.is_file():
                kept.append({**row, "sha256": sha256_file(path), "size": path.stat().st_size})
        entry["files"] = kept


def _sync_metadata(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    """synthetic/metadata.jsonl rewritten from the (forged) outputs entries, captions taken
    from the populations, and its hash in the outputs entry updated."""
    from penumbra.pe.store import read_population

    meta = run_dir / "synthetic" / "metadata.jsonl"
    outputs = [e for e in entries if e["type"] == "outputs"]
    if not meta.is_file() or not outputs:
        return
    listed = {row["file"]: row for e in outputs for row in e["files"]}
    classes = entries[0].get("classes")
    payloads: dict[str, str] = {}
    for path in run_dir.rglob("population-*.parquet"):
        rows = read_population(path)
        payloads.update(zip(rows["id"], rows["payload"], strict=True))
    lines = []
    for line in meta.read_text().splitlines():
        row = json.loads(line)
        logged = listed.get("synthetic/" + row["file_name"])
        if logged is None:
            continue
        row.update({"candidate_id": logged["candidate_id"], "iteration": logged["iteration"],
                    "parent_chain": logged["lineage"]})  # fmt: skip
        row["caption"] = payloads.get(row["candidate_id"], row.get("caption"))
        if "label" in logged:
            row["label"] = logged["label"]
            row["class_name"] = classes[logged["label"]] if classes else None
        lines.append(json.dumps(row) + "\n")
    meta.write_text("".join(lines))
    for row in listed.values():
        if row["file"] == "synthetic/metadata.jsonl":
            row["sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
