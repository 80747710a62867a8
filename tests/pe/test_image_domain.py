"""Image-domain PE with a real (tiny, random-weight) diffusers pipeline and EfficientNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.models import load
from penumbra.pe.evolve import EvolveSettings, evolve
from penumbra.pe.image_domain import ImageFileAPI
from penumbra.pe.store import read_population
from penumbra.pe.voting import local_voter

from ..models import tiny_hf


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tiny_hf.tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "sd")
    return load(f"hf:{folder}", steps=4, height=32, width=32, batch_size=8)


def test_img2img_variation(tiny_sd) -> None:  # type: ignore[no-untyped-def]
    source = tiny_sd.generate(["a red shoe"], seed=1)
    varied = tiny_sd.vary(source, ["a red shoe"], strength=0.5, seed=2)
    assert varied[0].size == (32, 32)
    assert not np.array_equal(np.asarray(varied[0]), np.asarray(source[0]))
    again = tiny_sd.vary(source, ["a red shoe"], strength=0.5, seed=2)
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(varied[0]))
    with pytest.raises(ValueError, match="strength"):
        tiny_sd.vary(source, ["a red shoe"], strength=0.0, seed=2)


def test_image_domain_pe_runs_and_records_files(tiny_sd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    embedder = load("builtin:effnet-lite0", image_size=32)
    private = embedder.embed([Image.new("RGB", (32, 32), (200, 30, 30)) for _ in range(50)])
    api = ImageFileAPI(tiny_sd, tmp_path, ["a red shoe", "a blue coat"], strength=0.6)
    result = evolve(
        tmp_path,
        random_api=api,
        variation_api=api,
        embed=api.embedder(embedder),
        voter=local_voter(private),
        settings=EvolveSettings(
            epsilon=8.0,
            delta=1e-3,
            iterations=2,
            population=(6,),
            num_outputs=4,
            seed=3,
            noise_seed=7,
        ),
    )
    assert len(result.outputs["payload"]) == 4
    for t in range(2):
        rows = read_population(tmp_path / f"population-{t:03d}.parquet")
        assert all((tmp_path / p).is_file() for p in rows["payload"])
    for payload in result.outputs["payload"]:
        assert Image.open(tmp_path / payload).size == (32, 32)
