"""The coordinator (model owner): runs PE, publishes candidates, unshards noisy aggregates.

It plugs into `synthesize` as its `ExternalVoting`: the PE loop is unchanged, and its voter is
`MPCVoter`, which per iteration runs a round (penumbra.mpc.rounds: open it at both
aggregators, announce the candidates' embeddings to the holders, wait for every holder or the
deadline, have the leader verify and commit) and adds the two noisy aggregate shares. It
never receives a vote vector or
an input share. An aggregator failure before the round is committed aborts it with nothing
released — no ε — and the round is retried as a new round once both aggregators answer again;
after the commit the coordinator only ever completes that same round (`MPCVoter.__call__` says
how, and when it stops instead). Each finished round is written durably (and logged) before the
engine uses it, so a restarted coordinator reuses it instead of drawing new noise. Every
ledger checkpoint is co-signed by both aggregators (penumbra.mpc.cosigned_ledger).

The deployment's terms are not the coordinator's to choose: the run's pe.k and pe.metric must
be the deployment's, its δ at most 1/(N ln N) and its population within the candidate limit
(checked here first; the aggregators and holders refuse anything else themselves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from penumbra.durable import atomic_write_bytes
from penumbra.errors import PenumbraError
from penumbra.ledger.log import Ledger, canonical
from penumbra.mpc.cosigned_ledger import CoSignedLedger
from penumbra.mpc.deploy import AGGREGATORS, PartyConfig
from penumbra.mpc.policy import deployment_delta
from penumbra.mpc.protocol import Announcement
from penumbra.mpc.rounds import (
    Aggregators,
    Board,
    CommittedRound,
    RoundAborted,
    RoundResult,
    board_app,
    collect_shares,
    run_round,
)
from penumbra.mpc.tls import BackgroundServer, server_config
from penumbra.pe.evolve import EvolveSettings
from penumbra.privacy.zcdp import ACCOUNTANT, dgauss_epsilon, dgauss_sigma, total_sigma

__all__ = [  # the round machinery is penumbra.mpc.rounds; these names stay importable here
    "Aggregators",
    "Board",
    "CoSignedLedger",
    "CommittedRound",
    "MPCVoter",
    "MPCVoting",
    "RoundAborted",
    "RoundResult",
    "collect_shares",
    "coordinate",
    "run_round",
]

log = logging.getLogger("penumbra.mpc.coordinator")


class MPCVoting:
    """`ExternalVoting` for `synthesize`: secure aggregation over the deployment's holders."""

    def __init__(
        self,
        config: PartyConfig,
        *,
        embedder: str,
        embedder_options: dict[str, Any] | None = None,
        k: int | None = None,
        metric: str | None = None,
        allow_noiseless: bool = False,
    ) -> None:
        """`k` and `metric` (the run's pe.k and pe.metric) must be the deployment's; None
        takes the deployment's. `allow_noiseless` is for tests of test-only noiseless
        aggregators, never a run."""
        for name, asked, fixed in (("k", k, config.k), ("metric", metric, config.metric)):
            if asked is not None and asked != fixed:
                raise PenumbraError(
                    f"pe.{name}={asked!r} but this deployment fixes {name}={fixed!r} (`penumbra "
                    f"mpc init --{name}`); its aggregators and holders refuse any other"
                )
        self.c = config
        self.allow_noiseless = allow_noiseless
        self.n_private = sum(h.declared_count for h in config.holders)
        self.embedder = embedder
        self.embedder_options = dict(embedder_options or {})
        self.k = config.k
        self.metric = config.metric
        self.aggs = Aggregators(config)
        self.board = Board()
        holders = tuple(h.name for h in config.holders)
        self.server = BackgroundServer(
            server_config(
                board_app(self.board, holders),
                host=config.host,
                port=config.port,
                ca=config.path(config.ca),
                cert=config.path(config.cert),
                key=config.path(config.key),
            )
        )

    def start(self) -> None:
        self.server.start()

    def finish(self) -> None:
        """Tell the holders the run is over, give them a moment to see it, stop serving."""
        self.board.set(Announcement(open=False, finished=True))
        time.sleep(max(1.0, 3 * self.c.poll_s))
        self.server.stop()

    def open_ledger(self, out: Path, signing_key: Path | str | None) -> Ledger:
        ledger = CoSignedLedger.open(out, signing_key=signing_key)
        assert isinstance(ledger, CoSignedLedger)
        ledger.cosigners = self.aggs
        vkeys = "".join(f"{self.c.aggregator_vkeys[n]}\n" for n in AGGREGATORS)
        atomic_write_bytes(out / "ledger" / "cosigners", vkeys.encode("utf-8"))
        if ledger.size:  # resumed: make sure the last entries carry co-signed checkpoints
            ledger.checkpoint()
        return ledger

    def noisy_voter(self, settings: EvolveSettings, ledger: Ledger, out: Path) -> MPCVoter:
        delta = deployment_delta(self.c)
        if settings.delta > delta * (1 + 1e-9):
            raise PenumbraError(
                f"privacy.delta={settings.delta:.3g} is above this deployment's δ = 1/(N ln N) "
                f"= {delta:.3g} (N = {self.n_private}); its aggregators refuse it"
            )
        if max(settings.sizes()) > self.c.max_candidates:
            raise PenumbraError(
                f"pe.population={max(settings.sizes())} is above this deployment's "
                f"{self.c.max_candidates} candidates per round (`penumbra mpc init "
                "--max-candidates`); its aggregators and holders refuse it"
            )
        sigma_agg = dgauss_sigma(
            settings.epsilon, settings.delta, settings.iterations, sensitivity=math.sqrt(self.k)
        )
        per_candidate = self.n_private / max(settings.sizes())
        noise = total_sigma(sigma_agg) / math.sqrt(self.k)
        if per_candidate < noise:
            raise PenumbraError(
                f"ε={settings.epsilon:g} is too small for N={self.n_private} across "
                f"{len(self.c.holders)} holders: the two aggregators' noise (σ={noise:.3g} in "
                f"total) exceeds the {per_candidate:.1f} votes a candidate expects; use a larger "
                "--epsilon, fewer candidates (pe.population) or fewer pe.iterations"
            )
        return MPCVoter(self, settings, ledger, out, sigma_agg)


