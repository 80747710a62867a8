"""penumbra: differentially private synthetic media from off-the-shelf foundation models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("penumbra")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
