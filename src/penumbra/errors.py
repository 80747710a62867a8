"""Error types whose message is shown to the user as is.

The CLI turns a `PenumbraError` into one line per problem on stderr and exit code 2, so every
message must name the file, field or model it is about and say what to do.
"""

from __future__ import annotations


class PenumbraError(Exception):
    """Bad input or an unusable environment: the user can fix it; no traceback is shown."""

    def __init__(self, *problems: str) -> None:
        if not problems:
            raise ValueError("PenumbraError needs at least one problem line")
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


class ConfigError(PenumbraError):
    """A run configuration (file or override) that does not validate."""


class DataError(PenumbraError):
    """An input folder or file that cannot be read as asked."""


class ModelError(PenumbraError):
    """A model URI that cannot be resolved, loaded or reached."""


class ComputeError(PenumbraError):
    """A compute engine that cannot be used: Ray missing, a cluster unreachable, a worker lost."""
