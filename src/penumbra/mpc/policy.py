"""What an honest aggregator decides itself, whatever the coordinator announces (DESIGN.md
invariant 9): a round's k, δ and candidate count, its own σ, and the deployment's budget.

- k (votes per sample: the L2 sensitivity √k and each holder's bounds) is the deployment's,
  from this aggregator's config. A run or round announcing another k is refused.
- δ may not exceed the deployment's δ = 1/(N ln N), N the sum of the holders' declared counts
  (public, in every config). A run asking for a larger δ is refused; a smaller one is used.
- σ is computed here from the run's (ε, δ, T) with sensitivity √k (`own_sigma`); a larger σ
  the coordinator asks for is used, a smaller one never.
- `max_epsilon` (mandatory in an aggregator's config) bounds every release this aggregator
  makes over these holders, whatever the run ids: zCDP ρ adds across rounds and runs, and
  the total is converted to ε at the deployment's δ (`BudgetBook`). A run is admitted when it
  first opens a round only if the ρ of all T releases its σ allows fits, beside every run
  admitted before, within `max_epsilon`; that ρ stays reserved. Each release is booked
  durably, and checked against the cap again, before its share leaves. A refused request
  changes nothing and releases nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from penumbra.durable import atomic_write_bytes
from penumbra.mpc.deploy import PartyConfig
from penumbra.mpc.protocol import RoundParams
from penumbra.privacy.zcdp import dgauss_sigma, zcdp_rho, zcdp_to_epsilon

REL_TOL = 1e-9  # float slack when comparing recomputed privacy parameters with their caps
BOOK_VERSION = 1


class Refused(Exception):
    """A request this aggregator will not serve; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def deployment_n(config: PartyConfig) -> int:
    return sum(h.declared_count for h in config.holders)


def deployment_delta(config: PartyConfig) -> float:
    """δ = 1/(N ln N) with N the sum of the holders' declared counts (DESIGN.md invariant 7)."""
    n = deployment_n(config)
    return 1.0 / (n * math.log(n))


