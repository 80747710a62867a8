"""Where DP noise comes from.

Real runs draw noise from a generator seeded with 128 bits from the OS's CSPRNG; the seed is
never written anywhere (whoever holds it can subtract the noise). A fixed seed is for tests
only, and whoever asks for one must record that they did.
"""

from __future__ import annotations

import random
import secrets

import numpy as np


def noise_generator(seed: int | None = None) -> np.random.Generator:
    """A fresh Generator: cryptographically seeded when `seed` is None."""
    entropy = secrets.randbits(128) if seed is None else seed
    return np.random.Generator(np.random.PCG64(entropy))


def iteration_generator(seed: int | None, iteration: int) -> np.random.Generator:
    """Noise for one iteration, independent of how much noise earlier iterations drew.

    With a test seed, a resumed run draws exactly what an uninterrupted one would.
    """
    if seed is None:
        return noise_generator(None)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, iteration])))


def vote_noise_source(seed: int | None, iteration: int) -> random.Random:
    """Integer randomness for the exact discrete Gaussian sampler of one iteration: the OS
    CSPRNG itself (nothing to store, nothing to regenerate) unless a test fixes `seed`."""
    if seed is None:
        return secrets.SystemRandom()
    state = np.random.SeedSequence([seed, iteration, 0xD6A055]).generate_state(4)
    return random.Random(int.from_bytes(state.tobytes(), "big"))
