"""`penumbra synthesize` on a local Ray instance: the same run as in this process, a driver
killed mid-run resumed on another engine without new noise, and a separately started
`ray start --head` cluster on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from penumbra.data import demo_private_set
from penumbra.ledger.verify import verify_run
from tests.spti.test_pipeline import TINY as PIPELINE_TINY

pytest.importorskip("ray")

# the pipeline tests' tiny run, with the same torch threads on both engines: bit-identical
TINY = [*PIPELINE_TINY, "compute.cpus_per_worker=1"]
TOKEN = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
ON_RAY = ["compute.engine=ray", "compute.address=local", "compute.workers=2"]


@pytest.fixture(scope="module")
def private_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_private_set(40, seed=2).write(tmp_path_factory.mktemp("private") / "images")


def _digests(run: Path, *parts: str) -> dict[str, str]:
    found = {}
    for part in parts:
        for path in sorted((run / part).rglob("*")):
            if path.is_file():
                found[path.relative_to(run).as_posix()] = hashlib.sha256(
                    path.read_bytes()
                ).hexdigest()
    return found


def test_a_run_on_ray_reproduces_the_local_run(
    private_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seeds → the same private embeddings, candidates, renders, render embeddings,
    releases and output images on 2 Ray workers as in this process. The DP noise is drawn on
    the driver; here it is fixed (tests only) so that everything after it can be compared."""
    from penumbra.pe import evolve
    from penumbra.privacy import vote_noise_source
    from penumbra.spti.pipeline import Run, synthesize

    monkeypatch.setattr(evolve, "vote_noise_source", lambda seed, t: vote_noise_source(11, t))
    # each run signs with its own key, so each would carry its own watermark: compare unmarked
    unmarked = [*TINY, "policy.watermark=false"]
    local = synthesize(private_dir, 8.0, out=tmp_path / "local", overrides=unmarked)
    ray_run = synthesize(private_dir, 8.0, out=tmp_path / "ray", overrides=[*unmarked, *ON_RAY])
    assert isinstance(local, Run) and isinstance(ray_run, Run)
    parts = ("candidates", "renders", "cache", "synthetic")
    expected = _digests(tmp_path / "local", *parts)
    assert any(name.startswith("candidates/release-") for name in expected)
    assert len([n for n in expected if n.startswith("synthetic/")]) == 5
    assert _digests(tmp_path / "ray", *parts) == expected
    private = sorted((tmp_path / "local" / "private").glob("embeddings-*.npy"))
    assert private and all(
        p.read_bytes() == (tmp_path / "ray" / "private" / p.name).read_bytes() for p in private
    )
    assert verify_run(tmp_path / "ray").ok
    # a private instance leaves no Ray folder behind; its spill folder is under private/
    assert (tmp_path / "ray" / "private" / "ray-spill").is_dir()
    run_start = json.loads(
        (tmp_path / "ray" / "ledger" / "entries.jsonl").read_text().splitlines()[0]
    )
    assert run_start["remote_private"] == []  # a private instance is this machine


def test_a_killed_driver_resumes_locally_without_new_noise(
    private_dir: Path, tmp_path: Path
) -> None:
    """kill -9 of a driver running on Ray after its first release; `--resume` on the local
    engine finishes the run, reuses that release (nothing re-noised) and verifies."""
    out = tmp_path / "run"
    sets = [arg for o in [*TINY, "pe.iterations=3", *ON_RAY] for arg in ("--set", o)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "penumbra", "synthesize", "--private", str(private_dir),
         "--out", str(out), "--epsilon", "8", *sets],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    first = out / "candidates" / "release-000.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.exists(), "the run did not reach its first release"
    released = first.read_bytes()
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait()
    left = Path((out / "private" / "ray-temp").read_text())  # its logs and sockets
    assert left.is_dir() and oct(left.stat().st_mode)[-3:] == "700"
    from penumbra.cli import main

    assert main(["synthesize", "--resume", str(out), "--set", "compute.engine=local"]) == 0
    assert not left.exists() and not (out / "private" / "ray-temp").exists()
    assert first.read_bytes() == released
    entries = (out / "ledger" / "entries.jsonl").read_text().splitlines()
    assert sum('"release"' in line for line in entries) == 3
    assert verify_run(out).ok
    assert len(list((out / "synthetic").glob("*.png"))) == 4


@pytest.fixture
def head_node() -> Iterator[str]:
    """`ray start --head --block` in its own session on loopback; only its processes are
    stopped afterwards (`ray stop` would stop every Ray instance of this user)."""
    ray_cli = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="pr-"))  # short: Ray's socket paths live in it
    # token authentication, as a cluster holding private data should run (README); a token
    # of its own, so the test needs no ~/.ray/auth_token (nor writes one)
    env = {**os.environ, "RAY_ADDRESS": "", **TOKEN}
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, "ray start --head exited"
            assert time.monotonic() < deadline, "ray start --head did not come up"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_metadata_on_a_separately_started_cluster_equals_local(
    head_node: str, tmp_path: Path, skimage_data: Path
) -> None:
    """One file per task on a `ray start --head` cluster: the same files as in this process."""
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(["astronaut.png", "camera.png", "coffee.png"]):
        image = Image.open(skimage_data / name).convert("RGB").resize((64, 64))
        exif = Image.Exif()
        exif[0x010F] = f"camera maker {i}"  # Make
        image.save(src / ("sub" if i else ".") / f"{i}.jpg", exif=exif)
    env = {**os.environ, "RAY_ADDRESS": "", **TOKEN}
    for dst, extra in (("local", []), ("ray", ["--ray", head_node])):
        done = subprocess.run(
            [sys.executable, "-m", "penumbra", "anonymize", "metadata", str(src),
             str(tmp_path / dst), *extra],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert _digests(tmp_path, "ray") == {
        k.replace("local/", "ray/", 1): v for k, v in _digests(tmp_path, "local").items()
    }
    assert len(_digests(tmp_path, "ray")) == 3
    # without the token mode the cluster refuses the driver: one line, exit 2
    env.pop("RAY_AUTH_MODE")
    env.pop("RAY_AUTH_TOKEN")
    done = subprocess.run(
        [sys.executable, "-m", "penumbra", "anonymize", "metadata", str(src),
         str(tmp_path / "no-token"), "--ray", head_node],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "token authentication" in lines[-1], done.stderr[-2000:]
    assert not (tmp_path / "no-token").exists()
