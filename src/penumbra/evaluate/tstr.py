"""Train on synthetic, test on real (TSTR): does a classifier trained on the synthetic set
work on real images? Fidelity metrics compare distributions; TSTR asks whether the synthetic
set carries what a downstream model needs to tell the classes apart.

A logistic regression on embedder features (standardised on the training set) is trained on
the labelled synthetic set and tested on the labelled reference; the same classifier trained
on the same number of *real* images is the anchor that says how good "good" is. Classes are
matched between the two sets by name. Everything here uses the reference images and their
labels, so it is not DP (privacy invariant 6): the result is labelled so and never feeds a run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from penumbra.data.images import list_image_files
from penumbra.data.labels import detect_label_source, read_labels
from penumbra.durable import atomic_write_bytes
from penumbra.errors import DataError
from penumbra.evaluate.audit import AUDIT_LABEL
from penumbra.evaluate.features import embed_folder

if TYPE_CHECKING:
    from penumbra.compute.engine import Engine

TSTR_LABEL = f"uses the reference images and their labels; {AUDIT_LABEL}"
CLASSIFIER = "logistic regression (C=1, lbfgs, max_iter 2000) on standardised features"
MAX_ITER = 2000
Z95 = 1.959963984540054
PROTOCOLS = {
    "reference halves": "trained on the synthetic set and on as many real images from one "
    "stratified half of the reference; both tested on the other half",
    "real-train": "trained on the synthetic set and on as many real images from --real-train; "
    "both tested on the whole reference",
}


@dataclass(frozen=True)
class LabelledSet:
    """Feature rows of one folder with the class name of each row (unreadable images left out)."""

    features: np.ndarray
    names: list[str]
    classes: list[str]
    skipped: int


def folder_labels(folder: Path, name: str) -> dict[str, str]:
    """The class name of every image under `folder` by its relative path (class subfolders or
    a metadata.jsonl label column). Cheap: the CLI calls it before any image is embedded."""
    folder = Path(folder)
    try:
        files = list_image_files(folder)
    except DataError as e:
        raise DataError(f"{name}: {e.problems[0]}") from None
    source = detect_label_source(folder)
    if source == "folders" and not any(len(f.relative_to(folder).parts) > 1 for f in files):
        what = "a labelled synthetic set (penumbra synthesize --labels ...)"
        raise DataError(
            f"{name} {folder}: no labels (no metadata.jsonl label column, no class subfolders); "
            f"TSTR needs {what if name == '--synthetic' else 'labelled images'}"
        )
    try:
        labels = read_labels(folder, files, source)
    except DataError as e:
        raise DataError(f"{name}: {e.problems[0]}; TSTR needs every image labelled") from None
    return {f.relative_to(folder).as_posix(): labels.classes[c]
            for f, c in zip(files, labels.labels, strict=True)}  # fmt: skip


def labelled_features(
    folder: Path, embed: Any, *, name: str, engine: Engine | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> LabelledSet:  # fmt: skip
    """Embed `folder` and label every readable image (see `folder_labels`)."""
    by_file = folder_labels(folder, name)
    feats = embed_folder(folder, embed, name=name, on_progress=on_progress, engine=engine)
    names = [by_file[p] for p in feats.relpaths]
    return LabelledSet(feats.features, names, sorted(set(names)), len(feats.skipped))


def split_halves(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) indices: each class shuffled and halved, the odd one out going to test so
    that a class with a single image is still tested."""
    pool: list[int] = []
    test: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        pool += idx[: len(idx) // 2].tolist()
        test += idx[len(idx) // 2 :].tolist()
    return np.array(sorted(pool), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices whose class mix follows `labels`': every row gets its random rank within its
    class divided by the class size, and the `n` smallest are kept."""
    key = np.empty(len(labels))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        key[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.sort(np.argsort(key, kind="stable")[:n])


def fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int
) -> tuple[np.ndarray, bool]:
    """Predicted class indices for `test_x` and whether the solver converged. A training set of
    one class cannot fit a logistic regression; it predicts that class (what it learnt)."""
    if len(np.unique(train_y)) < 2:
        return np.full(len(test_x), train_y[0], dtype=np.int64), True
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(C=1.0, max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as "converged"
        model.fit(scaler.transform(train_x), train_y)
    converged = bool(np.all(np.asarray(model.n_iter_) < MAX_ITER))
    return model.predict(scaler.transform(test_x)).astype(np.int64), converged


def wilson(correct: int, n: int, z: float = Z95) -> list[float]:
    """Wilson score interval of a binomial proportion (sensible at 0, 1 and small n)."""
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exact ends at 0 and n: the float arithmetic would give 1 - 1e-16
    return [0.0 if correct == 0 else max(0.0, centre - half),
            1.0 if correct == n else min(1.0, centre + half)]  # fmt: skip


def scores(
    truth: np.ndarray, pred: np.ndarray, classes: list[str], tested: list[str]
) -> dict[str, Any]:
    """Accuracy with its 95% CI, recall of every tested class, and the confusion matrix (rows:
    true class, columns: predicted; counts and row-normalised)."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros((k, k)), where=rows > 0)
    correct = int(np.trace(confusion))
    position = {c: i for i, c in enumerate(classes)}
    return {
        "accuracy": correct / len(truth),
        "accuracy_ci95": wilson(correct, len(truth)),
        "per_class_recall": {c: float(normalised[position[c], position[c]]) for c in tested},
        "confusion": confusion.tolist(),
        "confusion_row_normalised": normalised.round(6).tolist(),
    }


def tstr(
    synthetic: Path,
    reference: Path,
    *,
    embedder: str = "builtin:effnet-lite0",
    real_train: Path | None = None,
    seed: int = 0,
    engine: Engine | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train on `synthetic`, test on `reference` (both labelled), beside the same classifier
    trained on as many real images: from `real_train` (then the whole reference is the test
    set), else from one stratified half of the reference (the other half is the test set)."""
    from penumbra.evaluate.evaluation import _embedder

    embed, embed_info = _embedder(embedder, engine)

    def features(folder: Path, name: str) -> LabelledSet:
        return labelled_features(folder, embed, name=name, engine=engine, on_progress=on_progress)

    syn, ref = features(synthetic, "--synthetic"), features(reference, "--reference")
    if len(syn.classes) < 2:
        raise DataError(
            f"--synthetic {synthetic}: one class ({syn.classes[0]}); TSTR needs at least two"
        )
    common = set(syn.classes) & set(ref.classes)
    if not common:
        raise DataError(
            f"--synthetic {synthetic}: no class name in common with --reference {reference} "
            f"({', '.join(syn.classes[:5])} vs {', '.join(ref.classes[:5])}); classes are "
            "matched by name"
        )
    classes = ref.classes + [c for c in syn.classes if c not in ref.classes]
    index = {c: i for i, c in enumerate(classes)}
    syn_y = np.array([index[c] for c in syn.names], dtype=np.int64)
    ref_y = np.array([index[c] for c in ref.names], dtype=np.int64)
    rng = np.random.default_rng(seed)
    skipped = {"--synthetic": syn.skipped, "--reference": ref.skipped}
    if real_train is None:
        protocol = "reference halves"
        pool_idx, test_idx = split_halves(ref_y, rng)
        pool_x, pool_y = ref.features[pool_idx], ref_y[pool_idx]
    else:
        protocol = "real-train"
        real = features(real_train, "--real-train")
        unknown = sorted(set(real.classes) - set(classes))
        if unknown:
            raise DataError(
                f"--real-train {real_train}: class {unknown[0]!r} is in neither --reference "
                "nor --synthetic; classes are matched by name"
            )
        test_idx = np.arange(len(ref_y))
        pool_x = real.features
        pool_y = np.array([index[c] for c in real.names], dtype=np.int64)
        skipped["--real-train"] = real.skipped
    test_x, test_y = ref.features[test_idx], ref_y[test_idx]
    pick = stratified_subset(pool_y, min(len(syn_y), len(pool_y)), rng)
    result: dict[str, Any] = {
        "not_dp": TSTR_LABEL,
        "uses_reference": True,
        "protocol": protocol,
        "protocol_text": PROTOCOLS[protocol],
        "classes": classes,
        "synthetic_only_classes": [c for c in syn.classes if c not in ref.classes],
        "reference_only_classes": [c for c in ref.classes if c not in syn.classes],
        "test_images": len(test_y),
        "skipped": skipped,
        "feature_space": {**embed_info, "dims": int(syn.features.shape[1])},
        "classifier": CLASSIFIER,
        "seed": seed,
        "chance": float(np.bincount(test_y).max() / len(test_y)),
        "chance_rule": "share of the most common class in the test set",
    }
    for key, (x, y) in {"synthetic": (syn.features, syn_y),
                        "real_same_number": (pool_x[pick], pool_y[pick])}.items():  # fmt: skip
        pred, converged = fit_predict(x, y, test_x, seed)
        result[key] = {"train_images": len(y), "converged": converged,
                       **scores(test_y, pred, classes, ref.classes)}  # fmt: skip
    return result


def confusion_picture(result: dict[str, Any], out_png: Path) -> Path:
    """Row-normalised confusion matrices side by side: trained on synthetic | on as many real
    images. Aggregates only (shares of the test set), so it may sit beside the public JSON.
    Rows are the tested (reference) classes; columns every class a classifier could answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result["classes"]
    tested = [i for i, c in enumerate(classes) if c in result["synthetic"]["per_class_recall"]]
    rows, cols = len(tested), len(classes)
    width, height = min(max(3.2, 0.45 * cols + 1.6), 12.0), min(max(3.0, 0.45 * rows + 1.6), 12.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, height + 0.7), dpi=110, layout="constrained")
    panels = (("synthetic", "synthetic"), ("real_same_number", "real"))
    for ax, (key, what) in zip(axes, panels, strict=True):
        part = result[key]
        matrix = np.array(part["confusion_row_normalised"], dtype=float)[tested]
        ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="Blues")
        ax.set_title(f"trained on {part['train_images']} {what} images\n"
                     f"accuracy {part['accuracy']:.3f}", fontsize=9)  # fmt: skip
        ax.set_xticks(range(cols), classes, rotation=90 if cols > 6 else 0, fontsize=7)
        ax.set_yticks(range(rows), [classes[i] for i in tested], fontsize=7)
        ax.set_xlabel("predicted class", fontsize=8)
        ax.set_ylabel("true class (reference)", fontsize=8)
        if cols <= 12:
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.5 else "black")  # fmt: skip
    fig.suptitle("TSTR confusion (row-normalised): uses the reference images (not DP)",
                 fontsize=10)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png
