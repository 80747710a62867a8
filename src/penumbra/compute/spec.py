"""`ModelSpec`: how a worker loads a model on its own, by URI, role and backend options.

Every engine takes models by spec (penumbra.compute.engine's LocalEngine loads it in this
process; penumbra.compute.ray_engine's actors each load it once), so it sits below both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from penumbra.models import load


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads a model on its own: the URI, the role and the backend options."""

    uri: str
    role: str
    options: str = "{}"  # JSON, sorted: the spec is hashable and names one pool of actors

    @classmethod
    def of(cls, uri: str, role: str, options: dict[str, Any] | None = None) -> ModelSpec:
        return cls(uri, role, json.dumps(options or {}, sort_keys=True, default=str))

    def load(self) -> Any:
        return load(self.uri, role=self.role, **json.loads(self.options))  # type: ignore[arg-type]
