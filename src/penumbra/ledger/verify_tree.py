"""`penumbra verify`, the published tree: every file outside `private/` is one the ledger lists.

The ledger's `files` entries (`ledger.tree`) fold into the tree penumbra wrote. Against it:
a file on disk the tree lacks (an added "clean votes" file, a private image copied into
`renders/`), a file whose SHA-256 differs (the exact N written into `report.html`), a listed file
that is gone, a symlink or any other non-regular file anywhere in the tree, and a file in
`ledger/` that is not part of a ledger all fail. Beyond the hashes, the files that restate the
ledger must agree with it: each `release-NNN.json` with its release entry (noisy votes,
selection, σ, k), each population with its release's `candidate_hash`, and
`synthetic/metadata.jsonl` (or `texts.jsonl`) with the `outputs` entries: file, candidate,
label, iteration, lineage, and the caption its candidate had in the hashed population.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from penumbra.ledger.schema import POLICY_ROW_FIELDS
from penumbra.ledger.tree import Scan, logged_tree, scan_tree, sha256_file
from penumbra.ledger.verify_report import VerifyReport
from penumbra.pe.release import candidate_hash
from penumbra.pe.store import read_population

Entries = list[dict[str, Any] | None]
_NUMBERED = re.compile(r"(release|population)-(\d+)\.(json|parquet)")
_CLASS_FOLDER = re.compile(r"class-(\d+)")
_META_KEYS = frozenset({"file_name", "caption", "iteration", "candidate_id", "parent_chain",
                        "label", "class_name", *POLICY_ROW_FIELDS})  # fmt: skip
_LEDGER_FILES = frozenset({"entries.jsonl", "pubkey", "origin", "cosigners"})
_RELEASE_FIELDS = ("candidate_hash", "sigma", "threshold", "cumulative_epsilon", "delta",
                   "fixed_noise_seed", "accountant", "noisy_votes")  # fmt: skip


def read_text(path: Path) -> str:
    """A file's text, undecodable bytes replaced: crafted bytes make a failure, not a crash."""
    return path.read_bytes().decode("utf-8", errors="replace")


def check_tree(
    run_dir: Path,
    entries: Entries,
    report: VerifyReport,
    *,
    checked: Collection[str] = (),
    scan: Scan | None = None,
) -> None:
    """Files on disk against the tree the ledger's `files` entries describe; `checked` files
    (the outputs, whose entries were compared already) are not reported twice. `scan`: the
    folder as already walked."""
    scan = scan or scan_tree(run_dir)
    for name in scan.links:
        report.fail(name, "a symlink in the published tree (it can reach private data)")
    for name in scan.odd:
        report.fail(name, "not a regular file (a published tree holds files and folders only)")
    for name in ("ledger", "private"):
        if (run_dir / name).is_symlink():
            report.fail(name, "a symlink (penumbra writes a folder here; a link can reach data "
                              "outside the run)")  # fmt: skip
    _check_ledger_folder(run_dir / "ledger", report)
    _check_removed(entries, report)
    if (run_dir / "private").exists():
        report.receipt["private_note"] = (
            "private/ is present: it is never part of what is published"
        )
    if not any(e and e.get("type") == "files" for e in entries):
        report.fail(
            "log",
            "no files entries: the run's published tree (candidates/, renders/, report.html …) "
            "is not signed (a run from an older penumbra); only its outputs can be checked",
        )
        return
    tree = logged_tree(entries)
    for name, path in scan.files.items():
        row = tree.get(name)
        if name in checked:
            continue
        if row is None:
            report.fail(name, "not in the ledger's published tree (added after penumbra wrote it)")
        elif sha256_file(path) != row["sha256"]:
            report.fail(name, f"SHA-256 differs from the log (entry {row['entry']}): modified")
    for name, row in tree.items():
        if name not in scan.files and name not in scan.links and name not in checked:
            report.fail(name, f"listed in entry {row['entry']} but missing")
    report.receipt["published_files"] = len(tree)