@dataclass(frozen=True)
class RunTerms:
    """The privacy target a coordinator announces for one run (its `budget`)."""

    epsilon: float
    delta: float
    iterations: int
    k: int

    @classmethod
    def parse(cls, budget: dict[str, Any]) -> RunTerms:
        """Refused (400) unless every field is present and well-typed."""
        try:
            epsilon, delta = budget["epsilon"], budget["delta"]
            iterations, k = budget["iterations"], budget["k"]
        except (KeyError, TypeError):
            raise Refused(400, "budget needs epsilon, delta, iterations and k") from None
        for name, value in (("epsilon", epsilon), ("delta", delta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Refused(400, f"budget {name} must be a number, got {value!r}")
        for name, value in (("iterations", iterations), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise Refused(400, f"budget {name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise Refused(400, f"budget epsilon must be finite and > 0, got {epsilon!r}")
        if not 0 < delta < 1:
            raise Refused(400, f"budget delta must be in (0, 1), got {delta!r}")
        return cls(float(epsilon), float(delta), iterations, k)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_round(config: PartyConfig, params: RoundParams, terms: RunTerms) -> None:
    """Refused (403) when the run or round announces other terms than the deployment's."""
    for what, k in (("run", terms.k), ("round", params.k)):
        if k != config.k:
            raise Refused(
                403,
                f"the {what} announces k={k} but this deployment's k is {config.k} (it fixes "
                "the sensitivity √k and the holders' bounds); refused",
            )
    delta = deployment_delta(config)
    if terms.delta > delta * (1 + REL_TOL):
        raise Refused(
            403,
            f"the run announces δ={terms.delta:.3g} but this deployment allows at most "
            f"δ = 1/(N ln N) = {delta:.3g} (N = {deployment_n(config)}); refused",
        )
    if params.length > config.max_candidates:
        raise Refused(
            403,
            f"the round has {params.length} candidates; this deployment allows at most "
            f"{config.max_candidates}; refused",
        )


def own_sigma(config: PartyConfig, terms: RunTerms) -> float:
    """This aggregator's σ for the run: T releases within (ε, δ) at sensitivity √k_own."""
    return dgauss_sigma(terms.epsilon, terms.delta, terms.iterations, math.sqrt(config.k))


class BudgetBook:
    """Every run this aggregator admitted and every share it released over its deployment.

    Kept in one JSON file, rewritten atomically on every change:

        {"version": 1, "max_epsilon": ..., "delta": ..., "k": ...,
         "runs": {RUN: {"terms": {"epsilon", "delta", "iterations", "k"}, "sigma": σ,
                        "rho_reserved": ρ, "released": {ITERATION: {"round_id", "sigma", "rho"}}}},
         "rho_reserved": Σρ, "rho_spent": Σρ, "epsilon_reserved": ε, "epsilon_spent": ε}

    (the totals are derived, for whoever reads the file). Call it under the aggregator's lock.
    """

    def __init__(self, path: Path, *, max_epsilon: float, delta: float, k: int) -> None:
        self.path = path
        self.max_epsilon = max_epsilon
        self.delta = delta
        self.k = k
        self.runs: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != BOOK_VERSION:
                raise ValueError(f"{path}: unknown budget book version {data.get('version')!r}")
            self.runs = data["runs"]
        else:
            self._import_legacy(path.parent / "runs")

    # -- totals -----------------------------------------------------------------------------

    def rho_reserved(self) -> float:
        return sum(float(r["rho_reserved"]) for r in self.runs.values())

    def rho_spent(self) -> float:
        return sum(float(x["rho"]) for r in self.runs.values() for x in r["released"].values())

    def epsilon(self, rho: float) -> float:
        """ε of ρ-zCDP at the deployment's δ (0 for nothing)."""
        return zcdp_to_epsilon(rho, self.delta) if rho > 0 else 0.0

    def _within(self, rho: float) -> bool:
        return self.epsilon(rho) <= self.max_epsilon * (1 + REL_TOL)

    def summary(self) -> dict[str, Any]:
        reserved, spent = self.rho_reserved(), self.rho_spent()
        return {
            "version": BOOK_VERSION,
            "max_epsilon": self.max_epsilon,
            "delta": self.delta,
            "k": self.k,
            "runs": self.runs,
            "rho_reserved": reserved,
            "rho_spent": spent,
            "epsilon_reserved": self.epsilon(reserved),
            "epsilon_spent": self.epsilon(spent),
        }

    def _save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.summary(), indent=1).encode("utf-8"))

    # -- decisions --------------------------------------------------------------------------

    def check_iteration(self, run: str, iteration: int, terms: RunTerms) -> None:
        """Refused (409) for an iteration already released or beyond the run's T."""
        released = self.runs[run]["released"] if run in self.runs else {}
        if str(iteration) in released:
            raise Refused(409, f"iteration {iteration} of {run} was released")
        if iteration >= terms.iterations or len(released) >= terms.iterations:
            raise Refused(409, f"run {run} has no budget left for another release")

    def admit(self, run: str, terms: RunTerms, sigma: float) -> None:
        """A known run must keep its terms; a new one reserves the ρ of its T releases at σ,
        Refused (403) when that would take the deployment beyond `max_epsilon`."""
        known = self.runs.get(run)
        if known is not None:
            if known["terms"] != terms.as_dict():
                raise Refused(409, f"run {run} was started with another budget")
            return
        rho = zcdp_rho(sigma, terms.iterations, math.sqrt(self.k))
        total = self.rho_reserved() + rho
        if not self._within(total):
            raise Refused(
                403,
                f"deployment budget: runs already admitted reserve ε="
                f"{self.epsilon(self.rho_reserved()):.4g}; with run {run} (ε={terms.epsilon:g} "
                f"over {terms.iterations} releases) it would be ε={self.epsilon(total):.4g} > "
                f"max_epsilon {self.max_epsilon:g} at δ={self.delta:.3g}; refused",
            )
        self.runs[run] = {
            "terms": terms.as_dict(),
            "sigma": sigma,
            "rho_reserved": rho,
            "released": {},
        }
        self._save()

    def booked(self, round_id: str) -> bool:
        """Whether a release of this round was ever booked."""
        return any(
            x["round_id"] == round_id for r in self.runs.values() for x in r["released"].values()
        )

    def charge(self, run: str, iteration: int, round_id: str, sigma: float) -> None:
        """Book one release at σ, durably, before its share leaves; Refused if the iteration
        was released already or the deployment's spent ρ would pass `max_epsilon`."""
        record = self.runs.get(run)
        if record is None:
            raise Refused(409, f"run {run} was never admitted here")
        if str(iteration) in record["released"]:
            raise Refused(409, "this iteration was already released")
        rho = zcdp_rho(sigma, 1, math.sqrt(self.k))
        if not self._within(self.rho_spent() + rho):
            raise Refused(403, f"deployment budget: releasing {round_id} would pass max_epsilon")
        record["released"][str(iteration)] = {"round_id": round_id, "sigma": sigma, "rho": rho}
        self._save()

    def _import_legacy(self, folder: Path) -> None:
        """Runs recorded by an older aggregator (state/runs/*.json, without a book) are charged
        in full, never forgotten: an upgrade must not hand out a fresh budget."""
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        for path in files:
            old = json.loads(path.read_text(encoding="utf-8"))
            terms = RunTerms.parse(old["budget"])
            sigma = dgauss_sigma(terms.epsilon, terms.delta, terms.iterations, math.sqrt(terms.k))
            rho = zcdp_rho(sigma, terms.iterations, math.sqrt(terms.k))
            self.runs[path.stem] = {
                "terms": terms.as_dict(),
                "sigma": sigma,
                "rho_reserved": rho,
                "released": {
                    str(t): {"round_id": rid, "sigma": sigma, "rho": rho / terms.iterations}
                    for t, rid in old.get("released", {}).items()
                },
            }
        if files:
            self._save()
