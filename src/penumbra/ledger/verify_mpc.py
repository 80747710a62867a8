"""`penumbra verify`, multi-holder runs: co-signatures and the reconciliation of the secure
aggregation rounds (`mpc_round`) with the DP releases (`release`).

A coordinator could release more noisy histograms than it accounts for, or publish a release
that no round produced. So: every released round's histogram is the release of its iteration
(the engine receives `noisy / √k`, penumbra.mpc.coordinator); each round's σ per aggregator
alone reaches the target ε over the planned iterations (either honest aggregator's noise
suffices, penumbra.privacy.zcdp); at most T rounds spent ε (released, or aborted after the
shares were fetched: `"shares_released": true`); every release has its released round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from penumbra.ledger.log import is_checkpoint_name
from penumbra.ledger.note import NoteError, parse_vkey, verify_signed_note
from penumbra.ledger.verify_report import VerifyReport

Entries = list[dict[str, Any] | None]
REL_TOL = 1e-9


def _norm(vkey: str) -> str:
    return vkey.strip()


def mpc_setup(entries: Entries) -> tuple[int, dict[str, Any]] | None:
    return next(((i, e) for i, e in enumerate(entries) if e and e.get("type") == "mpc_setup"), None)


def check_cosigners(
    folder: Path,
    entries: Entries,
    report: VerifyReport,
    given: Sequence[str] | None,
) -> None:
    """Every checkpoint carries each aggregator's signature. With `given` (keys obtained out of
    band, `--cosigner`), those keys must be the run's aggregators and are the ones checked;
    without, the run's own `mpc_setup` keys are used, which proves integrity only."""
    found = mpc_setup(entries)
    if found is None:
        if given:
            report.fail("log", "--cosigner given but this is not a multi-holder run (no mpc_setup)")
        return
    index, setup = found
    logged = [str(k) for k in setup.get("aggregator_vkeys") or []]
    if not logged:
        report.fail(f"entry {index} (mpc_setup)", "names no aggregator keys")
    keys = logged
    if given:
        keys = [_norm(k) for k in given]
        if {_norm(k) for k in logged} != set(keys):
            report.fail(
                f"entry {index} (mpc_setup)",
                "its aggregator keys are not the co-signer keys given (--cosigner): "
                f"the run names {sorted(_norm(k) for k in logged)}",
            )
    report.cosigners_authenticated = bool(given)
    files = sorted(p for p in (folder / "checkpoints").glob("*") if is_checkpoint_name(p))
    for vkey in keys:
        try:
            verifier = parse_vkey(vkey)
        except NoteError as e:
            report.fail("--cosigner" if given else f"entry {index} (mpc_setup)", f"key: {e}")
            continue
        for path in files:
            try:
                verify_signed_note(path.read_text(encoding="utf-8"), verifier)
            except (NoteError, UnicodeDecodeError) as e:
                report.fail(f"checkpoint {path.name}", f"co-signature of {verifier.name}: {e}")
    report.receipt["cosigners"] = keys
    report.receipt["cosigners_source"] = (
        "given (--cosigner)"
        if given
        else "the run's own mpc_setup: proves integrity, not who co-signed; pass --cosigner"
    )


def _spent_epsilon(entry: dict[str, Any]) -> bool:
    return entry.get("outcome") == "released" or entry.get("shares_released") is True


def spent_aborts(entries: Entries, before: int | None = None) -> int:
    """mpc rounds aborted after both shares were released (each counts as a release in ε),
    among the entries before index `before` (all when None)."""
    return sum(
        1
        for e in entries[:before]
        if e
        and e.get("type") == "mpc_round"
        and e.get("outcome") != "released"
        and e.get("shares_released") is True
    )


def _label(index: int, entry: dict[str, Any]) -> str:
    return f"entry {index} ({entry.get('type')}, iteration {entry.get('iteration')})"