def _check_removed(entries: Entries, report: VerifyReport) -> None:
    """A `files` entry removes only files the tree listed before it: a name that was never
    published (a private file name) has no business in the log."""
    listed: set[str] = set()
    for index, entry in enumerate(entries):
        if not entry or entry.get("type") != "files":
            continue
        for name in entry.get("removed") or []:
            if name not in listed:
                report.fail(f"entry {index}", f"removes {name!r}, which no entry before it listed")
            listed.discard(name)
        listed.update(row["file"] for row in entry.get("files") or [])


def _check_ledger_folder(folder: Path, report: VerifyReport) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder.parent).as_posix()
        if path.is_symlink():
            report.fail(rel, "a symlink in the ledger folder")
        elif not _ledger_part(path.relative_to(folder).as_posix(), path):
            report.fail(rel, "not part of a penumbra ledger (added to the ledger folder)")


def _ledger_part(name: str, path: Path) -> bool:
    if name == "checkpoints":
        return path.is_dir()
    if name.startswith("checkpoints/"):
        number = name.removeprefix("checkpoints/")
        return path.is_file() and number.isascii() and number.isdigit()
    return name in _LEDGER_FILES and path.is_file()


def _released(entries: Entries) -> dict[tuple[Any, Any], tuple[int, dict[str, Any]]]:
    """(class label or None, iteration) → (index, release entry)."""
    found = {}
    for i, e in enumerate(entries):
        if e and e.get("type") == "release":
            found[(e.get("label"), e.get("iteration"))] = (i, e)
    return found


def _folder_label(rel: str) -> Any:
    parts = rel.split("/")
    match = _CLASS_FOLDER.fullmatch(parts[-2]) if len(parts) >= 2 else None
    return int(match[1]) if match else None


def check_release_files(
    run_dir: Path, entries: Entries, report: VerifyReport, *, scan: Scan | None = None
) -> dict[str, str]:
    """Each release file equals its ledger entry; each population hashes to its release's
    `candidate_hash`. Returns candidate id → payload of the populations that do."""
    released = _released(entries)
    payloads: dict[str, str] = {}
    for rel, path in (scan or scan_tree(run_dir)).files.items():
        match = _NUMBERED.fullmatch(rel.rsplit("/", 1)[-1])
        if match is None or match[3] != ("json" if match[1] == "release" else "parquet"):
            continue
        label, t = _folder_label(rel), int(match[2])
        found = released.get((label, t))
        of = "" if label is None else f" of class {label}"
        if found is None and match[1] == "population" and t == final_iteration(entries):
            continue  # the final population: `final_population` checks it
        if found is None:
            report.fail(rel, f"the ledger holds no release {t}{of}: not a logged DP release")
            continue
        index, entry = found
        if match[1] == "release":
            _compare_release(rel, path, index, entry, report)
        else:
            _check_population(rel, path, index, entry, payloads, report)
    return payloads


def _compare_release(
    rel: str, path: Path, index: int, entry: dict[str, Any], report: VerifyReport
) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = data["candidate_ids"]
        differ = [key for key in _RELEASE_FIELDS if data.get(key) != entry.get(key)]
        if data.get("noisy") != entry.get("noisy_histogram"):
            differ.append("noisy (the histogram)")
        if [ids[i] for i in data["selected"]] != entry.get("selected_ids"):
            differ.append("selection")
        if data.get("k") != entry.get("k") or data.get("iteration") != entry.get("iteration"):
            differ.append("k or iteration")
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        report.fail(rel, "not a release file penumbra wrote (unreadable)")
        return
    if differ:
        report.fail(rel, f"differs from its ledger entry {index}: {', '.join(differ)}")


def final_iteration(entries: Entries) -> int | None:
    """The number of the final population's file (T), where the run made one (run_start
    `final: variations`); None where the outputs are the last release's own draws."""
    start = entries[0] if entries and entries[0] else {}
    if start.get("type") != "run_start" or start.get("final") != "variations":
        return None
    iterations = start.get("iterations")
    return iterations if isinstance(iterations, int) and iterations >= 1 else None


