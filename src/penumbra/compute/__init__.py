"""Where work runs: in this process, or on a Ray cluster (same results either way).

Names are imported on first use, so a command that only parses `--ray` (the CLI) does not
load torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from penumbra.compute.engine import Engine, LocalEngine, batched, open_engine
    from penumbra.compute.spec import ModelSpec

__all__ = ["Engine", "LocalEngine", "ModelSpec", "batched", "open_engine"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from penumbra.compute import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'penumbra.compute' has no attribute {name!r}")
