"""A run folder that was damaged, copied or resumed never yields a second release for one
iteration, a dry run deletes nothing, and `privacy.public_n` keeps the exact N unpublished
(issue 13 items 2, 4 and 7). Text modality: the same pipeline, without the image models."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from penumbra.cli import main

N_TEXTS = 37  # an N that does not appear by chance in the tiny run's printed numbers


def _sets(fields: list[str]) -> list[str]:
    return [arg for field in fields for arg in ("--set", field)]


TINY_TEXT = [
    "modality=text",
    "pe.iterations=3",
    "pe.population=6",
    "output.num_images=4",
    "domain=a short product review",
    "prompts.max_new_tokens=20",
    "seed=3",
]


def _private_texts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "reviews.jsonl"
    lines = [
        json.dumps({"text": f"order {i}: the blue raincoat kept me dry"}) for i in range(N_TEXTS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _snapshot(run: Path) -> dict[str, str]:
    return {
        p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


def _run_start(run: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((run / "ledger" / "entries.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    private = _private_texts(root / "private-data")
    out = root / "run"
    code = main(["synthesize", "--private", str(private), "--epsilon", "8", "--out", str(out),
                 *_sets(TINY_TEXT)])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture
def copy(finished: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def test_deleted_release_is_rebuilt_not_redrawn(copy: Path) -> None:
    before = (copy / "candidates" / "release-001.json").read_bytes()
    (copy / "candidates" / "release-001.json").unlink()
    assert main(["synthesize", "--resume", str(copy)]) == 0
    assert (copy / "candidates" / "release-001.json").read_bytes() == before
    entries = [json.loads(x) for x in (copy / "ledger" / "entries.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in entries if e["type"] == "release"] == [0, 1, 2]


def test_release_missing_from_file_and_log_is_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = copy / "ledger" / "entries.jsonl"
    lines = entries.read_text().splitlines(keepends=True)
    keep = [x for x in lines if json.loads(x)["type"] in ("run_start",)]
    entries.write_text("".join(keep))  # the log cut back to before the releases
    (copy / "candidates" / "release-001.json").unlink()
    capsys.readouterr()
    assert main(["synthesize", "--resume", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "removed or changed" in err
    assert not (copy / "candidates" / "release-001.json").exists()


def test_dry_run_of_an_existing_run_deletes_nothing(copy: Path) -> None:
    before = _snapshot(copy)
    assert (copy / "private" / "ledger.key").is_file()
    assert main(["synthesize", "--resume", str(copy), "--dry-run"]) == 0
    assert _snapshot(copy) == before


def test_every_run_records_its_neighbouring_convention(finished: Path) -> None:
    start = _run_start(finished)
    assert start["n_private"] == N_TEXTS and start["public_n"] is None
    assert start["neighbouring"] == "add/remove one image; the number of images is published"
    assert start["accountant"] == "discrete-gaussian-pld"
    assert "the number of images is published" in (finished / "report.html").read_text()


def test_public_n_keeps_the_exact_count_unpublished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = _private_texts(tmp_path / "data")
    out = tmp_path / "run"
    args = ["synthesize", "--private", str(private), "--epsilon", "8", "--out", str(out),
            *_sets([*TINY_TEXT, "pe.iterations=1", "privacy.public_n=100"])]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr()
    start = _run_start(out)
    assert start["n_private"] is None and start["public_n"] == 100
    assert "not published" in start["neighbouring"]
    assert start["delta"] == pytest.approx(1 / (100 * math.log(100)))  # δ from the bound
    assert "not published" in printed.out
    public_files = [p for p in out.rglob("*") if p.is_file() and "private" not in p.parts]
    needles = [f'"n_private":{N_TEXTS}', f"N = {N_TEXTS}", f"N={N_TEXTS}", f" {N_TEXTS} "]
    for text in [printed.out, printed.err, *(p.read_text(errors="ignore") for p in public_files)]:
        assert not any(n in text for n in needles)
    # a private set larger than the public bound is refused, without printing its size
    small = ["synthesize", "--private", str(private), "--epsilon", "8", "--out",
             str(tmp_path / "small"), *_sets([*TINY_TEXT, "privacy.public_n=20"])]  # fmt: skip
    assert main(small) == 2
    err = capsys.readouterr().err
    assert "privacy.public_n=20" in err and str(N_TEXTS) not in err


def test_private_data_to_a_remote_endpoint_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = _private_texts(tmp_path / "data")
    remote = "openai:text-embedding-3-small@https://api.example.com/v1"
    fields = [*TINY_TEXT, f"models.text_embedder={remote}"]
    args = ["synthesize", "--private", str(private), "--epsilon", "8", "--out",
            str(tmp_path / "run"), *_sets(fields)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "models.text_embedder" in err and "privacy.allow_remote_private" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_remote_opt_in_is_recorded_in_the_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from penumbra.spti import pipeline

    opted = ["models.text_embedder: openai:embed@https://embed.example.org/v1"]
    seen = []

    def fake_require(cfg):  # type: ignore[no-untyped-def]
        seen.append(cfg.privacy.allow_remote_private)
        return opted

    # the run itself embeds locally; only what the check reports is under test here
    monkeypatch.setattr(pipeline, "require_local_private", fake_require)
    private = _private_texts(tmp_path / "data")
    out = tmp_path / "run"
    fields = [*TINY_TEXT, "pe.iterations=1", "privacy.allow_remote_private=true"]
    args = ["synthesize", "--private", str(private), "--epsilon", "8", "--out", str(out),
            *_sets(fields)]  # fmt: skip
    assert main(args) == 0
    assert seen == [True]
    assert _run_start(out)["remote_private"] == opted


def test_finished_run_with_a_ledger_cut_back_is_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reviewer's scenario C: a finished run's log cut back to an earlier signed checkpoint
    (consistent, so only the run's outputs betray it) and the later release file deleted."""
    entries = copy / "ledger" / "entries.jsonl"
    lines = entries.read_bytes().splitlines(keepends=True)
    entries.write_bytes(b"".join(lines[:2]))  # run_start and release 0
    for path in (copy / "ledger" / "checkpoints").iterdir():
        if int(path.name) > 2:
            path.unlink()
    (copy / "candidates" / "release-002.json").unlink()
    capsys.readouterr()
    assert main(["synthesize", "--resume", str(copy)]) == 2
    assert "cut back" in capsys.readouterr().err
    assert not (copy / "candidates" / "release-002.json").exists()


def test_a_run_another_process_holds_is_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two processes resuming one run would both draw noise for the next iteration (found in
    review); the second is refused while the first holds the run."""
    import subprocess
    import sys

    from penumbra.durable import run_lock

    (copy / "candidates" / "release-002.json").unlink()  # something left to resume
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pathlib import Path\nfrom penumbra.durable import run_lock\n"
         f"with run_lock(Path({str(copy)!r})):\n    print('held', flush=True)\n"
         "    sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["synthesize", "--resume", str(copy)]) == 2
        assert "another penumbra process" in capsys.readouterr().err
    finally:
        holder.communicate("\n", timeout=30)
    with run_lock(copy):  # released when its holder ended
        pass
