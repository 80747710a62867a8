"""penumbra: differentially private synthetic media from off-the-shelf foundation models."""

from penumbra.version import __version__


def synthesize(*args: object, **kwargs: object) -> object:
    """`penumbra.synthesize(private=..., epsilon=..., config=..., out=...) -> Run`.

    See penumbra.spti.pipeline.synthesize; imported on first use to keep `import penumbra`
    light."""
    from penumbra.spti.pipeline import synthesize as run

    return run(*args, **kwargs)  # type: ignore[arg-type]


__all__ = ["__version__", "synthesize"]
