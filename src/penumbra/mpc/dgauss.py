"""The exact discrete Gaussian sampler now lives in `penumbra.privacy.dgauss` (the local path
uses it too); this name stays for the aggregators and older imports."""

from penumbra.privacy.dgauss import (
    bernoulli,
    bernoulli_exp,
    discrete_gaussian_pmf,
    discrete_laplace,
    sample_discrete_gaussian,
)

__all__ = [
    "bernoulli",
    "bernoulli_exp",
    "discrete_gaussian_pmf",
    "discrete_laplace",
    "sample_discrete_gaussian",
]
