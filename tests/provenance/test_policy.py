"""The output policy on real renders of builtin:fashion-t2i: a render matching a planted PDQ
hash is withheld, logged and replaced by the same caption's next seed; a bad blocklist is
refused in one line before a run starts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from rich.progress import Progress

from penumbra.cli import main
from penumbra.config.policy import BlocklistConfig, PolicyConfig, default_face_action
from penumbra.errors import ConfigError
from penumbra.models.registry import load
from penumbra.provenance.pdq import load_blocklist
from penumbra.provenance.policy import policy_entry, resolve_policy
from penumbra.spti.final_set import final_render, read_policy_log

OUTPUTS = {
    "payload": ["a photo of a coat", "a photo of a bag", "a photo of a dress"],
    "id": ["2-0", "2-1", "2-2"], "iteration": [2, 2, 2],
    "lineage": [["2-0", "1-0"], ["2-1", "1-0"], ["2-2", "1-1"]],
}  # fmt: skip


def _render(out: Path, policy_config: PolicyConfig) -> list[dict[str, object]]:
    generator = load("builtin:fashion-t2i", steps=4, image_size=256)
    policy = resolve_policy(policy_config, domain="a photo of a clothing item", mark="0badcafe")
    with Progress(disable=True) as progress:
        final_render(out, generator, OUTPUTS, 5, "png", progress, progress.add_task("r"),
                     policy=policy)  # fmt: skip
    return [json.loads(line) for line in (out / "synthetic" / "metadata.jsonl").open()]


def test_planted_pdq_hash_is_withheld_logged_and_replaced(tmp_path: Path) -> None:
    first = _render(tmp_path / "a", PolicyConfig())
    assert all(r["attempt"] == 0 and r["watermark"] == "0badcafe" and r["faces"] == 0
               for r in first)  # fmt: skip
    planted = first[1]["pdq"]
    listed = tmp_path / "blocklist.pdq"
    listed.write_text(f"# planted\n{'0' * 64}\n{planted} known-bad\n")
    config = PolicyConfig(blocklist=BlocklistConfig(file=listed, threshold=31))
    second = _render(tmp_path / "b", config)
    assert [r["pdq"] for r in second][::2] == [r["pdq"] for r in first][::2]  # same seeds
    assert second[1]["attempt"] >= 1 and second[1]["pdq"] != planted
    assert second[1]["caption"] == first[1]["caption"]  # the same DP caption, another seed
    log = read_policy_log(tmp_path / "b")
    pixels = hashlib.sha256(Image.open(tmp_path / "a" / "synthetic" / "000001.png")
                            .convert("RGB").tobytes()).hexdigest()  # fmt: skip
    assert log.withheld[0] == {"output": 1, "attempt": 0, "reason": "blocklist", "sha256": pixels}
    entry = policy_entry(resolve_policy(config, domain="x", mark="0badcafe"), log)
    assert entry["blocklist"]["sha256"] == load_blocklist(listed).sha256
    assert "planted" not in json.dumps(entry) and entry["withheld"] == log.withheld
    assert planted not in json.dumps(entry)  # no near-copy of the list is published


def test_face_action_follows_the_domain() -> None:
    assert default_face_action("portraits of people") == "allow"
    assert default_face_action("a photo of a clothing item") == "withhold"
    assert default_face_action("chest X-rays") == "withhold"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "holds no PDQ hash"), (b"abc123\n", ":1: 'abc123' is not a PDQ hash"),
     (b"\xff\xfe", "not text")],
)  # fmt: skip
def test_bad_blocklist_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "list.pdq"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_blocklist(path)
    assert "\n" not in str(caught.value)


def test_synthesize_refuses_a_bad_blocklist_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    args = ["synthesize", "--private", str(private), "--epsilon", "1",
            "--out", str(tmp_path / "run"),
            "--set", f"policy.blocklist.file={tmp_path / 'missing.pdq'}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "policy.blocklist.file" in err and "missing.pdq" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "ledger").exists()


def test_face_actions_on_a_photo_of_a_person(skimage_data: Path) -> None:
    """withhold names the faces; blur hides them (none left to count) and keeps the mark;
    allow counts them."""

    from penumbra.config.policy import FacesConfig
    from penumbra.provenance.policy import check_render

    photo = Image.open(skimage_data / "astronaut.png").convert("RGB").resize((256, 256))
    outcomes = {}
    for action in ("withhold", "blur", "allow"):
        config = PolicyConfig(faces=FacesConfig(action=action))  # type: ignore[arg-type]
        policy = resolve_policy(config, domain="x", mark="0badcafe")
        outcomes[action] = check_render(photo, policy, "png")
    assert outcomes["withhold"].reason == f"faces: {outcomes['withhold'].fields['faces']}"
    assert outcomes["withhold"].fields["faces"] >= 1
    assert outcomes["blur"].blurred >= 1 and outcomes["blur"].reason is None
    assert outcomes["blur"].fields == {**outcomes["blur"].fields, "faces": 0,
                                       "watermark": "0badcafe"}  # fmt: skip
    assert outcomes["allow"].reason is None and outcomes["allow"].fields["faces"] >= 1
