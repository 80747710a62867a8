"""`penumbra verify`, labelled (class-conditional) runs.

A labelled run runs PE once per class on disjoint private subsets, so by parallel composition
its ε is one class's ε, not the sum over the classes. Its run_start names the `classes` (class
index = position) and says where the number of outputs per class comes from: a DP release of
the class counts (`class_counts: "dp"`: one `class_counts` entry before any release, one more
composition at the votes' integer noise σ·√k, so every class's ε counts it: extra = 1) or
public fractions (`class_counts: "public"`, `class_fractions`; extra = 0).

Checks: those run_start fields agree with each other and with the discrete accountant; the DP
class counts are logged exactly once, before any release, with run_start's σ, δ and k, no fixed
noise seed, one count per class and their ε; the planned ε (σ, T releases per class, extra)
stays within the target; every release carries a class label 0..C-1, each class's iterations
are 0..T-1 in log order (classes may interleave), its selected candidates carry its class's id
prefix `c{label}/`, and its cumulative ε is ε(σ, t+1, δ, k, extra); run_end's ε is that of the
class with the most releases. Outputs: every row's label is its candidate's class, the candidate
was selected by the last release *of its class*, and each class has exactly the outputs that
`class_output_counts` gives from the logged noisy counts or fractions (at least one).

Receipt: `classes`, `class_counts`, `class_fractions` or `class_noisy_counts`, `composition`,
`releases_per_class`, `class_output_counts` (outputs found per class). `epsilon_per_iteration`
is per iteration of one class (ε after t+1 releases of a class, the class-count release
included; the same for every class) and `epsilon_spent` is the run's ε, that of the class that
released most; sequential composition over the classes would give more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeGuard

from penumbra.ledger.verify_report import VerifyReport, check_noise_seed, entry_label
from penumbra.ledger.verify_tree import check_release_votes
from penumbra.pe.classes import class_output_counts, class_weights
from penumbra.privacy import discrete_gaussian_epsilon
from penumbra.privacy.discrete import ACCOUNTANT as DISCRETE_ACCOUNTANT

Entries = list[dict[str, Any] | None]
COMPOSITION = "parallel over classes"
REL_TOL = 1e-9
_CLASS_ID = re.compile(r"^c(\d+)/")
_START = "entry 0 (run_start)"


def is_labelled(start: dict[str, Any]) -> bool:
    return "classes" in start


def class_prefix(label: int) -> str:
    """The prefix of class `label`'s candidate ids (EvolveSettings.id_prefix of that class)."""
    return f"c{label}/"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _close(a: Any, b: float) -> bool:
    return _is_number(a) and math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _classes(start: dict[str, Any]) -> list[str] | None:
    names = start.get("classes")
    if not isinstance(names, list) or not names:
        return None
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        return None
    return names


def _extra(start: dict[str, Any]) -> int:
    """Compositions beyond the releases: the DP class-count release (anything but "public")."""
    return 0 if start.get("class_counts") == "public" else 1


def _class_name(classes: list[str], label: int) -> str:
    return f"class {label} ({classes[label]})"


def _counts_entries(entries: Entries) -> list[tuple[int, dict[str, Any]]]:
    return [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "class_counts"]


def _fractions(start: dict[str, Any], classes: list[str]) -> dict[str, float] | None:
    """The public class fractions if they are one number >= 0 per class summing to 1."""
    fractions = start.get("class_fractions")
    if not isinstance(fractions, dict) or set(fractions) != set(classes):
        return None
    values = list(fractions.values())
    if not all(_is_number(v) and math.isfinite(v) and v >= 0 for v in values):
        return None
    if not math.isclose(sum(values), 1.0, rel_tol=0.0, abs_tol=1e-9):
        return None
    return {str(k): float(v) for k, v in fractions.items()}


def _noisy_counts(entries: Entries, classes: list[str]) -> list[int] | None:
    found = _counts_entries(entries)
    counts = found[0][1].get("noisy_counts") if found else None
    if not isinstance(counts, list) or len(counts) != len(classes):
        return None
    return counts if all(_is_int(c) for c in counts) else None


def check_unlabelled(entries: Entries, report: VerifyReport) -> None:
    """A run whose run_start names no classes has no class counts and no labelled release
    (the classes removed from run_start would hide the class-count release's ε)."""
    for i, e in enumerate(entries):
        if not e:
            continue
        if e.get("type") == "class_counts":
            report.fail(entry_label(i, e), "class counts released but run_start names no classes")
        elif e.get("type") == "release" and "label" in e:
            report.fail(entry_label(i, e), "a class label but run_start names no classes")


