"""Privacy accounting (σ ↔ ε) and noise sources: pure functions, no I/O."""

from penumbra.privacy.accounting import (
    check_delta_for,
    default_delta,
    gaussian_epsilon,
    gaussian_mu,
    gaussian_sigma,
    gdp_delta,
)
from penumbra.privacy.noise import iteration_generator, noise_generator

__all__ = [
    "check_delta_for",
    "default_delta",
    "gaussian_epsilon",
    "gaussian_mu",
    "gaussian_sigma",
    "gdp_delta",
    "iteration_generator",
    "noise_generator",
]