def _sigma_gives(
    epsilon_of: Callable[[float, int, float], float], sigma: Any, steps: int, delta: float
) -> float | None:
    """ε of `steps` releases with σ in histogram units; None if σ is not a positive number."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        return None
    if not math.isfinite(sigma) or sigma <= 0:
        return None
    try:
        return float(epsilon_of(float(sigma), steps, delta))
    except (ValueError, ArithmeticError):
        return None


def check_rounds(
    entries: Entries,
    report: VerifyReport,
    epsilon_of: Callable[[float, int, float], float],
) -> None:
    """Reconcile `mpc_round` entries with `release` entries (see the module docstring)."""
    rounds = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "mpc_round"]
    found = mpc_setup(entries)
    if found is None:
        if rounds:
            report.fail(_label(*rounds[0]), "mpc_round entries but no mpc_setup entry")
        return
    setup_index, setup = found
    start = entries[0] if entries and entries[0] and entries[0].get("type") == "run_start" else None
    if start is None:
        return  # reported by the accounting check
    k = setup.get("k")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        report.fail(f"entry {setup_index} (mpc_setup)", f"k={k!r} is not an integer >= 1")
        return
    root_k = math.sqrt(k)
    target, delta, iterations = start["epsilon_target"], start["delta"], start["iterations"]
    claimed_sigma = start["sigma"]

    def check_sigma(where: str, sigma_agg: Any) -> None:
        numeric = isinstance(sigma_agg, (int, float)) and not isinstance(sigma_agg, bool)
        scaled = sigma_agg / root_k if numeric else None
        eps = _sigma_gives(epsilon_of, scaled, iterations, delta)
        if eps is None:
            report.fail(where, f"σ per aggregator {sigma_agg!r} is not positive: no noise")
        elif eps > target * (1 + REL_TOL):
            report.fail(
                where,
                f"σ per aggregator {sigma_agg:g} gives ε={eps:.6g} over {iterations} rounds "
                f"> target {target:g}: below the σ the accountant requires",
            )
        elif scaled is not None and scaled < claimed_sigma * (1 - REL_TOL):
            report.fail(
                where,
                f"σ per aggregator {sigma_agg:g} is below run_start's σ·√k = "
                f"{claimed_sigma * root_k:g}: the logged ε is understated",
            )

    check_sigma(f"entry {setup_index} (mpc_setup)", setup.get("sigma_per_aggregator"))
    releases = {
        e.get("iteration"): (i, e)
        for i, e in enumerate(entries)
        if e and e.get("type") == "release"
    }
    spending = 0
    matched: set[Any] = set()
    for i, r in rounds:
        where = _label(i, r)
        if not _spent_epsilon(r):
            continue
        spending += 1
        if r.get("outcome") != "released":
            continue  # aborted after the shares were fetched: spent ε, released nothing
        check_sigma(where, r.get("sigma_per_aggregator"))
        if r.get("k") != k:
            report.fail(where, f"k={r.get('k')!r} differs from mpc_setup's k={k}")
        t = r.get("iteration")
        if t not in releases:
            report.fail(where, "a released round with no release entry for its iteration")
            continue
        j, release = releases[t]
        if release.get("k") != k:
            report.fail(_label(j, release), f"k={release.get('k')!r} differs from mpc_setup's")
        if j < i:
            report.fail(where, f"logged after the release it produced (entry {j})")
        got, want = r.get("noisy_histogram"), release.get("noisy_histogram")
        if (
            not isinstance(got, list)
            or not isinstance(want, list)
            or len(got) != len(want)
            or not all(
                isinstance(a, (int, float))
                and isinstance(b, (int, float))
                and math.isclose(a / root_k, b, rel_tol=REL_TOL, abs_tol=1e-9)
                for a, b in zip(got, want, strict=False)
            )
        ):
            report.fail(
                where,
                f"its noisy histogram (÷√k) is not the one released at entry {j}: "
                "the release was not produced by this round",
            )
            continue
        matched.add(t)
    if spending > iterations:
        report.fail(
            "log",
            f"{spending} mpc rounds spent ε (released, or aborted after the shares were "
            f"fetched), run_start planned {iterations}",
        )
    for t, (j, release) in sorted(releases.items(), key=lambda item: item[1][0]):
        if t not in matched and not any(
            e.get("iteration") == t and e.get("outcome") == "released" for _, e in rounds
        ):
            report.fail(_label(j, release), "no released mpc_round produced this release")
    report.receipt["mpc_rounds"] = {
        "logged": len(rounds),
        "spent_epsilon": spending,
        "released": sum(1 for _, e in rounds if e.get("outcome") == "released"),
    }
