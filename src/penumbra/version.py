"""penumbra's version, read once from the installed package's metadata.

Its own module at the ground of the house, so that anything that records the version (the
ledger's run_start, C2PA credentials, `penumbra version`) reads it without importing the
package's front door, `penumbra/__init__.py`, which sits above the pipelines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("penumbra")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