def _check_start(entries: Entries, start: dict[str, Any], report: VerifyReport) -> None:
    classes = _classes(start)
    if classes is None:
        report.fail(_START, f"classes {start.get('classes')!r} is not a list of distinct names")
    if start.get("composition") != COMPOSITION:
        report.fail(
            _START,
            f"composition is {start.get('composition')!r}, not {COMPOSITION!r}: "
            "a labelled run is accounted as parallel composition over disjoint classes",
        )
    if start.get("accountant") != DISCRETE_ACCOUNTANT or any(
        e and e.get("type") == "mpc_setup" for e in entries
    ):
        report.fail(_START, f"a labelled run is accounted with {DISCRETE_ACCOUNTANT!r} only")
    mode = start.get("class_counts")
    if mode == "public":
        if classes is not None and _fractions(start, classes) is None:
            report.fail(
                _START,
                "class_counts is 'public' but class_fractions is not one fraction >= 0 per "
                f"class summing to 1: {start.get('class_fractions')!r}",
            )
    elif mode == "dp":
        if start.get("class_fractions") is not None:
            report.fail(_START, "class_counts is 'dp' but class_fractions are given too")
    else:
        report.fail(_START, f"class_counts is {mode!r}, not 'dp' or 'public'")


def _check_counts_entry(
    entries: Entries,
    start: dict[str, Any],
    epsilon_of: Callable[[int], float],
    report: VerifyReport,
) -> None:
    found = _counts_entries(entries)
    releases = [i for i, e in enumerate(entries) if e and e.get("type") == "release"]
    if start.get("class_counts") != "dp":
        for i, e in found:
            report.fail(
                entry_label(i, e),
                "class counts released but run_start says the class fractions are public: "
                "a release the accountant does not count",
            )
        return
    if not found:
        report.fail(
            "log",
            "run_start says the class counts are a DP release (class_counts 'dp') but no "
            "class_counts entry logs it: the outputs per class are unaccounted",
        )
        return
    for i, e in found[1:]:
        report.fail(
            entry_label(i, e), "a second class_counts entry: the accountant counts one release"
        )
    i, e = found[0]
    where = entry_label(i, e)
    if releases and i > releases[0]:
        report.fail(where, f"logged after the first release (entry {releases[0]})")
    sigma, delta, k = start["sigma"], start["delta"], start.get("k", 1)
    if not (_close(e.get("sigma"), sigma) and _close(e.get("delta"), delta)):
        report.fail(where, "σ or δ differs from run_start")
    if e.get("k") != k:
        report.fail(where, f"k={e.get('k')!r} differs from run_start's k={k!r}")
    if e.get("accountant") != DISCRETE_ACCOUNTANT:
        report.fail(where, f"accountant {e.get('accountant')!r} is not {DISCRETE_ACCOUNTANT!r}")
    check_noise_seed(i, e, report)
    classes = _classes(start)
    counts = e.get("noisy_counts")
    if classes is not None and _noisy_counts(entries, classes) is None:
        report.fail(where, f"noisy_counts {counts!r} is not one integer per class ({len(classes)})")
    recomputed = epsilon_of(0)
    claim = e.get("cumulative_epsilon")
    if not _close(claim, recomputed):
        report.fail(
            where,
            f"claims cumulative ε={claim!r}, recomputed ε={recomputed:.6g} from one count "
            f"release at σ={sigma:g}, δ={delta:g}",
        )


