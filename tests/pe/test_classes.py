"""Outputs and candidates per class: from DP counts or public fractions, every class present."""

from __future__ import annotations

import pytest

from penumbra.pe.classes import (
    class_output_counts,
    class_population,
    class_seed,
    class_sizes,
    class_weights,
)


def test_every_class_gets_an_output_and_the_rest_follows_the_weights() -> None:
    # one each, then 7 more ∝ 30:10 = 5.25 : 1.75 → 5 + 2 (largest remainder)
    assert class_output_counts([0.0, 30.0, 10.0], 10) == [1, 6, 3]
    assert sum(class_output_counts([5, 3, 2, 0], 1000)) == 1000
    # all-zero weights (e.g. every noisy count negative): an even split
    assert class_output_counts([0, 0, 0], 9) == [3, 3, 3]
    with pytest.raises(ValueError, match="one image of each of the 3 classes"):
        class_output_counts([1, 1, 1], 2)


def test_negative_noisy_counts_weigh_nothing() -> None:
    assert class_weights(["a", "b"], noisy_counts=[-3, 12]) == [0.0, 12.0]
    assert class_weights(["a", "b"], fractions={"b": 0.25, "a": 0.75}) == [0.75, 0.25]
    with pytest.raises(ValueError, match="exactly one"):
        class_weights(["a"])


def test_class_sizes_and_populations_come_from_public_numbers() -> None:
    assert class_sizes(["a", "b"], noisy_counts=[-2, 40]) == [0.0, 40.0]
    assert class_sizes(["a", "b"], fractions={"a": 0.25, "b": 0.75}, n_accounted=400) == [
        100.0,
        300.0,
    ]
    assert class_population(400.0, 10.0, 1000) == 20  # 2σ votes each
    assert class_population(400.0, 10.0, 8) == 8
    assert class_population(0.0, 10.0, 8) == 2


def test_class_seeds_differ_and_repeat() -> None:
    seeds = [class_seed(7, c) for c in range(10)]
    assert len(set(seeds)) == 10 and seeds == [class_seed(7, c) for c in range(10)]
