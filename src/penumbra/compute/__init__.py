"""Where work runs: in this process, or on a Ray cluster (same results either way)."""

from penumbra.compute.engine import Engine, LocalEngine, ModelSpec, batched, open_engine

__all__ = ["Engine", "LocalEngine", "ModelSpec", "batched", "open_engine"]
