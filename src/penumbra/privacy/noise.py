"""Where DP noise comes from.

Real runs draw noise straight from the OS's CSPRNG: there is no seed to write anywhere (whoever
held one could subtract the noise). A fixed seed is for tests only, and whoever asks for one
must record that they did.
"""

from __future__ import annotations

import random
import secrets

import numpy as np


def vote_noise_source(seed: int | None, iteration: int) -> random.Random:
    """Integer randomness for the exact discrete Gaussian sampler of one iteration: the OS
    CSPRNG itself (nothing to store, nothing to regenerate) unless a test fixes `seed`."""
    if seed is None:
        return secrets.SystemRandom()
    state = np.random.SeedSequence([seed, iteration, 0xD6A055]).generate_state(4)
    return random.Random(int.from_bytes(state.tobytes(), "big"))
