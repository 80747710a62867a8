"""Fidelity metrics and empirical privacy audits.

`evaluate(synthetic, reference, ...)` is the entry point; the metric modules are plain
functions of feature arrays so they can be tested against closed forms.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    # lazy: importing penumbra.evaluate must not load torch or a model
    if name == "evaluate":
        from penumbra.evaluate.evaluation import evaluate

        return evaluate
    raise AttributeError(name)
