"""Class labels of an image folder: class subfolders, or the `label` column of an imagefolder
`metadata.jsonl` (the two layouts Hugging Face `imagefolder` reads).

Class *names* are public in penumbra (DESIGN.md: with labels, PE runs per class): they come from
the config (`data.classes`) or from the folder names / label values, which the user publishes
by naming them. Which image carries which label is private, like the image itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from penumbra.data.images import scan_image_files
from penumbra.errors import DataError

LabelSource = Literal["folders", "metadata"]
METADATA = "metadata.jsonl"


@dataclass(frozen=True)
class Labels:
    """`classes[i]` is the name of class i; `labels[j]` the class index of file j, whose path
    under the folder is `relpaths[j]`."""

    classes: list[str]
    labels: list[int]
    relpaths: list[str] = field(default_factory=list)

    def counts(self) -> list[int]:
        out = [0] * len(self.classes)
        for label in self.labels:
            out[label] += 1
        return out


def read_labels(
    root: Path,
    files: Sequence[Path],
    source: LabelSource,
    classes: Sequence[str] | None = None,
    *,
    aliases: Mapping[Path, Sequence[Path]] | None = None,
) -> Labels:
    """The class of every file in `files` (all under `root`), in their order.

    With `classes` (the public list from the config) every label must be one of them (an
    integer label is an index into it); without, the classes are the sorted folder names, the
    sorted label strings, or 0..max of integer labels named by a `class_name` column when there
    is one. Anything missing or ambiguous is a DataError naming the file (and line).

    `aliases` (from `scan_image_files` of the same root; scanned here when not given) are the
    other paths of each file: one image is in one class only (DESIGN.md invariant 11), so a
    file whose paths carry two different labels is refused rather than labelled by whichever
    path sorts first."""
    root = Path(root)
    if aliases is None:
        aliases = scan_image_files(root, allow_empty=True).aliases
    relpaths = [path.relative_to(root).as_posix() for path in files]
    groups = _alias_groups(root, relpaths, aliases)
    if source == "folders":
        raw: list[str | int] = [
            _one_label(root, {m: _folder_label(root, root / m) for m in groups[rel]})
            for rel in relpaths
        ]
        names: dict[int, str] = {}
    elif source == "metadata":
        raw, names = _metadata_labels(root, relpaths, groups)
    else:
        raise DataError(f"labels: {source!r} is not a label source; use folders or metadata")
    indexed = _index(raw, names, classes, root, source)
    return replace(indexed, relpaths=relpaths)


def _alias_groups(
    root: Path, relpaths: Sequence[str], aliases: Mapping[Path, Sequence[Path]]
) -> dict[str, list[str]]:
    """Every path of each file in `relpaths`, that file's own path first."""
    member_of: dict[str, list[str]] = {}
    for kept, others in aliases.items():
        group = [p.relative_to(root).as_posix() for p in (kept, *others)]
        for member in group:
            member_of[member] = group
    groups: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for rel in relpaths:
        group = member_of.get(rel, [rel])
        if group[0] in first:
            raise DataError(
                f"{root}: {first[group[0]]} and {rel} are one file (a link) listed twice; one "
                "image is counted once: list each file once"
            )
        first[group[0]] = rel
        groups[rel] = [rel, *(m for m in group if m != rel)]
    return groups


def _one_label(root: Path, found: dict[str, str | int]) -> str | int:
    """The one label of a file from the labels of its paths (its own path first)."""
    (path, label), *others = found.items()
    for other, other_label in others:
        if other_label != label:
            raise DataError(
                f"{root}: {path} (class {label!r}) and {other} (class {other_label!r}) are one "
                "file (a link); one image is counted once and in one class only; remove one "
                "of the paths"
            )
    return label


def detect_label_source(root: Path) -> LabelSource:
    """metadata when `root/metadata.jsonl` has a label column, else class subfolders."""
    path = Path(root) / METADATA
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    if isinstance(row, dict) and "label" in row:
                        return "metadata"
                    break
    return "folders"


def _folder_label(root: Path, path: Path) -> str:
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        raise DataError(
            f"{path}: not in a class subfolder; with --labels folders every image sits in "
            f"{root}/CLASS_NAME/ (or use --labels metadata)"
        )
    return parts[0]


def _metadata_labels(
    root: Path, relpaths: Sequence[str], groups: Mapping[str, Sequence[str]]
) -> tuple[list[str | int], dict[int, str]]:
    path = root / METADATA
    if not path.is_file():
        raise DataError(
            f"{path}: missing; --labels metadata needs an imagefolder metadata.jsonl with "
            "file_name and label on every row (or use --labels folders)"
        )
    by_file: dict[str, str | int] = {}
    names: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row: Any = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg}); fix the line") from None
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                raise DataError(f"{where}: a row needs a file_name (the image's path under {root})")
            label = row.get("label")
            if isinstance(label, bool) or not isinstance(label, (int, str)) or label == "":
                raise DataError(
                    f"{where}: label must be a class name or a class number, got {label!r}"
                )
            if isinstance(label, int) and label < 0:
                raise DataError(f"{where}: label {label} is negative; class numbers start at 0")
            name = row.get("class_name")
            if (
                isinstance(label, int)
                and isinstance(name, str)
                and names.setdefault(label, name) != name
            ):
                raise DataError(
                    f"{where}: class_name {name!r} differs from {names[label]!r} given earlier "
                    f"for label {label}; one name per class"
                )
            key = Path(row["file_name"]).as_posix()
            if key in by_file and by_file[key] != label:
                raise DataError(
                    f"{where}: {row['file_name']} is labelled {label!r} here and "
                    f"{by_file[key]!r} on an earlier row; one label per image"
                )
            by_file[key] = label
    raw: list[str | int] = []
    for rel in relpaths:
        rows = {m: by_file[m] for m in groups[rel] if m in by_file}
        if not rows:
            raise DataError(
                f"{path}: no row for {rel}; add one with its label, or move the file out"
            )
        raw.append(_one_label(root, rows))
    kinds = {type(v) for v in raw}
    if len(kinds) > 1:
        raise DataError(f"{path}: labels mix numbers and names; use one kind for every row")
    return raw, names


def _index(
    raw: list[str | int],
    names: dict[int, str],
    classes: Sequence[str] | None,
    root: Path,
    source: str,
) -> Labels:
    numbers = bool(raw) and isinstance(raw[0], int)
    if classes is not None:
        public = list(classes)
        if numbers:
            bad = sorted({v for v in raw if not 0 <= int(v) < len(public)})
            if bad:
                raise DataError(
                    f"{root}: label {bad[0]} is not a class number of data.classes "
                    f"(0..{len(public) - 1}); fix the label or the class list"
                )
            return Labels(public, [int(v) for v in raw])
        position = {name: i for i, name in enumerate(public)}
        bad_names = sorted({str(v) for v in raw if v not in position})
        if bad_names:
            raise DataError(
                f"{root}: class {bad_names[0]!r} ({source}) is not in data.classes; add it "
                "there or fix the label"
            )
        return Labels(public, [position[str(v)] for v in raw])
    if numbers:
        top = max(int(v) for v in raw)
        return Labels([names.get(i, str(i)) for i in range(top + 1)], [int(v) for v in raw])
    found = sorted({str(v) for v in raw})
    position = {name: i for i, name in enumerate(found)}
    return Labels(found, [position[str(v)] for v in raw])
