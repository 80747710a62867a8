from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must pass with no model hub: anything that tries to download fails loudly.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def skimage_data() -> Path:
    """Photographs that ship inside scikit-image (a cat, a cup of coffee, an astronaut)."""
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"
