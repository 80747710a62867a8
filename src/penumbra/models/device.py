"""Device placement: the backends' job, so pipelines never mention devices."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """cuda when available, else cpu; PENUMBRA_DEVICE overrides (e.g. "cpu" on a shared GPU)."""
    forced = os.environ.get("PENUMBRA_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
