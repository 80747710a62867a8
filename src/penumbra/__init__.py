"""penumbra: differentially private synthetic media from off-the-shelf foundation models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("penumbra")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def synthesize(*args: object, **kwargs: object) -> object:
    """`penumbra.synthesize(private=..., epsilon=..., config=..., out=...) -> Run`.

    See penumbra.spti.pipeline.synthesize; imported on first use to keep `import penumbra`
    light."""
    from penumbra.spti.pipeline import synthesize as run

    return run(*args, **kwargs)  # type: ignore[arg-type]


__all__ = ["__version__", "synthesize"]