class MPCVoter:
    """The engine's `NoisyVoter`: ε from ONE aggregator's σ (either honest one suffices).

    Every ε this voter computes counts, besides the released rounds, each round logged as
    aborted with `"shares_released": true` (both noisy shares reached the coordinator, so the
    histogram was out even though the engine never used it)."""

    accountant = ACCOUNTANT  # what run_start records and `verify` recomputes ε with

    def __init__(
        self,
        voting: MPCVoting,
        settings: EvolveSettings,
        ledger: Ledger,
        out: Path,
        sigma_agg: float,
    ) -> None:
        self.v = voting
        self.settings = settings
        self.ledger = ledger
        self.folder = out / "mpc"
        self.sigma_agg = sigma_agg
        self.sigma = sigma_agg / math.sqrt(voting.k)  # histogram units (votes / √k)
        self.budget = {
            "epsilon": settings.epsilon,
            "delta": settings.delta,
            "iterations": settings.iterations,
            "k": voting.k,
        }

    def spent_aborts(self) -> int:
        """Rounds logged as aborted after both shares were released: each one is a release."""
        return sum(
            1
            for _, e in self.ledger.find("mpc_round")
            if e.get("outcome") == "aborted" and e.get("shares_released") is True
        )

    def epsilon(self, steps: int, delta: float) -> float:
        """ε of `steps` releases plus every round aborted after its shares were released."""
        total = steps + self.spent_aborts()
        if total == 0:
            return 0.0
        return dgauss_epsilon(self.sigma_agg, total, delta, math.sqrt(self.v.k))

    def _setup(self) -> None:
        if list(self.ledger.find("mpc_setup")):
            return
        c = self.v.c
        self.ledger.append(
            "mpc_setup",
            {
                "accountant": ACCOUNTANT,
                "deployment": c.deployment,
                "protocol": "Prio3BoundedVoteVec",
                "bits": c.bits,
                "k": self.v.k,
                "metric": c.metric,
                "max_candidates": c.max_candidates,
                "sigma_per_aggregator": self.sigma_agg,
                "sigma_total": total_sigma(self.sigma_agg),
                "holders": [h.model_dump() for h in c.holders],
                "aggregator_vkeys": [c.aggregator_vkeys[n] for n in AGGREGATORS],
                "round_deadline_s": c.round_deadline_s,
            },
        )

    def __call__(self, embeddings: np.ndarray, iteration: int) -> np.ndarray:
        """The noisy histogram of `iteration`, from a finished round (reused), a committed
        one (completed), or a new round.

        What happens when a round fails:
        - before both aggregators committed it: nothing was released; it is logged as
          aborted (ε 0) and a new round follows once both aggregators answer.
        - after the commit (mpc/round-TTT.pending.json): the aggregators may release its
          shares, and they release at most one share per (run, iteration), so the
          coordinator never opens another round for this iteration; it completes this one,
          fetching the shares again (an aggregator answers with the share it released, the
          same noise) once both answer. If both aggregators say they lost the round unreleased
          (restarted), a new round follows; if one released its share and the other lost the
          round, the iteration cannot complete and the run stops (PenumbraError).
        - both shares arrived but fail a check (other reports, no noise, too small σ, wrong
          length): the histogram was out, so the round is logged as aborted with
          `"shares_released": true` and its ε, counted as a release in every ε computed
          here, and the run stops (PenumbraError): it cannot be redone, nor used. Resuming
          meets the same shares and stops again without logging them twice.
        """
        self._setup()
        digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype="<f4").tobytes()).hexdigest()
        path = self.folder / f"round-{iteration:03d}.json"
        if path.exists():  # finished before a restart: reuse, never re-noise
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["embeddings_sha256"] != digest:
                raise PenumbraError(f"{path}: saved round does not match iteration {iteration}")
            return np.asarray(saved["noisy"], dtype=np.float64) / math.sqrt(self.v.k)
        pending = self.folder / f"round-{iteration:03d}.pending.json"

        def keep(committed: CommittedRound) -> None:
            committed.embeddings_sha256 = digest
            atomic_write_bytes(pending, committed.model_dump_json().encode("utf-8"))

        attempt = 0
        while True:
            attempt += 1
            try:
                if pending.exists():
                    committed = CommittedRound.model_validate_json(pending.read_bytes())
                    if committed.embeddings_sha256 != digest:
                        raise PenumbraError(
                            f"{pending}: committed round does not match iteration {iteration}"
                        )
                    result = collect_shares(
                        self.v.aggs,
                        committed,
                        sigma=self.sigma_agg,
                        allow_noiseless=self.v.allow_noiseless,
                    )
                else:
                    result = run_round(
                        self.v.aggs,
                        self.v.board,
                        run=self.ledger.origin,
                        iteration=iteration,
                        embeddings=embeddings,
                        budget=self.budget,
                        sigma=self.sigma_agg,
                        embedder=self.v.embedder,
                        embedder_options=self.v.embedder_options,
                        metric=self.v.metric,
                        allow_noiseless=self.v.allow_noiseless,
                        on_committed=keep,
                    )
                break
            except RoundAborted as e:
                log.warning("iteration %d attempt %d aborted: %s", iteration, attempt, e)
                self._log_abort(iteration, attempt, e)
                if e.shares_released:
                    raise PenumbraError(
                        f"iteration {iteration}: round {e.round_id} failed after both "
                        f"aggregators released their shares ({e}); it is logged as spent "
                        "(ε counted). Aggregators release one share per iteration, so this "
                        "run cannot continue: fix the aggregator, then start a new run"
                    ) from None
                if pending.exists() and e.lost:
                    if e.released:
                        raise PenumbraError(
                            f"iteration {iteration}: {', '.join(e.released)} released its "
                            f"share of round {e.round_id} but {', '.join(e.lost)} lost the "
                            "round (restarted before releasing); the iteration cannot "
                            "complete, so this run cannot continue: start a new run"
                        ) from None
                    pending.unlink()  # released by neither: a new round is safe
                if attempt >= 20:
                    raise PenumbraError(
                        f"iteration {iteration}: {attempt} rounds aborted; last: {e}"
                    ) from None
                self._wait_for_aggregators()
        record = {
            "iteration": iteration,
            "attempt": attempt,
            "round_id": result.round_id,
            "outcome": "released",
            "embeddings_sha256": digest,
            "length": len(embeddings),
            "bits": self.v.c.bits,
            "k": self.v.k,
            "sigma_per_aggregator": result.sigma,
            "accepted_ids": sorted(a.report_id for a in result.outcome.accepted),
            "accepted": [a.model_dump() for a in result.outcome.accepted],
            "rejected": _unique([r.model_dump() for r in result.outcome.rejected]),
            "holders_present": result.present,
            "holders_missing": result.missing,
            "noisy": [int(v) for v in result.noisy],
            "cumulative_epsilon": self.epsilon(iteration + 1, self.settings.delta),
        }
        atomic_write_bytes(path, json.dumps(record).encode("utf-8"))  # durable before use
        self.ledger.append(
            "mpc_round",
            {k: v for k, v in record.items() if k != "noisy"}
            | {"noisy_histogram": record["noisy"]},
        )
        pending.unlink(missing_ok=True)
        return result.noisy / math.sqrt(self.v.k)

    def _log_abort(self, iteration: int, attempt: int, e: RoundAborted) -> None:
        """An `mpc_round` entry with `"outcome": "aborted"`. With `"shares_released": true`
        the round spent ε: `epsilon_spent_by_round` is its ε alone, `cumulative_epsilon` the
        run's so far counting it (logged once per round, also across restarts)."""
        entry: dict[str, Any] = {
            "iteration": iteration,
            "attempt": attempt,
            "round_id": e.round_id,
            "outcome": "aborted",
            "reason": str(e),
            "shares_released": e.shares_released,
            "epsilon_spent_by_round": 0.0,
        }
        if e.shares_released:
            logged = any(
                x.get("round_id") == e.round_id and x.get("shares_released") is True
                for _, x in self.ledger.find("mpc_round")
            )
            if logged:
                return
            delta = self.settings.delta
            entry |= {
                "k": self.v.k,
                "sigma_per_aggregator": self.sigma_agg,
                "epsilon_spent_by_round": dgauss_epsilon(
                    self.sigma_agg, 1, delta, math.sqrt(self.v.k)
                ),
                "cumulative_epsilon": dgauss_epsilon(
                    self.sigma_agg, iteration + self.spent_aborts() + 1, delta, math.sqrt(self.v.k)
                ),
            }
        self.ledger.append("mpc_round", entry)

    def _wait_for_aggregators(self, max_wait_s: float = 600.0) -> None:
        deadline = time.monotonic() + max_wait_s
        while not self.v.aggs.healthy():
            if time.monotonic() > deadline:
                raise PenumbraError("an aggregator stayed unreachable; restart it, then resume")
            time.sleep(1.0)


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[bytes] = set()
    out = []
    for row in rows:
        key = canonical(row)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def coordinate(
    config_path: Path | str,
    *,
    epsilon: float | None,
    out: Path | str,
    run_config: Any = None,
    overrides: list[str] | None = None,
    console: Any = None,
) -> Any:
    """Run (or resume, when `out` holds one) a multi-holder PE run as the coordinator.

    `run_config` is a RunConfig, a YAML path, or None for the demo's settings."""
    from penumbra.mpc.deploy import load_party_config
    from penumbra.spti.demo import demo_config
    from penumbra.spti.pipeline import resolve_run_config, synthesize

    config = load_party_config(config_path, "coordinator")
    out = Path(out)
    resume = (out / "run.yaml").exists()
    base: Any = run_config
    if not resume and run_config is None:
        if epsilon is None:
            raise PenumbraError("--epsilon is required for a new run")
        base = demo_config(epsilon)
    # The run's final config (overrides applied): its k, metric and δ must be the deployment's.
    cfg = resolve_run_config(
        out,
        config=None if resume else base,
        epsilon=None if resume else epsilon,
        delta=None,
        overrides=[] if resume else (overrides or []),
        resume=resume,
    )
    if cfg.modality != "image" or cfg.voting != "image":
        raise PenumbraError("penumbra mpc supports modality=image with voting=image only")
    voting = MPCVoting(
        config,
        embedder=cfg.models.image_embedder,
        embedder_options=cfg.models.options.get(cfg.models.image_embedder, {}),
        k=cfg.pe.k,
        metric=cfg.pe.metric,
    )
    voting.start()
    try:
        return synthesize(
            None,
            None,
            out=out,
            config=None if resume else cfg,
            overrides=[],
            resume=resume,
            console=console,
            external=voting,
        )
    finally:
        voting.finish()