def final_population(
    run_dir: Path, entries: Entries, report: VerifyReport, *, scan: Scan | None = None
) -> dict[str, tuple[str, str]] | None:
    """The final population (candidate id → (parent id, caption)) of every class, where the
    run made one; None where it did not. Its parents must be exactly the last release's
    selection, in order: each output is one variation of one selected parent, so the mix of
    parents is the DP histogram's and nothing else."""
    t = final_iteration(entries)
    if t is None:
        return None
    found: dict[str, tuple[str, str]] = {}
    released = _released(entries)
    for rel, path in (scan or scan_tree(run_dir)).files.items():
        match = _NUMBERED.fullmatch(rel.rsplit("/", 1)[-1])
        if match is None or match[1] != "population" or int(match[2]) != t:
            continue
        label = _folder_label(rel)
        if (label, t - 1) not in released:
            of = "" if label is None else f" of class {label}"
            report.fail(rel, f"a final population, but the ledger holds no release {t - 1}{of}")
            continue
        index, entry = released[(label, t - 1)]
        try:
            rows = read_population(path)
            parents, ids, captions = rows["parent_id"], rows["id"], rows["payload"]
        except Exception:  # pyarrow raises many kinds for a damaged file
            report.fail(rel, "not a population file penumbra wrote (unreadable Parquet)")
            continue
        if list(parents) != list(entry.get("selected_ids") or []):
            report.fail(
                rel,
                f"its parents are not the candidates release entry {index} selected, in "
                "order: the final population must be one variation of each selected parent",
            )
            continue
        found.update(zip(ids, zip(parents, captions, strict=True), strict=True))
    return found


def outputs_as_parents(
    outputs: list[tuple[str, Any, Any]],
    final: dict[str, tuple[str, str]] | None,
    report: VerifyReport,
) -> list[tuple[str, Any, Any]]:
    """(where, candidate id, label) of each output, with a final-population candidate
    replaced by its parent, which is what the last release selected. An output that is no
    final candidate, or the same final candidate twice, fails here."""
    if final is None:
        return outputs
    kept, seen = [], set()
    for where, cid, label in outputs:
        if cid not in final:
            report.fail(where, f"candidate {cid!r} is not in the run's final population")
        elif cid in seen:
            report.fail(where, f"candidate {cid!r} is output twice: final outputs are distinct")
        else:
            seen.add(cid)
            kept.append((where, final[cid][0], label))
    return kept


def check_final_lineage(
    listed: dict[str, tuple[int, dict[str, Any]]],
    final: dict[str, tuple[str, str]] | None,
    report: VerifyReport,
) -> None:
    """Each output of a final population descends, in the ledger's lineage, from the parent
    its final population names."""
    if not final:
        return
    for name, (_, row) in sorted(listed.items()):
        cid = row.get("candidate_id")
        if cid not in final:
            continue
        lineage = row.get("lineage")
        if not isinstance(lineage, list) or lineage[:2] != [cid, final[cid][0]]:
            report.fail(name, f"its lineage does not run from {cid!r} to its parent "
                              f"{final[cid][0]!r} in the final population")  # fmt: skip


def _check_population(
    rel: str,
    path: Path,
    index: int,
    entry: dict[str, Any],
    payloads: dict[str, str],
    report: VerifyReport,
) -> None:
    try:
        rows = read_population(path)
    except Exception:  # pyarrow raises many kinds for a damaged file
        report.fail(rel, "not a population file penumbra wrote (unreadable Parquet)")
        return
    if candidate_hash(rows["id"], rows["payload"]) != entry.get("candidate_hash"):
        report.fail(rel, f"its candidates are not the ones release entry {index} voted on")
        return
    payloads.update(zip(rows["id"], rows["payload"], strict=True))


