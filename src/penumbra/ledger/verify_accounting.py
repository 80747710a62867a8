"""`penumbra verify`, the accounting: ε recomputed from the logged σ, releases and δ with the
run's own accountant, against every claim (run_start's plan, each release's cumulative ε,
run_end's total), and every release's parameters against run_start's.

Labelled runs are accounted per class (penumbra.ledger.verify_classes); multi-holder runs
count the rounds that spent ε without a release (penumbra.ledger.verify_mpc).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from penumbra.ledger.verify_classes import check_class_accounting, check_unlabelled, is_labelled
from penumbra.ledger.verify_mpc import spent_aborts
from penumbra.ledger.verify_report import VerifyReport, check_noise_seed, entry_label
from penumbra.ledger.verify_tree import check_release_votes
from penumbra.privacy import discrete_gaussian_epsilon, gaussian_epsilon
from penumbra.privacy.discrete import ACCOUNTANT as DISCRETE_ACCOUNTANT

REL_TOL = 1e-9


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def run_accountant(
    entries: list[dict[str, Any] | None],
) -> tuple[Callable[[float, int, float], float], str]:
    """The ε accountant of the run, as ε(σ in histogram units, releases, δ): for multi-holder
    runs whose aggregators add discrete Gaussian noise (an `mpc_setup` entry says so) zCDP; for
    runs that release integer votes with exact discrete Gaussian noise (run_start says
    `discrete-gaussian-pld`) that noise's exact privacy loss distribution with the logged k;
    for runs logged before either existed, the continuous Gaussian's GDP curve."""
    for e in entries:
        if e and e.get("type") == "mpc_setup" and e.get("accountant") == "discrete-gaussian-zcdp":
            from penumbra.privacy.zcdp import dgauss_epsilon

            return dgauss_epsilon, "discrete-gaussian-zcdp"
    start = next((e for e in entries if e and e.get("type") == "run_start"), None) or {}
    if start.get("accountant") == DISCRETE_ACCOUNTANT:
        k = start.get("k", 1)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            k = 1  # reported as a failure by _check_accounting

        def discrete(sigma: float, steps: int, delta: float) -> float:
            return discrete_gaussian_epsilon(sigma, steps, delta, k)

        return discrete, DISCRETE_ACCOUNTANT
    return gaussian_epsilon, "gaussian-gdp"


