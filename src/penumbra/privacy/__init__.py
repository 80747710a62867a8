"""Privacy accounting (σ ↔ ε) and noise sources: pure functions, no I/O."""

from penumbra.privacy.accounting import (
    check_delta_for,
    default_delta,
    gaussian_epsilon,
    gaussian_mu,
    gaussian_sigma,
    gdp_delta,
)
from penumbra.privacy.discrete import (
    discrete_gaussian_delta,
    discrete_gaussian_epsilon,
    discrete_gaussian_sigma,
    sampling_sigma,
)
from penumbra.privacy.noise import vote_noise_source

__all__ = [
    "check_delta_for",
    "default_delta",
    "discrete_gaussian_delta",
    "discrete_gaussian_epsilon",
    "discrete_gaussian_sigma",
    "gaussian_epsilon",
    "gaussian_mu",
    "gaussian_sigma",
    "gdp_delta",
    "sampling_sigma",
    "vote_noise_source",
]
