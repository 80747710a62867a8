"""The demo private set: shipped, deterministic, and skewed as documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.data import demo_private_set
from penumbra.data.demo import FOOTWEAR


def test_deterministic() -> None:
    a, b = demo_private_set(300, seed=4), demo_private_set(300, seed=4)
    assert np.array_equal(a.labels, b.labels)
    assert all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(a.images, b.images, strict=True)
    )
    assert not np.array_equal(a.labels, demo_private_set(300, seed=5).labels)


def test_skewed_as_documented() -> None:
    full = demo_private_set()
    assert len(full.images) == 5000 and full.images[0].size == (28, 28)
    share = np.bincount(full.labels, minlength=10) / len(full.labels)
    assert share[list(FOOTWEAR)].sum() > 0.5  # footwear: 54% (uniform would be 30%)
    assert all(share[c] < 0.08 for c in range(10) if c not in FOOTWEAR)
    darkness = np.bincount(full.darkness + 1, minlength=3) / len(full.darkness)
    assert darkness[0] > 0.45 and darkness[2] < 0.2  # dark over-represented, light under


def test_write_and_bounds(tmp_path: Path) -> None:
    subset = demo_private_set(12, seed=0)
    folder = subset.write(tmp_path / "private")
    assert len(list(folder.glob("*.png"))) == 12
    with pytest.raises(ValueError, match="n must be in"):
        demo_private_set(5001)


def test_shipped_file_is_small_and_licensed() -> None:
    from importlib import resources

    assets = resources.files("penumbra.data").joinpath("assets")
    assert assets.joinpath("demo_private.npz").stat().st_size <= 5 * 1024 * 1024  # type: ignore[attr-defined]
    assert "MIT" in assets.joinpath("demo_private.LICENSE").read_text()


def test_holdout_is_the_rest_of_the_pool_and_disjoint_from_the_private_set() -> None:
    from penumbra.data import demo_holdout_set

    members, holdout = demo_private_set(4000, seed=0), demo_holdout_set(4000, seed=0)
    assert len(holdout.images) == 1000
    seen = {m.tobytes() for m in (np.asarray(im) for im in members.images)}
    assert not any(np.asarray(im).tobytes() in seen for im in holdout.images[:200])
    # same distribution: class shares within 4 points of the members' (1000-sample noise ~1.3)
    share = np.bincount(holdout.labels, minlength=10) / 1000
    assert np.abs(share - np.bincount(members.labels, minlength=10) / 4000).max() < 0.04
    with pytest.raises(ValueError, match="n_private"):
        demo_holdout_set(5000)


def test_demo_evaluation_goes_through_evaluate_run_with_its_class_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's class-mix table reaches evaluation.json only through evaluate_run, which
    keeps aggregates (labelled not DP) at the run root and the rest under private/."""
    import penumbra.evaluate.run_eval as run_eval
    import penumbra.ledger.tree as tree
    import penumbra.report.html as report_html
    from penumbra.spti import demo

    calls: dict[str, object] = {}
    mix = {"first random population": 0.4, "synthetic images": 0.2, "uniform mix": 0.3}
    monkeypatch.setattr(demo, "materialise_private", lambda *a, **k: None)
    monkeypatch.setattr(demo, "synthesize", lambda *a, **k: "run")
    monkeypatch.setattr(demo, "Run", str)
    monkeypatch.setattr(demo, "class_mix_report", lambda out: mix)
    monkeypatch.setattr(demo, "dark_share_report", lambda out: {"max_gap": 0.1})
    monkeypatch.setattr(demo, "demo_renderer", lambda out: None)
    monkeypatch.setattr(report_html, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(tree, "record_published", lambda *a, **k: [])

    def fake_evaluate_run(out: Path, **kwargs: object) -> dict[str, object]:
        calls.update(kwargs)
        return {"not_dp": "label"}

    monkeypatch.setattr(run_eval, "evaluate_run", fake_evaluate_run)
    _run, got_mix, evaluation = demo.run_demo(tmp_path, epsilon=1.0, console=None)
    assert got_mix == mix and evaluation == {"not_dp": "label"}
    assert calls["extra"] == {
        "class_mix_total_variation_to_private": mix,
        "dark_share_within_class": {"max_gap": 0.1},
    }
    assert not (tmp_path / "evaluation.json").exists()  # written by evaluate_run alone


def test_labelled_demo_is_a_labelled_run_evaluated_by_tstr_on_held_out_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo --labelled: the demo set's integer labels under the public class words; TSTR
    trains on the synthetic set and tests on the held-out images, beside as many real private
    images, and its picture and aggregates reach evaluation.json through evaluate_run."""
    import penumbra.evaluate.run_eval as run_eval
    import penumbra.evaluate.tstr as tstr_module
    import penumbra.ledger.tree as tree
    import penumbra.report.html as report_html
    from penumbra.data.imagefolder import read_imagefolder_metadata
    from penumbra.spti import demo

    config = demo.labelled_demo_config(1.0)
    assert config.data.labels == "metadata" and config.data.classes == demo.CLASS_WORDS
    assert config.prompts.categories == [] and config.output.class_fractions is None
    seen: dict[str, object] = {}

    def fake_synthesize(private: Path, epsilon: float, **kwargs: object) -> str:
        seen["config"] = kwargs["config"]
        return "run"

    monkeypatch.setattr(demo, "demo_private_set", lambda n: demo_private_set(30, seed=1))
    monkeypatch.setattr(demo, "demo_holdout_set", lambda n: demo_private_set(20, seed=2))
    monkeypatch.setattr(demo, "synthesize", fake_synthesize)
    monkeypatch.setattr(demo, "Run", str)
    monkeypatch.setattr(demo, "demo_renderer", lambda out: None)
    monkeypatch.setattr(report_html, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(tree, "record_published", lambda *a, **k: [])
    result = {"synthetic": {"accuracy": 0.7}, "real_same_number": {"accuracy": 0.8}}
    monkeypatch.setattr(tstr_module, "tstr", lambda *a, **k: seen.update(tstr=(a, k)) or result)
    monkeypatch.setattr(tstr_module, "confusion_picture", lambda r, path: seen.update(png=path))
    monkeypatch.setattr(run_eval, "evaluate_run", lambda out, **k: seen.update(eval=k) or k)
    _run, evaluation = demo.run_labelled_demo(tmp_path, epsilon=1.0, console=None)
    rows = read_imagefolder_metadata(tmp_path / "private" / "demo_holdout")
    assert all(r["class_name"] == demo.CLASS_WORDS[r["label"]] for r in rows)
    args, kwargs = seen["tstr"]  # type: ignore[misc]
    assert args == (tmp_path / "synthetic", tmp_path / "private" / "demo_holdout")
    assert kwargs["real_train"] == tmp_path / "private" / "demo_private"
    assert seen["png"] == tmp_path / demo.TSTR_PICTURE
    assert evaluation["extra"] == {
        "tstr": result, "public_artifacts": {"tstr_confusion": "evaluation/tstr_confusion.png"}
    }  # fmt: skip


def test_tone_cuts_reproduce_the_shipped_darkness_levels() -> None:
    """The ruler recovered from the pool labels every pool image as the train-split terciles
    did."""
    from penumbra.data.demo import _load_asset
    from penumbra.evaluate.fashion_tones import tone_levels

    images, labels, darkness = _load_asset()
    levels = tone_levels([Image.fromarray(i) for i in images], labels)
    np.testing.assert_array_equal(levels - 1, darkness)


def test_dark_share_report_sees_the_private_skew(tmp_path: Path) -> None:
    """A synthetic set that copies the private images carries its dark-item shares; one made
    of the lightest items only does not (evaluation metric of issue 14)."""
    from penumbra.data.demo import demo_holdout_set
    from penumbra.data.fashion import measure
    from penumbra.data.imagefolder import write_imagefolder
    from penumbra.spti.demo import dark_share_report, materialise_private

    private = demo_private_set(400, seed=1)
    materialise_private(tmp_path / "private" / "demo_private", private)
    materialise_private(tmp_path / "private" / "demo_holdout", demo_holdout_set(4000))
    items = [(image, {"caption": "copy"}) for image in private.images]
    write_imagefolder(tmp_path / "synthetic", items, overwrite=True)
    copied = dark_share_report(tmp_path)
    assert copied["max_gap"] is not None and copied["max_gap"] < 0.2
    # held-out real images: same distribution, so close on average (400 private images leave
    # ~30 per small class, hence no per-class bound)
    gaps = np.abs(np.array(copied["held_out"]) - np.array(copied["private"]))
    assert gaps.mean() < 0.12 and copied["max_gap_held_out"] == gaps.max()
    # the same images shown at 56×56 (the generator's frame at image_size 56, nearest) measure
    # about the same: the ruler takes any size as the whole frame (at a non-integer factor,
    # resampling blurs the garment's edge into its mean: compare tones at the data's 28 px)
    upscaled = [(image.resize((56, 56), Image.Resampling.NEAREST), {"caption": "56 px copy"})
                for image in private.images]  # fmt: skip
    write_imagefolder(tmp_path / "synthetic", upscaled, overwrite=True)
    shares = np.array(dark_share_report(tmp_path)["synthetic"], dtype=float)
    assert np.abs(shares - np.array(copied["synthetic"], dtype=float)).max() < 0.05
    assert copied["tone_mix_tv"] < 0.1
    gray = np.stack([np.asarray(i.convert("L")) for i in private.images])
    light = np.argsort(measure(gray)[0])[-150:]
    items = [(private.images[i], {"caption": "light"}) for i in light]
    write_imagefolder(tmp_path / "synthetic", items, overwrite=True)
    lightest = dark_share_report(tmp_path)
    assert lightest["max_gap"] > 0.25 and lightest["tone_mix_tv"] > 0.3
