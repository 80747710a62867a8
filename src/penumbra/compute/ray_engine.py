"""The heavy stages on a Ray cluster: model actors, sharded vote counting, retried workers.

Each model lives in a pool of actors (`compute.workers` of them, `gpus_per_model` GPUs each,
spread over the nodes); a stage's batches go to the pool in order and come back in order, so
the answer does not depend on how many workers there are. Vote counting puts the private
embeddings into the object store once, in shards; each shard is counted exactly by
`nearest_candidates` and only integer histograms come back, summed and noised on the driver.

Privacy (README "Running on a cluster"): with `address: local` penumbra starts a private
instance itself: no dashboard, logs and sockets in a fresh 0700 temporary folder removed at
the end, objects spilled under the run's private/ folder. Private data travels only as
object-store references (task arguments hold references, never values) and workers print
nothing about it. On a cluster someone else started, spilling, logs and the dashboard are
that cluster's: penumbra refuses to send private data to one that is not on this machine
unless privacy.allow_remote_private says so (recorded in the ledger).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from penumbra.compute.ray_folder import RAY_FOLDER_NOTE
from penumbra.compute.spec import ModelSpec
from penumbra.config import ComputeConfig
from penumbra.durable import atomic_write_bytes
from penumbra.errors import ComputeError
from penumbra.pe.voting import Voter

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3  # a killed worker is restarted and its task re-run this many times
_COUNTER = ModelSpec("penumbra:vote-counter", "none")  # the GPU layout's vote-counting pool


class ModelWorker:
    """One actor: loads each model it is asked for once, then runs stage functions on
    batches next to it, and counts votes on shards of the private set."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.models: dict[ModelSpec, Any] = {}

    def _model(self, spec: ModelSpec | None) -> Any:
        if spec is None:
            return None
        if spec not in self.models:
            self.models[spec] = spec.load()
        return self.models[spec]

    def info(self, spec: ModelSpec | None) -> dict[str, str]:
        model = self._model(spec)
        return {
            "fingerprint": str(getattr(model, "fingerprint", "")),
            "name": str(getattr(model, "name", "")),
            "role": str(getattr(model, "role", "")),
            "pid": str(os.getpid()),
            "can_choose": "yes" if callable(getattr(model, "choose", None)) else "",
        }

    def run(self, spec: ModelSpec | None, fn: Callable[[Any, Any], Any], batch: Any) -> Any:
        return fn(self._model(spec), batch)

    def call(
        self, spec: ModelSpec, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> Any:
        args, kwargs = payload
        return getattr(self._model(spec), method)(*args, **kwargs)

    def count(self, shard: np.ndarray, candidates: np.ndarray, k: int, metric: str) -> np.ndarray:
        return count_shard(shard, candidates, k, metric)


def count_shard(shard: np.ndarray, candidates: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact integer votes of one shard of the private set: summing shards is exact, so the
    histogram equals `count_votes` over the whole set bit for bit."""
    from penumbra.pe.voting import nearest_candidates

    nearest = nearest_candidates(shard, candidates, k=k, metric=metric)  # type: ignore[arg-type]
    return np.bincount(nearest.ravel(), minlength=candidates.shape[0]).astype(np.int64)


class RayModel:
    """A model that lives in a pool of Ray actors, with the model's own protocol methods."""

    def __init__(self, engine: RayEngine, spec: ModelSpec, info: dict[str, str]) -> None:
        self._engine = engine
        self.spec = spec
        self.fingerprint = info["fingerprint"]
        self.name = info["name"]
        self.role = info["role"]
        self._next = 0
        if info.get("can_choose"):  # constrained decoding (models.protocols.OptionChooser)
            self.choose = functools.partial(self._call, "choose")

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        actors = self._engine.pool(self.spec, size=1)
        actor = actors[self._next % len(actors)]
        self._next += 1
        # by reference, like every batch: the arguments may be private (texts to embed)
        payload = self._engine.put((args, kwargs))
        return self._engine.get(actor.call.remote(self.spec, method, payload), what=self.spec.uri)

    # the five protocols' methods (models/protocols.py): each call runs whole on one actor,
    # so a batch is computed exactly as it would be in this process
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("generate", *args, **kwargs)

    def embed(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("embed", *args, **kwargs)

    def caption(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("caption", *args, **kwargs)

    def vary(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("vary", *args, **kwargs)


def _reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ComputeError(
            f"compute.address={address}: no Ray cluster answers there ({reason}); check the "
            "address, or start one with: ray start --head --port PORT"
        ) from None


class RayEngine:
    """Stages on Ray; `close()` ends the actors and the connection (and a private instance)."""

    name = "ray"

    def __init__(self, config: ComputeConfig, *, private_dir: Path | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ComputeError(
                "compute.engine=ray needs Ray: pip install 'penumbra[ray]' (make install does)"
            ) from None
        self._ray = ray
        self.config = config
        self._pools: dict[ModelSpec | None, list[Any]] = {}
        self._temp: str | None = None
        self._note: Path | None = None
        self._owns = not ray.is_initialized()
        self.threads = config.cpus_per_worker or 1
        if self._owns:
            self._connect(private_dir)
        resources = ray.cluster_resources()
        if config.workers is not None:
            self.workers = config.workers
        elif config.gpus_per_model > 0:
            self.workers = max(1, int(resources.get("GPU", 0) / config.gpus_per_model))
        else:
            self.workers = max(1, int(resources.get("CPU", 1) / self.threads))
        self._worker_cls = ray.remote(ModelWorker)

    def _connect(self, private_dir: Path | None) -> None:
        ray, address = self._ray, self.config.address
        # Ray's C++ core logs retries to stderr as warnings; errors reach the user as one line
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        quiet: dict[str, Any] = {
            "log_to_driver": False,  # worker output stays in the session's (0700) logs
            "logging_level": logging.ERROR,
            "namespace": "penumbra",
        }
        if address == "local":
            # Ray binds its servers to every interface; they ask for its token (Ray's default
            # for a private instance since 2.59; setting RAY_AUTH_MODE=token here instead
            # makes Ray 2.60 fail to start its GCS with a custom temp folder)
            # Ray makes its own folder world-writable (0777): it goes inside one of ours that
            # is 0700, so other users reach neither its logs nor its sockets; short, because
            # socket paths inside it are limited to ~107 characters
            self._temp = tempfile.mkdtemp(prefix="penumbra-ray-")
            spill = (private_dir if private_dir is not None else Path(self._temp)) / "ray-spill"
            spill.mkdir(mode=0o700, parents=True, exist_ok=True)
            if private_dir is not None:  # so a resume after a killed driver removes it
                self._note = private_dir / RAY_FOLDER_NOTE
                atomic_write_bytes(self._note, self._temp.encode("utf-8"))
            try:
                ray.init(
                    num_cpus=os.cpu_count() or 1, include_dashboard=False,
                    _temp_dir=str(Path(self._temp) / "r"), object_spilling_directory=str(spill),
                    **quiet,
                )  # fmt: skip
            except Exception as e:
                self._remove_temp()
                raise ComputeError(
                    f"compute.address=local: Ray did not start: {_first(e)}"
                ) from None
            return
        if address != "auto":
            _reachable(address)
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:
            if _caused_by(e, "AuthenticationError"):
                raise ComputeError(
                    f"compute.address={address}: the cluster wants Ray's token authentication; "
                    "run with RAY_AUTH_MODE=token and its token in ~/.ray/auth_token (or "
                    "RAY_AUTH_TOKEN)"
                ) from None
            raise ComputeError(
                f"compute.address={address}: {_first(e)}; start a cluster (ray start --head) "
                "or use --ray local"
            ) from None
        except Exception as e:
            raise ComputeError(f"compute.address={address}: cannot join: {_first(e)}") from None

    def pool(self, spec: ModelSpec | None, size: int | None = None) -> list[Any]:
        """The actors that serve `spec`: one to start with (a model only called directly, like
        the LLM, needs no more), grown to `workers` when a stage maps batches over it.

        On CPUs every model shares one pool (each actor loads the models it is asked for: one
        process per worker, as in this process); with `gpus_per_model` each model gets its own
        actors, each holding that share of a GPU."""
        key = spec if self.config.gpus_per_model > 0 else None
        actors = self._pools.setdefault(key, [])
        want = max(1, self.workers if size is None else size)
        options: dict[str, Any] = {
            # actors reserve no CPU: stages run one after another, so `workers` actors never
            # compete, and a GPU pool per model can live beside them
            "num_cpus": 0,
            "max_restarts": RETRIES,
            "max_task_retries": RETRIES,
            "scheduling_strategy": "SPREAD",
        }
        if key is not None:
            options["num_gpus"] = self.config.gpus_per_model
        while len(actors) < want:
            actors.append(self._worker_cls.options(**options).remote(self.threads))
        return actors

    def put(self, value: Any) -> Any:
        return self._ray.put(value)

    def get(self, ref: Any, *, what: str) -> Any:
        """`ray.get` with the worker's own error: a PenumbraError raised in a worker (a bad
        file, a bad option) reaches the user as the same one line it would be locally."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except ray.exceptions.RayActorError as e:
            raise ComputeError(
                f"a Ray worker for {what} died {RETRIES + 1} times ({_first(e)}); "
                "resume the run with --resume (nothing finished is recomputed)"
            ) from None

    def model(self, spec: ModelSpec) -> Any:
        if spec.uri.startswith("openai:"):  # an HTTP client: the model already runs elsewhere
            return spec.load()
        actors = self.pool(spec, size=1)
        return RayModel(self, spec, self.get(actors[0].info.remote(spec), what=spec.uri))

    def map(
        self, fn: Callable[[Any, T], R], batches: Iterable[T], *, model: Any = None
    ) -> Iterator[R]:
        spec = model.spec if isinstance(model, RayModel) else None
        if model is not None and spec is None:  # a model that stays here (e.g. openai: clients)
            for batch in batches:
                yield fn(model, batch)
            return
        actors = self.pool(spec)
        what = spec.uri if spec is not None else fn.__name__
        window: deque[Any] = deque()
        for i, batch in enumerate(batches):
            # by reference: the task arguments Ray records hold no private values; batch i
            # goes to actor i mod W, at most two batches per actor in flight (bounded memory)
            ref = self._ray.put(batch)
            window.append(actors[i % len(actors)].run.remote(spec, fn, ref))
            if len(window) >= 2 * len(actors):
                yield self.get(window.popleft(), what=what)
        while window:
            yield self.get(window.popleft(), what=what)

    def voter(self, private: np.ndarray, *, k: int, metric: str) -> Voter:
        ray = self._ray
        parts = max(1, min(self.workers, len(private)))
        shards = [ray.put(np.ascontiguousarray(s)) for s in np.array_split(private, parts)]
        actors = self.pool(_COUNTER, size=parts)  # on CPUs: the shared pool, as every spec

        def voter(candidates: np.ndarray) -> np.ndarray:
            ref = ray.put(np.asarray(candidates))
            pending = [
                actors[i % len(actors)].count.remote(shard, ref, k, metric)
                for i, shard in enumerate(shards)
            ]
            totals = [self.get(p, what="vote counting") for p in pending]
            votes: np.ndarray = np.sum(totals, axis=0).astype(np.float64) / math.sqrt(k)
            return votes

        voter.shards = shards  # type: ignore[attr-defined]  # freed with the voter
        return voter

    def close(self) -> None:
        ray = self._ray
        for actors in self._pools.values():
            for actor in actors:
                ray.kill(actor)
        self._pools.clear()
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._remove_temp()

    def _remove_temp(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None
        if self._note is not None:
            self._note.unlink(missing_ok=True)
            self._note = None


def _first(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _caused_by(error: BaseException, name: str) -> bool:
    """Ray reports a refused token inside the text of the errors it chains."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__name__ == name or name in str(seen) or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