def check_class_accounting(
    entries: Entries, start: dict[str, Any], report: VerifyReport
) -> tuple[list[float], float, int]:
    """Checks a labelled run's class fields, class counts and releases (module docstring).
    Returns ε after each iteration of one class, the run's ε spent, and the releases logged."""
    _check_start(entries, start, report)
    classes = _classes(start) or []
    extra = _extra(start)
    sigma, delta, iterations = start["sigma"], start["delta"], start["iterations"]
    target, k = start["epsilon_target"], start.get("k", 1)
    k = k if _is_int(k) and k >= 1 else 1  # reported by the common run_start checks

    def epsilon_of(steps: int) -> float:
        if steps == 0 and extra == 0:
            return 0.0
        return discrete_gaussian_epsilon(sigma, steps, delta, k, extra=extra)

    counted = " and the DP class-count release" if extra else ""
    planned = epsilon_of(iterations)
    if planned > target * (1 + REL_TOL):
        report.fail(
            _START,
            f"σ={sigma:g} over {iterations} iterations per class{counted} gives "
            f"ε={planned:.6g} > target {target:g}",
        )
    _check_counts_entry(entries, start, epsilon_of, report)
    made = [0] * len(classes)
    releases = [(i, e) for i, e in enumerate(entries) if e and e.get("type") == "release"]
    for i, e in releases:
        where = entry_label(i, e)
        label = e.get("label")
        if "label" not in e:
            report.fail(where, "no class label in a labelled run: which class voted is unknown")
            continue
        if not _is_int(label) or not 0 <= label < len(classes):
            report.fail(where, f"label {label!r} is not a class index 0..{len(classes) - 1}")
            continue
        name = _class_name(classes, label)
        t = made[label]
        made[label] += 1
        if t >= iterations:
            report.fail(where, f"release {t + 1} of {name}: run_start planned {iterations}")
        if e.get("iteration") != t:
            report.fail(where, f"expected iteration {t} of {name}")
        if not (_close(e.get("sigma"), sigma) and _close(e.get("delta"), delta)):
            report.fail(where, "σ or δ differs from run_start")
        check_noise_seed(i, e, report)
        check_release_votes(i, e, k, report, integer=True)
        prefix = class_prefix(label)
        foreign = [c for c in e.get("selected_ids") or [] if not str(c).startswith(prefix)]
        if foreign:
            report.fail(
                where,
                f"selected candidate {foreign[0]!r} is not one of {name}'s (ids {prefix}…): "
                "the release is not that class's",
            )
        recomputed = epsilon_of(t + 1)
        claim = e.get("cumulative_epsilon")
        if not _close(claim, recomputed):
            shown = f"{claim:.6g}" if _is_number(claim) else repr(claim)
            report.fail(
                where,
                f"claims cumulative ε={shown}, recomputed ε={recomputed:.6g} from σ={sigma:g}, "
                f"{t + 1} release{'s' if t else ''} of {name}{counted}, δ={delta:g}",
            )
        if recomputed > target * (1 + REL_TOL):
            report.fail(where, f"spends ε={recomputed:.6g} > target {target:g}")
    most = max(made, default=0)
    report.receipt.update(
        {
            "classes": classes,
            "class_counts": start.get("class_counts"),
            "composition": start.get("composition"),
            "releases_per_class": made,
        }
    )
    if start.get("class_counts") == "public":
        report.receipt["class_fractions"] = start.get("class_fractions")
    else:
        report.receipt["class_noisy_counts"] = _noisy_counts(entries, classes)
    per_iteration = [epsilon_of(t + 1) for t in range(most)]
    return per_iteration, epsilon_of(most), len(releases)


def check_class_outputs(
    entries: Entries,
    start: dict[str, Any],
    outputs: list[tuple[str, Any, Any]],
    report: VerifyReport,
) -> None:
    """Outputs of a labelled run: (where, candidate id, label) rows (module docstring)."""
    classes = _classes(start)
    if classes is None:
        return  # reported by check_class_accounting
    last: dict[int, tuple[int, dict[str, Any]]] = {}
    for i, e in enumerate(entries):
        if e and e.get("type") == "release" and _is_int(e.get("label")):
            last[e["label"]] = (i, e)
    found = [0] * len(classes)
    for where, cid, label in outputs:
        if not _is_int(label) or not 0 <= label < len(classes):
            report.fail(where, f"label {label!r} is not a class index 0..{len(classes) - 1}")
            continue
        name = _class_name(classes, label)
        found[label] += 1
        match = _CLASS_ID.match(cid) if isinstance(cid, str) else None
        if match is None or int(match[1]) != label:
            owner = f"class {match[1]}'s" if match else "of no class"
            report.fail(where, f"labelled {name} but candidate {cid!r} is {owner}")
            continue
        if label not in last:
            report.fail(where, f"{name} made no release: not a DP output")
            continue
        i, release = last[label]
        if cid not in set(release.get("selected_ids") or []):
            report.fail(
                where,
                f"candidate {cid!r} is not among those the last release of {name} "
                f"({entry_label(i, release)}) selected: not a DP output",
            )
    report.receipt["class_output_counts"] = found
    if not outputs and not any(e and e.get("type") == "run_end" for e in entries):
        return  # an unfinished run (reported as such)
    _check_allocation(entries, start, classes, found, len(outputs), report)


def _check_allocation(
    entries: Entries,
    start: dict[str, Any],
    classes: list[str],
    found: list[int],
    num_outputs: int,
    report: VerifyReport,
) -> None:
    """Outputs per class as the run allocates them from the DP counts or public fractions."""
    if start.get("class_counts") == "public":
        fractions = _fractions(start, classes)
        source = f"public class fractions {fractions}"
        weights = class_weights(classes, fractions=fractions) if fractions else None
    else:
        counts = _noisy_counts(entries, classes)
        source = f"DP class counts {counts}"
        weights = class_weights(classes, noisy_counts=counts) if counts else None
    expected: list[int] | None = None
    if weights is not None:
        try:
            expected = class_output_counts(weights, num_outputs)
        except ValueError as e:
            report.fail("outputs", f"cannot allocate them to the classes: {e}")
    for label, got in enumerate(found):
        where = f"outputs of {_class_name(classes, label)}"
        if expected is not None and got != expected[label]:
            report.fail(
                where,
                f"{got} outputs, but the {source} allocate {expected[label]} of the {num_outputs}",
            )
        elif expected is None and got == 0:
            report.fail(where, "no output: every class has at least one")