def check_output_rows(
    run_dir: Path,
    entries: Entries,
    listed: dict[str, tuple[int, dict[str, Any]]],
    payloads: dict[str, str],
    classes: list[str] | None,
    report: VerifyReport,
) -> None:
    """synthetic/metadata.jsonl row by row against the `outputs` entries, and each caption
    against its candidate's payload in the hashed population."""
    meta = run_dir / "synthetic" / "metadata.jsonl"
    if "synthetic/metadata.jsonl" not in listed or not meta.is_file():
        return
    expected = {name: row for name, (_, row) in listed.items() if "candidate_id" in row}
    seen = set()
    for number, line in enumerate(read_text(meta).splitlines(), 1):
        where = f"synthetic/metadata.jsonl line {number}"
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name = "synthetic/" + row["file_name"]
        except (ValueError, KeyError, TypeError):
            report.fail(where, "not a JSON row with a file_name")
            continue
        logged = expected.get(name)
        if logged is None:
            report.fail(where, f"{name} is not an output the ledger lists")
            continue
        if name in seen:
            report.fail(where, f"a second row for {name}")
            continue
        extra = sorted(set(row) - _META_KEYS)
        if extra:
            report.fail(where, f"fields penumbra never writes: {', '.join(extra[:5])}")
        seen.add(name)
        _compare_row(where, row, logged, payloads, classes, report)
    for name in sorted(set(expected) - seen):
        report.fail(name, "an output the ledger lists has no row in synthetic/metadata.jsonl")


def _compare_row(
    where: str,
    row: dict[str, Any],
    logged: dict[str, Any],
    payloads: dict[str, str],
    classes: list[str] | None,
    report: VerifyReport,
) -> None:
    pairs = [("candidate_id", "candidate_id"), ("iteration", "iteration"), ("label", "label"),
             ("parent_chain", "lineage"), *((k, k) for k in POLICY_ROW_FIELDS)]  # fmt: skip
    differ = [key for key, mine in pairs if row.get(key) != logged.get(mine)]
    label = row.get("label")
    named = classes is not None and isinstance(label, int) and 0 <= label < len(classes)
    if named and row.get("class_name") != classes[label]:  # type: ignore[index]
        differ.append("class_name")
    cid = row.get("candidate_id")
    if isinstance(cid, str) and cid in payloads and row.get("caption") != payloads[cid]:
        differ.append("caption (not its candidate's)")
    if differ:
        report.fail(where, f"differs from the ledger's outputs entry: {', '.join(differ)}")


def check_release_votes(index: int, entry: dict[str, Any], k: Any, report: VerifyReport,
                        *, integer: bool) -> None:  # fmt: skip
    """A release's k is run_start's, and its histogram is its integer noisy votes / √k (the
    votes are what the accountant's sensitivity is about). `integer`: the run releases
    integer votes (single holder, discrete Gaussian), so they must be there."""
    where = f"entry {index} (release, iteration {entry.get('iteration')})"
    if entry.get("k", k) != k:
        report.fail(where, f"k={entry.get('k')!r} differs from run_start's k={k!r}")
        return
    votes, histogram = entry.get("noisy_votes"), entry.get("noisy_histogram")
    if votes is None:
        if integer:
            report.fail(where, "no integer noisy_votes: the release cannot be checked")
        return
    ok = isinstance(votes, list) and isinstance(histogram, list) and len(votes) == len(histogram)
    if ok and isinstance(k, int) and k >= 1:
        assert isinstance(votes, list) and isinstance(histogram, list)
        root = math.sqrt(k)
        ok = all(
            isinstance(v, int) and not isinstance(v, bool) and isinstance(h, int | float)
            and math.isclose(h, v / root, rel_tol=1e-12, abs_tol=1e-12)
            for v, h in zip(votes, histogram, strict=True)
        )  # fmt: skip
    if not ok:
        report.fail(where, "noisy_histogram is not its integer noisy_votes / √k")
