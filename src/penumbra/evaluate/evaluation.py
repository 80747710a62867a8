"""`evaluate()`: fidelity of a synthetic image set against a reference, plus an optional
empirical privacy audit against the private (member) and held-out (non-member) images.

Everything computed against private images is not DP; it is labelled AUDIT_LABEL in the
result and never feeds a run (privacy invariant 6). When the reference *is* the private set,
the fidelity numbers are also computed on private data, and the result says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from penumbra.errors import ConfigError, DataError
from penumbra.evaluate.audit import AUDIT_LABEL, membership_inference, memorisation
from penumbra.evaluate.features import FeatureSet, Progress, embed_folder
from penumbra.evaluate.frechet import frechet_between
from penumbra.evaluate.kid import kernel_distance
from penumbra.evaluate.manifold import manifold_metrics

if TYPE_CHECKING:
    from penumbra.compute.engine import Engine

SCHEMA = "penumbra.evaluation/1"
CLASSIFIERS = ("builtin:fashion-classifier",)


def _embedder(uri: str, engine: Engine | None) -> tuple[Any, dict[str, str]]:
    """The embed function (in this process), or the model itself for `engine` to place."""
    from penumbra.models import load
    from penumbra.models.protocols import ImageEmbedder

    if engine is not None:
        from penumbra.compute.spec import ModelSpec

        handle = engine.model(ModelSpec.of(uri, "image-embedder"))
        return handle, {"uri": uri, "fingerprint": handle.fingerprint}
    model = cast(ImageEmbedder, load(uri, role="image-embedder"))
    return model.embed, {"uri": uri, "fingerprint": model.fingerprint}


def _classifier(name: str) -> Callable[[list[Any]], np.ndarray]:
    if name not in CLASSIFIERS:
        raise ConfigError(f"--classifier {name}: unknown; available: {', '.join(CLASSIFIERS)}")
    from penumbra.evaluate.fashion_classifier import predict

    return predict


def _labels(folder: Path, relpaths: list[str]) -> np.ndarray | None:
    """Integer labels of a reference imagefolder (metadata.jsonl `label`), or None."""
    if not (folder / "metadata.jsonl").is_file():
        return None
    from penumbra.data.imagefolder import read_imagefolder_metadata

    by_file = {row.get("file_name"): row.get("label") for row in read_imagefolder_metadata(folder)}
    labels = [by_file.get(p) for p in relpaths]
    if any(not isinstance(v, int) for v in labels):
        return None
    return np.array(labels, dtype=np.int64)


def class_distribution(
    synthetic: FeatureSet, reference: FeatureSet, classifier: str
) -> dict[str, Any]:
    """Class mix of the synthetic set (by the classifier) vs the reference's own labels."""
    from penumbra.data.images import read_image
    from penumbra.evaluate.fashion_classifier import class_mix, total_variation

    labels = _labels(reference.folder, reference.relpaths)
    if labels is None:
        raise DataError(
            f"--reference {reference.folder}: class distribution needs an integer `label` for "
            "every image in its metadata.jsonl; drop --classifier or add labels"
        )
    predict = _classifier(classifier)
    predicted = predict([read_image(synthetic.folder / p) for p in synthetic.relpaths])
    synth_mix, ref_mix = class_mix(predicted), class_mix(labels)
    return {
        "classifier": classifier,
        "synthetic_mix": [float(v) for v in synth_mix],
        "reference_mix": [float(v) for v in ref_mix],
        "total_variation": total_variation(synth_mix, ref_mix),
    }


def fidelity(synthetic: np.ndarray, reference: np.ndarray, *, k: int, kid_subsets: int,
             kid_subset_size: int, seed: int) -> dict[str, float]:  # fmt: skip
    """Fréchet distance, KID and the k-NN manifold metrics in one feature space."""
    need = k + 1
    for name, x in (("--synthetic", synthetic), ("--reference", reference)):
        if len(x) < max(need, 2):
            raise DataError(f"{name}: {len(x)} image(s); these metrics need at least {need}")
    kid = kernel_distance(synthetic, reference, subsets=kid_subsets,
                          subset_size=kid_subset_size, seed=seed)  # fmt: skip
    return {
        "frechet_distance": frechet_between(synthetic, reference),
        "kid": kid["mean"],
        "kid_std": kid["std"],
        "kid_subset_size": kid["subset_size"],
        **manifold_metrics(reference, synthetic, k=k),
    }


def evaluate(
    synthetic: Path | str,
    reference: Path | str,
    *,
    embedder: str = "builtin:effnet-lite0",
    inception_weights: Path | str | None = None,
    classifier: str | None = None,
    private: Path | str | None = None,
    holdout: Path | str | None = None,
    reference_is_private: bool = False,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    on_progress: Progress | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Measure `synthetic` against `reference` (folders of images).

    With `holdout` (images from the private distribution that the run never saw) it also
    audits memorisation and membership inference against the members: `private` if given,
    else the reference set. `inception_weights` adds standard FID with pytorch-fid's file.
    With `engine` (e.g. Ray) the embedder's features are computed where the engine runs."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    embed, embed_info = _embedder(embedder, engine)
    syn = embed_folder(synthetic, embed, name="--synthetic", on_progress=on_progress, engine=engine)
    ref = embed_folder(reference, embed, name="--reference", on_progress=on_progress, engine=engine)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "synthetic": {"folder": str(synthetic), "images": len(syn), "skipped": len(syn.skipped)},
        "reference": {"folder": str(reference), "images": len(ref), "skipped": len(ref.skipped)},
        "feature_space": {**embed_info, "dims": int(syn.features.shape[1])},
        "fidelity": fidelity(
            syn.features,
            ref.features,
            k=k,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            seed=seed,
        ),
    }
    if reference_is_private:
        result["fidelity"]["uses_private_data"] = AUDIT_LABEL
    if inception_weights is not None:
        from penumbra.evaluate.inception import inception_embedder, load_fid_inception

        net = inception_embedder(load_fid_inception(inception_weights))
        syn_i = embed_folder(synthetic, net, name="--synthetic", on_progress=on_progress)
        ref_i = embed_folder(reference, net, name="--reference", on_progress=on_progress)
        result["fid"] = {
            "fid": frechet_between(
                syn_i.features.astype(np.float32), ref_i.features.astype(np.float32)
            ),
            "weights": str(inception_weights),
            "protocol": "pytorch-fid (bilinear resize to 299, pool3, float32 features)",
        }
    if classifier is not None:
        result["classes"] = class_distribution(syn, ref, classifier)
    if holdout is not None:
        members = ref if private is None else embed_folder(
            private, embed, name="--private", on_progress=on_progress, engine=engine
        )  # fmt: skip
        non = embed_folder(holdout, embed, name="--holdout", on_progress=on_progress, engine=engine)
        mem = memorisation(syn.features, members.features, non.features, seed=seed)
        for pair in mem["pairs"]:  # type: ignore[attr-defined]
            pair["synthetic_file"] = syn.relpaths[pair["synthetic"]]
            pair["member_file"] = members.relpaths[pair["member"]]
        result["privacy_audit"] = {
            "label": AUDIT_LABEL,
            "members": {"folder": str(members.folder), "images": len(members)},
            "nonmembers": {"folder": str(holdout), "images": len(non)},
            "memorisation": mem,
            "membership_inference": membership_inference(
                syn.features, members.features, non.features, seed=seed
            ),
        }
    return result
