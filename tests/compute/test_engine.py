"""The compute engines: config and address checks (no Ray needed), and the Ray engine's
building blocks on a local Ray instance started by these tests: exact sharded votes, ordered
batches, a killed worker retried without changing the answer."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from penumbra.cli import main
from penumbra.compute import LocalEngine, ModelSpec, batched
from penumbra.config import ComputeConfig, RunConfig, config_hash
from penumbra.models.batches import embed_text_batch
from penumbra.pe.voting import count_votes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_compute_is_left_out_of_the_config_hash() -> None:
    """Where a run computes is not what it computes: a local start may resume on Ray."""
    local = RunConfig()
    on_ray = RunConfig.model_validate({"compute": {"engine": "ray", "address": "local"}})
    assert config_hash(local) == config_hash(on_ray)
    assert config_hash(local) != config_hash(RunConfig(seed=1))


@pytest.mark.parametrize("address", ["auto", "local", "127.0.0.1:6379", "ray://h.example:10001"])
def test_good_addresses_validate(address: str) -> None:
    assert ComputeConfig(engine="ray", address=address).address == address


@pytest.mark.parametrize("address", ["nowhere", "host:", "host:99999", ":6379", "ray://h"])
def test_a_bad_ray_address_is_one_line_and_exit_2(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["anonymize", "metadata", str(tmp_path), str(tmp_path / "o"), "--ray", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ray" in err[0] and "HOST:PORT" in err[0], err


def test_an_unreachable_cluster_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray")
    (tmp_path / "in").mkdir()
    port = _free_port()  # nothing listens there
    code = main(
        ["anonymize", "metadata", str(tmp_path / "in"), str(tmp_path / "o"),
         "--ray", f"127.0.0.1:{port}"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"127.0.0.1:{port}" in err[0] and "no Ray cluster answers" in err[0]


@pytest.mark.parametrize("address", ["auto", "10.1.2.3:6379", "ray://cluster.example:10001"])
def test_private_data_goes_to_a_cluster_off_this_machine_only_with_the_opt_in(
    address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copied config naming someone else's cluster must not ship the private set there."""
    (tmp_path / "private").mkdir()
    args = ["synthesize", "--private", str(tmp_path / "private"), "--out", str(tmp_path / "r"),
            "--epsilon", "1", "--ray", address]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "compute.address" in err and "privacy.allow_remote_private" in err
    assert not (tmp_path / "r").exists()
    code = main(["evaluate", "--synthetic", str(tmp_path), "--reference", str(tmp_path),
                 "--ray", address])  # fmt: skip
    assert code == 2 and "--allow-remote-private" in capsys.readouterr().err


def test_local_engine_maps_in_order() -> None:
    engine = LocalEngine()
    assert list(engine.map(lambda m, b: (m, sum(b)), batched(list(range(10)), 3), model="m")) == [
        ("m", 3), ("m", 12), ("m", 21), ("m", 9),
    ]  # fmt: skip


# --- on a local Ray instance ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[object]:
    pytest.importorskip("ray")
    from penumbra.compute.ray_engine import RayEngine

    engine = RayEngine(ComputeConfig(engine="ray", address="local", workers=2))
    yield engine
    engine.close()


