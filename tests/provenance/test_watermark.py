"""The invisible watermark: read as the library reads it, survives a JPEG copy, and `identify`
names the run from a re-encoded file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from penumbra.cli import main
from penumbra.provenance.mark import PAYLOAD_BITS, encode_mark
from penumbra.provenance.watermark import SCALE, embed_mark, read_bits, read_mark


@pytest.fixture(scope="module")
def photos(skimage_data: Path) -> list[Image.Image]:
    names = ("astronaut.png", "chelsea.png", "coffee.png")
    return [Image.open(skimage_data / n).convert("RGB").resize((256, 256)) for n in names]


def test_numpy_reader_reads_the_library_s_bits(photos: list[Image.Image]) -> None:
    from imwatermark import WatermarkDecoder

    decoder = WatermarkDecoder("bits", PAYLOAD_BITS)
    for photo in photos:
        for image in (photo, embed_mark(photo, "0badcafe")):
            bgr = np.ascontiguousarray(np.asarray(image)[..., ::-1])
            theirs = np.array(decoder.decode(bgr, "dwtDctSvd", scales=[0, SCALE, 0]), np.uint8)
            assert np.array_equal(theirs, read_bits(image))
        assert np.array_equal(read_bits(embed_mark(photo, "0badcafe")), encode_mark("0badcafe"))


def test_mark_survives_jpeg_and_resize_but_unmarked_reads_none(photos: list[Image.Image]) -> None:
    for photo in photos:
        marked = embed_mark(photo, "0badcafe")
        buffer = io.BytesIO()
        marked.save(buffer, "JPEG", quality=75)
        assert read_mark(Image.open(buffer)).mark == "0badcafe"
        assert read_mark(marked.resize((192, 192), Image.Resampling.BICUBIC)).mark == "0badcafe"
        assert read_mark(photo).mark is None
    with pytest.raises(ValueError, match="too small"):
        embed_mark(photos[0].resize((128, 128)), "0badcafe")


def test_identify_cli(photos: list[Image.Image], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marked, plain = tmp_path / "copy.jpg", tmp_path / "plain.png"
    embed_mark(photos[1], "0badcafe").save(marked, quality=90)
    photos[1].save(plain)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    code = main(["identify", str(marked), str(plain), str(tmp_path / "broken.png"), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and [r["marked"] for r in rows] == [True, False, False]
    assert rows[0] == {"file": str(marked), "marked": True, "mark": "0badcafe", "run": None,
                       "output": None}  # fmt: skip
    assert "error" in rows[2] and "error" not in rows[1]
    assert main(["identify", str(plain)]) == 0
    assert capsys.readouterr().out.strip().endswith("no penumbra mark")
    assert main(["identify", str(plain), "--ledger", str(tmp_path)]) == 2
    assert "not a penumbra run folder" in capsys.readouterr().err
