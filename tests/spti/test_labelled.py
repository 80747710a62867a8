"""Labelled runs: one PE per class, DP class counts (or public fractions), labelled outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from penumbra.cli import main
from penumbra.data import demo_private_set
from penumbra.data.imagefolder import read_imagefolder_metadata, write_imagefolder
from penumbra.ledger.verify import verify_run
from penumbra.pe.classes import class_output_counts, class_weights
from penumbra.pe.evolve import EvolveSettings, RunStateError
from penumbra.pe.plan import Plan
from penumbra.privacy import discrete_gaussian_epsilon, sampling_sigma
from penumbra.spti.labelled import release_class_counts
from penumbra.spti.pipeline import Run, synthesize
from penumbra.spti.slot_api import SlotForm

TINY = [
    "pe.iterations=2",
    "pe.population=5",
    "output.num_images=7",
    "domain=a photo of a clothing item",
    "prompts.max_new_tokens=20",
    "seed=3",
]
# Fashion-MNIST labels of the demo set → the words the class's captions are written about
NAMES = {1: "pair of trousers", 5: "pair of sandals", 8: "bag"}


def _members(per_class: int) -> list[tuple[Any, int]]:
    demo = demo_private_set(600, seed=2)
    taken = {c: 0 for c in NAMES}
    out = []
    for image, label in zip(demo.images, demo.labels, strict=True):
        c = int(label)
        if c in NAMES and taken[c] < per_class:
            out.append((image, c))
            taken[c] += 1
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class subfolders named by the class words."""
    root = tmp_path_factory.mktemp("labelled") / "images"
    for i, (image, c) in enumerate(_members(15)):
        (root / NAMES[c]).mkdir(parents=True, exist_ok=True)
        image.save(root / NAMES[c] / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def metadata_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An imagefolder with integer labels (Fashion-MNIST numbers) and class names."""
    root = tmp_path_factory.mktemp("labelled") / "meta"
    order = sorted(NAMES)
    items = [(image, {"label": order.index(c), "class_name": NAMES[c]})
             for image, c in _members(12)]  # fmt: skip
    write_imagefolder(root, items)
    return root


class FakeLedger:
    """What release_class_counts needs of a ledger: find and append."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.dir = Path("ledger")

    def find(self, kind: str) -> list[tuple[int, dict[str, Any]]]:
        return [(i, e) for i, e in enumerate(self.entries) if e["type"] == kind]

    def append(self, kind: str, fields: dict[str, Any]) -> int:
        self.entries.append({"type": kind, **fields})
        return len(self.entries) - 1


def _settings(noise_seed: int | None, k: int = 1) -> EvolveSettings:
    return EvolveSettings(epsilon=1.0, delta=1e-5, iterations=3, population=(4,),
                          num_outputs=4, k=k, noise_seed=noise_seed, extra=1)  # fmt: skip


def test_class_counts_carry_the_votes_noise_and_are_drawn_once(tmp_path: Path) -> None:
    """Noisy − clean counts over 3000 independent releases (fixed seeds 0..2999) are centred
    N_Z(0, s²) with s = σ√k. Bounds: |mean| < 4.5 standard errors (false failure ~7e-6 per
    class) and sample variance within ±12% of s² (for 9000 draws the variance's relative
    standard error is √(2/9000) = 1.5%, so ±12% is ~8 SE: false failure < 1e-12)."""
    labels = np.repeat(np.arange(3), [40, 7, 0])
    sigma, k = 2.5, 2
    s = float(sampling_sigma(sigma, k))
    draws = []
    for seed in range(3000):
        ledger = FakeLedger()
        fresh = tmp_path / "fresh"
        draws.append(release_class_counts(ledger, labels, 3, _settings(seed, k), sigma, fresh))
    noise = np.array(draws) - np.array([40, 7, 0])
    assert np.all(np.abs(noise.mean(axis=0)) < 4.5 * s / np.sqrt(3000))
    assert abs(noise.var() / s**2 - 1) < 0.12
    # logged before use, with the one-more-composition ε; a resumed run reuses it
    ledger = FakeLedger()
    first = release_class_counts(ledger, labels, 3, _settings(None, k), sigma, tmp_path)
    again = release_class_counts(ledger, labels, 3, _settings(None, k), sigma, tmp_path)
    assert first == again and len(ledger.find("class_counts")) == 1
    # a ledger cut back to before the counts, in a run whose classes started: refused
    (tmp_path / "candidates" / "class-000").mkdir(parents=True)
    with pytest.raises(RunStateError, match="holds no class counts"):
        release_class_counts(FakeLedger(), labels, 3, _settings(None, k), sigma, tmp_path)
    entry = ledger.entries[0]
    assert entry["noisy_counts"] == first and entry["fixed_noise_seed"] is False
    assert entry["cumulative_epsilon"] == pytest.approx(
        discrete_gaussian_epsilon(sigma, 1, 1e-5, 1) if k == 1 else
        discrete_gaussian_epsilon(sigma, 0, 1e-5, k, extra=1)
    )  # fmt: skip


def _releases(out: Path) -> list[dict[str, Any]]:
    lines = (out / "ledger" / "entries.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_labelled_run_from_class_folders(folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = synthesize(folders, 8.0, out=out, overrides=[*TINY, "data.labels=folders"])
    assert isinstance(run, Run)
    entries = _releases(out)
    start = entries[0]
    classes = sorted(NAMES.values())
    assert start["classes"] == classes and start["class_counts"] == "dp"
    counts = [e for e in entries if e["type"] == "class_counts"]
    releases = [e for e in entries if e["type"] == "release"]
    assert len(counts) == 1 and entries.index(counts[0]) == 1
    # lock-step: iteration t of every class before t + 1 of any
    assert [(e["iteration"], e["label"]) for e in releases] == [
        (t, c) for t in range(2) for c in range(3)
    ]
    # parallel composition: the run spends one class's ε (2 releases + the counts), not 3×
    sigma, delta = start["sigma"], start["delta"]
    one_class = discrete_gaussian_epsilon(sigma, 2, delta, 1, extra=1)
    assert run.epsilon_spent == pytest.approx(one_class) and one_class <= 8.0
    assert discrete_gaussian_epsilon(sigma, 6, delta, 1, extra=3) > 8.0
    # every class present, in the numbers the DP counts decide; candidates of their own class
    meta = read_imagefolder_metadata(out / "synthetic")
    per_class = [sum(1 for m in meta if m["label"] == c) for c in range(3)]
    expected = class_output_counts(
        class_weights(classes, noisy_counts=counts[0]["noisy_counts"]), 7
    )
    assert per_class == expected and min(per_class) >= 1
    for m in meta:
        assert m["class_name"] == classes[m["label"]]
        assert m["candidate_id"].startswith(f"c{m['label']}/")
    assert sorted(p.name for p in (out / "candidates").iterdir()) == [
        "class-000", "class-001", "class-002"
    ]  # fmt: skip
    from datasets import load_dataset

    dataset = load_dataset("imagefolder", data_dir=str(out / "synthetic"), split="train")
    assert {"label", "class_name"} <= set(dataset.column_names)
    assert sorted(dataset["label"]) == sorted(m["label"] for m in meta)
    report = (out / "report.html").read_text()
    assert "parallel composition" in report and "pair of sandals" in report
    verified = verify_run(out)
    assert verified.ok, verified.failures
    assert verified.receipt["composition"] == "parallel over classes"
    assert verified.receipt["class_output_counts"] == expected
    assert verified.receipt["epsilon_spent"] == pytest.approx(one_class)


def test_public_fractions_and_metadata_labels(metadata_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    fractions = "{pair of trousers: 0.5, pair of sandals: 0.25, bag: 0.25}"
    run = synthesize(
        metadata_set, 8.0, out=out,
        overrides=[*TINY, "data.labels=metadata", f"output.class_fractions={fractions}",
                   "prompts.slots={tone: ['', dark, light]}"],  # the labelled demo's form
    )  # fmt: skip
    assert isinstance(run, Run)
    entries = _releases(out)
    assert entries[0]["class_counts"] == "public"
    assert not [e for e in entries if e["type"] == "class_counts"]
    # no count release: the run's ε is 2 releases at σ
    assert run.epsilon_spent == pytest.approx(
        discrete_gaussian_epsilon(entries[0]["sigma"], 2, entries[0]["delta"])
    )
    meta = read_imagefolder_metadata(out / "synthetic")
    # labels keep the input's numbers: 0 trousers, 1 sandals, 2 bag; 7 = 1 each + 4 ∝ fractions
    assert entries[0]["classes"] == ["pair of trousers", "pair of sandals", "bag"]
    assert [sum(1 for m in meta if m["label"] == c) for c in range(3)] == [3, 2, 2]
    form = SlotForm((("tone", ("", "dark", "light")),),
                    ("a photo of {item}", "{item}", "a picture of {item}"))  # fmt: skip
    for m in meta:  # slot-form captions, each about its own class's words
        assert form.parse(m["caption"], [entries[0]["classes"][m["label"]]])
    assert main(["verify", str(out), "--trust-run-key"]) == 0


def test_labelled_dry_run_plans_per_class(folders: Path, tmp_path: Path) -> None:
    plan = synthesize(folders, 8.0, out=tmp_path / "p",
                      overrides=[*TINY, "data.labels=folders"], dry_run=True)  # fmt: skip
    assert isinstance(plan, Plan)
    assert any("3 classes: one PE per class" in line for line in plan.lines())
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "metadata"], "metadata.jsonl: missing"),
        (["--labels", "folders", "--set", "output.class_fractions={bag: 1.0}"],
         "output.class_fractions lacks"),
        (["--labels", "folders", "--set", "output.num_images=2"], "cannot hold one image"),
        (["--labels", "folders", "--set", "data.classes=[bag]"], "is not in data.classes"),
        (["--labels", "pixels"], "data.labels"),
        (["--set", "output.class_fractions={bag: 1.0}"], "needs labels"),
    ],
)  # fmt: skip
def test_bad_labelled_input_is_one_line_exit_2(
    folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
    message: str,
) -> None:  # fmt: skip
    code = main(["synthesize", "--private", str(folders), "--epsilon", "8",
                 "--out", str(tmp_path / "bad"), *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad" / "ledger").exists()