def _planted(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points plus exact ties and near-ties (the cases the exactness check is for)."""
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((40, 16)).astype(np.float32)
    private = rng.standard_normal((301, 16)).astype(np.float32)
    private[:20] = (candidates[:20] + candidates[20:40]) / 2  # equidistant from two
    private[20:40] = candidates[5] + np.float32(1e-7)  # almost on a candidate
    return private, candidates


@pytest.mark.parametrize(("k", "metric"), [(1, "l2"), (3, "l2"), (2, "cosine")])
def test_sharded_votes_on_ray_equal_count_votes_bit_for_bit(
    ray_engine: object, k: int, metric: str
) -> None:
    from penumbra.compute.ray_engine import RayEngine

    assert isinstance(ray_engine, RayEngine)
    private, candidates = _planted(k)
    expected = count_votes(private, candidates, k=k, metric=metric)
    one = RayEngine(ComputeConfig(engine="ray", address="local", workers=1))
    for engine in (ray_engine, one):  # 2 shards and 1 shard
        votes = engine.voter(private, k=k, metric=metric)(candidates)
        assert votes.dtype == np.float64
        assert np.array_equal(votes, expected)


def test_batches_on_model_actors_come_back_in_order_and_equal_local(ray_engine: object) -> None:
    from penumbra.compute.ray_engine import RayEngine, RayModel

    assert isinstance(ray_engine, RayEngine)
    spec = ModelSpec.of("builtin:minilm-l6", "text-embedder")
    texts = [f"a {c} shirt with {n} buttons" for c in ("red", "dark", "light") for n in range(9)]
    batches = batched(texts, 4)
    local = LocalEngine(threads=1)  # an actor's torch threads: float results depend on them
    local_model = local.model(spec)
    expected = list(local.map(embed_text_batch, batches, model=local_model))
    handle = ray_engine.model(spec)
    assert isinstance(handle, RayModel) and handle.fingerprint == local_model.fingerprint
    got = list(ray_engine.map(embed_text_batch, batches, model=handle))
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    # a direct call runs the whole batch on one actor: the same bits as in this process
    assert np.array_equal(handle.embed(texts), local_model.embed(texts))
    local.close()


def test_a_killed_worker_is_retried_without_changing_the_result(ray_engine: object) -> None:
    import ray

    from penumbra.compute.ray_engine import RayEngine

    assert isinstance(ray_engine, RayEngine)
    spec = ModelSpec.of("builtin:minilm-l6", "text-embedder")
    texts = [f"item {i} in a dark colour" for i in range(96)]
    batches = batched(texts, 8)
    handle = ray_engine.model(spec)
    expected = list(ray_engine.map(embed_text_batch, batches, model=handle))  # no fault
    actors = ray_engine.pool(spec)
    pids = [int(ray.get(a.info.remote(spec))["pid"]) for a in actors]
    results = ray_engine.map(embed_text_batch, batches, model=handle)
    got = [next(results)]
    os.kill(pids[1], signal.SIGKILL)  # mid-stage: batches queued on it must be re-run
    got += list(results)
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    new_pid = int(ray.get(actors[1].info.remote(spec))["pid"])
    assert new_pid != pids[1]  # restarted, not skipped


def test_evaluate_on_ray_reads_the_same_images_as_locally(
    ray_engine: object, tmp_path: Path
) -> None:
    """The evaluation's feature extraction on workers: the same images kept, the same
    unreadable file skipped, the same metrics up to torch's thread-count rounding."""
    from penumbra.data import demo_private_set
    from penumbra.evaluate import evaluate

    synthetic = demo_private_set(24, seed=5).write(tmp_path / "syn")
    reference = demo_private_set(40, seed=6).write(tmp_path / "ref")
    (reference / "broken.png").write_bytes(b"not an image")
    local = evaluate(synthetic, reference, k=2, kid_subsets=5, kid_subset_size=20)
    remote = evaluate(
        synthetic,
        reference,
        k=2,
        kid_subsets=5,
        kid_subset_size=20,
        engine=ray_engine,  # type: ignore[arg-type]
    )
    assert remote["reference"] == local["reference"] and local["reference"]["skipped"] == 1
    assert remote["synthetic"] == local["synthetic"]
    assert remote["feature_space"] == local["feature_space"]
    for key, value in local["fidelity"].items():
        if isinstance(value, float):
            assert remote["fidelity"][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key


def test_faces_on_ray_one_file_per_task(
    ray_engine: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`anonymize faces --ray`: every file done by a worker, a broken one its own line."""
    import skimage.data
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(skimage.data.astronaut()).save(src / "sub" / "face.png")
    Image.fromarray(skimage.data.coffee()).save(src / "cup.png")
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    code = main(["anonymize", "faces", str(src), str(tmp_path / "out"), "--ray", "local"])
    out, err = capsys.readouterr()
    assert code == 2 and "broken.png" in err and len(err.strip().splitlines()) == 1, err
    assert "1 face(s) masked" in out
    written = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    )
    assert written == ["cup.png", "sub/face.png"]