def check_accounting(entries: list[dict[str, Any] | None], report: VerifyReport) -> None:
    starts = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_start"]
    if not starts:
        report.fail("log", "no run_start entry")
        return
    if starts[0][0] != 0 or len(starts) > 1:
        report.fail(entry_label(starts[0][0], starts[0][1]), "run_start must be entry 0, once")
    start = starts[0][1]
    epsilon_of, accountant = run_accountant(entries)
    if start.get("accountant") not in (None, DISCRETE_ACCOUNTANT, "discrete-gaussian-zcdp"):
        report.fail(entry_label(0, start), f"unknown accountant {start.get('accountant')!r}")
    elif start.get("accountant") == "discrete-gaussian-zcdp" and accountant != start["accountant"]:
        report.fail(entry_label(0, start), "claims the zCDP accountant without an mpc_setup")
    k = start.get("k", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        report.fail(entry_label(0, start), f"k={k!r} is not an integer >= 1")
    sigma, delta, iterations = start["sigma"], start["delta"], start["iterations"]
    n_private, target = start["n_private"], start["epsilon_target"]
    n_bound = n_private if n_private is not None else start.get("public_n")  # ≥ N when public
    if not isinstance(n_bound, int) or n_bound < 1:
        report.fail(entry_label(0, start), "neither n_private nor public_n is a count")
    elif delta >= 1.0 / n_bound:
        report.fail(entry_label(0, start), f"δ={delta:g} is not below 1/N = {1 / n_bound:g}")
    check_noise_seed(0, start, report)
    if is_labelled(start):
        per_iteration, spent, count = check_class_accounting(entries, start, report)
    else:
        check_unlabelled(entries, report)
        per_iteration, spent, count = _check_releases(entries, start, epsilon_of, report)
    _check_run_end(entries, count, spent, report)
    report.receipt.update(
        {
            "penumbra_version": start.get("penumbra_version"),
            "config_sha256": start.get("config_sha256"),
            "models": start.get("models"),
            "n_private": n_private,
            "public_n": start.get("public_n"),
            "epsilon_target": target,
            "delta": delta,
            "sigma": sigma,
            "iterations": iterations,
            "fixed_noise_seed": start.get("fixed_noise_seed"),
            "accountant": accountant,
            "epsilon_per_iteration": per_iteration,
            "epsilon_spent": spent if is_labelled(start) else (per_iteration or [0.0])[-1],
        }
    )


def _check_releases(
    entries: list[dict[str, Any] | None],
    start: dict[str, Any],
    epsilon_of: Callable[[float, int, float], float],
    report: VerifyReport,
) -> tuple[list[float], float, int]:
    """An unlabelled run's releases: iterations 0..T-1, each claim recomputed. Returns ε after
    each release, ε spent (aborted multi-holder rounds included) and the releases logged."""
    sigma, delta, iterations = start["sigma"], start["delta"], start["iterations"]
    target = start["epsilon_target"]
    planned = epsilon_of(sigma, iterations, delta)
    if planned > target * (1 + REL_TOL):
        report.fail(
            entry_label(0, start),
            f"σ={sigma:g} over {iterations} iterations gives ε={planned:.6g} > target {target:g}",
        )
    per_iteration = []
    releases = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "release"]
    integer = run_accountant(entries)[1] == DISCRETE_ACCOUNTANT
    for t, (i, e) in enumerate(releases):
        label = entry_label(i, e)
        if e["iteration"] != t:
            report.fail(label, f"expected iteration {t}")
        if not (_close(e["sigma"], sigma) and _close(e["delta"], delta)):
            report.fail(label, "σ or δ differs from run_start")
        check_noise_seed(i, e, report)
        check_release_votes(i, e, start.get("k", 1), report, integer=integer)
        steps = t + 1 + spent_aborts(entries, before=i)  # aborts after shares were out
        recomputed = epsilon_of(sigma, steps, delta)
        if not _close(e["cumulative_epsilon"], recomputed):
            report.fail(
                label,
                f"claims cumulative ε={e['cumulative_epsilon']:.6g}, recomputed "
                f"ε={recomputed:.6g} from σ={sigma:g}, {steps} releases, δ={delta:g}",
            )
        if recomputed > target * (1 + REL_TOL):
            report.fail(label, f"spends ε={recomputed:.6g} > target {target:g}")
        per_iteration.append(recomputed)
    if len(releases) > iterations:
        report.fail("log", f"{len(releases)} releases logged, run_start planned {iterations}")
    steps = len(releases) + spent_aborts(entries)
    return per_iteration, epsilon_of(sigma, steps, delta) if steps else 0.0, len(releases)


def _check_run_end(
    entries: list[dict[str, Any] | None], releases: int, spent: float, report: VerifyReport
) -> None:
    ends = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "run_end"]
    if not ends:
        report.fail("log", "no run_end entry: the run did not finish (or the log was truncated)")
        return
    i, end = ends[-1]
    if end["releases"] != releases:
        report.fail(
            entry_label(i, end),
            f"claims {end['releases']} releases, the log has {releases}",
        )
    if not _close(end["epsilon_spent"], spent):
        report.fail(
            entry_label(i, end),
            f"claims ε spent = {end['epsilon_spent']:.6g}, recomputed {spent:.6g}",
        )
    after = [e.get("type") if e else None for e in entries[i + 1 :]]
    if any(kind != "files" for kind in after):
        report.fail(entry_label(i, end), "run_end is followed by entries other than files")
