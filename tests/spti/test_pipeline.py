"""SPTI end to end on tiny settings: verifiable runs, no private leaks, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from penumbra.cli import main
from penumbra.data import demo_private_set
from penumbra.ledger.verify import verify_run
from penumbra.pe.plan import Plan
from penumbra.spti.pipeline import Run, synthesize

ROOT = Path(__file__).resolve().parents[2]


def _sets(fields: list[str]) -> list[str]:
    return [arg for field in fields for arg in ("--set", field)]


TINY = [
    "pe.iterations=2",
    "pe.population=6",
    "output.num_images=4",
    "domain=a photo of a clothing item",
    "prompts.max_new_tokens=20",
    "seed=3",
]


SLOTS = [
    "prompts.slots={tone: ['', dark, light], fit: ['', slim, wide]}",
    "prompts.categories=[coat, dress, bag, pair of trousers]",
]


COMPOSITE = [
    "models.image_embedder=builtin:composite",
    "models.options={'builtin:composite': {parts: [{uri: builtin:effnet-lite0}, "
    "{uri: builtin:pixels, weight: 2, options: {grid: 8}, normalise: false}]}}",
]


@pytest.fixture(scope="module")
def private_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_private_set(40, seed=2).write(tmp_path_factory.mktemp("private") / "images")


def _files_outside_private(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.is_file() and "private" not in p.relative_to(run).parts]


def _check_provenance(out: Path, tmp_path: Path) -> None:
    """The policy ran and `verify` re-checks it (and the C2PA manifests) from the files;
    `identify` names the run from a JPEG copy; a face pasted in afterwards fails verify."""
    import contextlib
    import io

    from PIL import Image
    from skimage import data

    entries = [json.loads(line) for line in (out / "ledger" / "entries.jsonl").open()]
    kinds = [e["type"] for e in entries]
    assert kinds.index("policy") < kinds.index("outputs")
    assert entries[kinds.index("policy")]["faces"]["action"] == "withhold"  # a clothing domain
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["verify", str(out), "--trust-run-key", "--json"]) == 0
    receipt = json.loads(stdout.getvalue())["receipt"]
    assert receipt["policy"]["outputs_rechecked"] == 4
    assert receipt["content_credentials"].startswith("4 read back, bound and naming run")
    copy = tmp_path / "copy.jpg"
    Image.open(out / "synthetic" / "000002.png").convert("RGB").save(copy, quality=85)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["identify", str(copy), str(out / "synthetic" / "000001.png"),
                     "--ledger", str(out), "--json"]) == 0  # fmt: skip
    found = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [f["run"] for f in found] == [str(out)] * 2
    assert [f["output"] for f in found] == [None, "synthetic/000001.png"]
    face = Image.fromarray(data.astronaut()[20:230, 140:330]).resize((150, 165))
    target = out / "synthetic" / "000000.png"
    pasted = Image.open(target).convert("RGB")
    pasted.paste(face, (50, 40))
    pasted.save(target)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["verify", str(out), "--trust-run-key", "--json"]) == 1
    failures = json.loads(stdout.getvalue())["failures"]
    assert any(f["location"] == "synthetic/000000.png" and f["message"].startswith("faces:")
               for f in failures), failures  # fmt: skip


@pytest.mark.parametrize("voting", ["image", "text"])
def test_tiny_run_verifies_and_leaks_nothing(
    private_dir: Path, tmp_path: Path, voting: str
) -> None:
    out = tmp_path / "run"
    extra = []
    if voting == "image":  # also label the outputs with C2PA Content Credentials
        from penumbra.anonymize.credentials import make_test_signer

        cert, key = make_test_signer(tmp_path / "signer")
        extra = [f"output.content_credentials.cert={cert}", f"output.content_credentials.key={key}"]
        extra += SLOTS  # slot-form captions (the demo's); text voting keeps free-form captions
        extra += COMPOSITE  # votes in a composite space: EffNet features beside grey levels
    key = None
    if voting == "image":  # a fixed key, so a fixed mark: the JPEG copy below reads the same
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = tmp_path / "signing.pem"
        key.write_bytes(Ed25519PrivateKey.from_private_bytes(bytes(range(32))).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))  # fmt: skip
    run = synthesize(private_dir, 8.0, out=out, overrides=[*TINY, f"voting={voting}", *extra],
                     signing_key=key)  # fmt: skip
    assert isinstance(run, Run) and run.iterations == 2 and run.num_images == 4
    if voting == "image":
        from penumbra.anonymize.credentials import read_manifest

        anchors = (tmp_path / "signer" / "ca.pem").read_text()
        for image in sorted((out / "synthetic").glob("*.png")):
            store = read_manifest(image.read_bytes(), "image/png", trust_anchors=anchors)
            assert store["validation_state"] == "Trusted", store.get("validation_status")
            text = json.dumps(store)
            assert "trainedAlgorithmicMedia" in text and "thumbnail" not in text.lower()
    assert run.epsilon_spent <= 8.0
    if voting == "image":  # every caption is of the slot form, none needed a retry
        from penumbra.spti.slot_api import SlotForm

        form = SlotForm((("tone", ("", "dark", "light")), ("fit", ("", "slim", "wide"))),
                        ("a photo of {item}", "{item}", "a picture of {item}"))  # fmt: skip
        rows = [json.loads(line) for line in (out / "synthetic" / "metadata.jsonl").open()]
        for row in rows:
            form.parse(row["caption"], ["coat", "dress", "bag", "pair of trousers"])
    report = verify_run(out)
    assert report.ok, report.failures
    if voting == "image":
        _check_provenance(out, tmp_path)
    from datasets import load_dataset

    dataset = load_dataset("imagefolder", data_dir=str(out / "synthetic"), split="train")
    assert len(dataset) == 4 and {"caption", "iteration", "candidate_id", "parent_chain"} <= set(
        dataset.column_names
    )
    assert (out / "report.html").read_text().count("<img") >= 4
    assert oct((out / "private").stat().st_mode)[-3:] == "700"
    # no private embedding bytes and no private caption outside private/
    embeddings = [np.load(p) for p in (out / "private").glob("embeddings-*.npy")]
    assert embeddings and embeddings[0].shape[0] == 40
    assert embeddings[0].shape[1] == (1280 + 64 if voting == "image" else 384)
    needles = [embeddings[0][i].tobytes()[:32] for i in range(5)]
    captions: list[str] = []
    for path in (out / "private").glob("captions-*.json"):
        captions += json.loads(path.read_text())
    assert (voting == "text") == bool(captions)
    for path in _files_outside_private(out):
        data = path.read_bytes()
        assert not any(n in data for n in needles), path
        text = data.decode("utf-8", errors="ignore")
        assert not any(c in text for c in set(captions)), path
    assert str(private_dir) not in (out / "run.yaml").read_text()


def test_dry_run_prints_the_plan(private_dir: Path, tmp_path: Path) -> None:
    plan = synthesize(private_dir, 8.0, out=tmp_path / "plan", overrides=TINY, dry_run=True)
    assert isinstance(plan, Plan) and plan.random_calls == 6
    assert not (tmp_path / "plan").exists()


def test_auto_population_expects_two_sigma_votes_per_candidate(
    private_dir: Path, tmp_path: Path
) -> None:
    """pe.population=auto sizes the population from the accounted N and σ, never from a
    hidden count, and stays within pe.max_population."""
    from penumbra.privacy import default_delta, discrete_gaussian_sigma
    from penumbra.spti.pipeline import recommended_population

    sigma = discrete_gaussian_sigma(1.0, default_delta(4000), 5, 1)
    assert recommended_population(4000, sigma, most=1000) == int(4000 // (2 * sigma))
    assert recommended_population(4000, 1e-3, most=300) == 300
    assert recommended_population(10, 50.0, most=300) == 2
    auto = [o for o in TINY if not o.startswith("pe.population")] + ["pe.population=auto"]
    plan = synthesize(private_dir, 8.0, out=tmp_path / "p", overrides=auto, dry_run=True)
    assert isinstance(plan, Plan)
    assert plan.sizes[0] == min(1000, int(40 // (2 * plan.sigma)))
    assert plan.votes_per_candidate >= 2 * plan.sigma
    # with privacy.public_n the public bound sizes it: the same plan for any set below it
    public = [*auto, "privacy.public_n=400"]
    big = synthesize(private_dir, 8.0, out=tmp_path / "q", overrides=public, dry_run=True)
    assert isinstance(big, Plan) and big.sizes[0] == int(400 // (2 * big.sigma))
    capped = synthesize(private_dir, 8.0, out=tmp_path / "r", dry_run=True,
                        overrides=[*public, "pe.max_population=7"])  # fmt: skip
    assert isinstance(capped, Plan) and capped.sizes == [7, 7]
    assert "population: auto → 7 (N/2σ = " in "\n".join(capped.lines())
    assert "capped at pe.max_population = 7" in "\n".join(capped.lines())


def test_epsilon_too_small_is_refused_with_the_smallest_workable(
    private_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["synthesize", "--private", str(private_dir), "--epsilon", "0.05",
         "--out", str(tmp_path / "r"), *_sets(TINY)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "too small for N=40" in err and "--epsilon >=" in err


def test_bad_private_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(
            ["synthesize", "--private", str(empty), "--epsilon", "1", "--out", str(tmp_path / "a")]
        )
        == 2
    )
    assert "no images found" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    assert (
        main(
            ["synthesize", "--private", str(broken), "--epsilon", "1", "--out", str(tmp_path / "b")]
        )
        == 2
    )
    assert "none of the 1 image files could be read" in capsys.readouterr().err
    assert main(["synthesize", "--epsilon", "1", "--out", str(tmp_path / "c")]) == 2
    assert "--private" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_and_resume(private_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [sys.executable, "-m", "penumbra", "synthesize", "--private", str(private_dir),
            "--epsilon", "8", "--out", str(out), *_sets([*TINY, "pe.iterations=3"])]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "candidates" / "release-000.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = (out / "candidates" / "release-000.json").read_bytes()
    resumed = subprocess.run(
        [sys.executable, "-m", "penumbra", "synthesize", "--resume", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (out / "candidates" / "release-000.json").read_bytes() == first  # no new noise
    report = verify_run(out)
    assert report.ok, report.failures
    assert len(report.receipt["epsilon_per_iteration"]) == 3


def test_private_texts_aug_pe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private = tmp_path / "reviews.jsonl"
    secret = [f"my order {i} of red running shoes arrived late but fits well" for i in range(40)]
    private.write_text("".join(json.dumps({"text": t}) + "\n" for t in secret), encoding="utf-8")
    out = tmp_path / "run"
    code = main(["synthesize", "--modality", "text", "--private", str(private), "--epsilon", "8",
                 "--out", str(out), *_sets([*TINY, "domain=a short product review"])])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = [
        json.loads(line) for line in (out / "synthetic" / "texts.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 4 and all(r["text"] and r["parent_chain"] for r in rows)
    # complete texts, each a variation of a parent drawn in proportion to the last release
    # (largest remainder): the final population
    from penumbra.pe.mechanism import apply_threshold, apportion

    last = json.loads(sorted((out / "candidates").glob("release-*.json"))[-1].read_text())
    shares = apportion(apply_threshold(np.array(last["noisy"]), last["threshold"]), 4)
    drawn = [sum(r["parent_chain"][1] == cid for r in rows) for cid in last["candidate_ids"]]
    assert drawn == shares.tolist()
    assert len({r["candidate_id"] for r in rows}) == 4
    assert all(r["text"].split()[-1].lower() not in ("a", "the", "with", "and") for r in rows)
    assert verify_run(out).ok
    for path in _files_outside_private(out):
        text = path.read_bytes().decode("utf-8", errors="ignore")
        assert not any(t in text for t in secret), path
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n', encoding="utf-8")
    assert main(["synthesize", "--modality", "text", "--private", str(bad), "--epsilon", "8",
                 "--out", str(tmp_path / "bad")]) == 2  # fmt: skip
    assert "bad.jsonl:2" in capsys.readouterr().err
