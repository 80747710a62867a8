"""evaluate() and the CLI on real image folders; `synthesize --evaluate` on a tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from penumbra.cli import main
from penumbra.data.demo import DemoPrivateSet, demo_holdout_set, demo_private_set
from penumbra.spti.demo import materialise_private


def _subset(demo: DemoPrivateSet, n: int) -> DemoPrivateSet:
    return DemoPrivateSet(demo.images[:n], demo.labels[:n], demo.darkness[:n])


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    materialise_private(root / "private", demo_private_set(60, seed=7))
    materialise_private(root / "holdout", _subset(demo_holdout_set(60, seed=7), 60))
    # a "leaky" synthetic set: 12 private images copied verbatim plus 12 unseen ones
    leaky = root / "leaky"
    leaky.mkdir()
    for i, name in enumerate(sorted(p.name for p in (root / "private").glob("*.png"))[:12]):
        shutil.copy(root / "private" / name, leaky / f"copy-{i}.png")
    unseen = _subset(demo_holdout_set(100, seed=8), 12)
    unseen.write(leaky)
    return {"private": root / "private", "holdout": root / "holdout", "leaky": leaky}


def test_cli_evaluate_reports_copies_and_writes_json_and_pictures(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--synthetic", str(folders["leaky"]), "--reference",
                 str(folders["private"]), "--holdout", str(folders["holdout"]), "--classifier",
                 "builtin:fashion-classifier", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "not DP" in printed and "membership inference AUC" in printed
    result = json.loads(out.read_text())
    fid = result["fidelity"]
    assert fid["frechet_distance"] > 0 and 0 <= fid["precision"] <= 1
    assert {"kid", "kid_std", "recall", "density", "coverage"} <= set(fid)
    assert len(result["classes"]["synthetic_mix"]) == 10
    audit = result["privacy_audit"]
    assert audit["label"] == "uses private data — not DP, never fed back"
    mem = audit["memorisation"]
    # the 12 verbatim copies sit at distance 0 from their private originals
    assert mem["flagged"] >= 12
    flagged = [p for p in mem["pairs"] if p["flagged"]]
    assert {p["synthetic_file"] for p in flagged} >= {f"copy-{i}.png" for i in range(12)}
    median = mem["nonmember_to_member_median"]
    assert all(p["distance"] < 1e-3 * median for p in flagged[:12]), flagged
    # 12 of 60 members are in the synthetic set: those score maximally, the rest at chance
    assert audit["membership_inference"]["auc"] > 0.55
    assert Path(result["artifacts"]["roc"]).is_file()
    assert Path(result["artifacts"]["closest_pairs"]).stat().st_size > 1000


def test_cli_evaluate_bad_inputs_exit_2_with_one_line(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["--synthetic", str(tmp_path / "nope"), "--reference", str(folders["private"])],
         "--synthetic"),
        (["--synthetic", str(folders["leaky"]), "--reference", str(folders["private"]),
          "--classifier", "resnet"], "--classifier resnet: unknown"),
        (["--synthetic", str(folders["leaky"]), "--reference", str(folders["leaky"]),
          "--classifier", "builtin:fashion-classifier"], "needs an integer `label`"),
        (["--synthetic", str(folders["leaky"]), "--reference", str(folders["private"]),
          "--inception-weights", str(tmp_path / "x.pth")], "no such file"),
        (["--synthetic", str(folders["leaky"]), "--reference", str(folders["private"]),
          "--private", str(folders["private"])], "give --holdout too"),
    ]  # fmt: skip
    for args, needle in cases:
        out = tmp_path / "o.json"
        assert main(["evaluate", *args, "--out", str(out)]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not out.exists()


def test_synthesize_evaluate_writes_metrics_and_keeps_private_names_inside_private(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["synthesize", "--private", str(folders["private"]), "--epsilon", "8", "--out",
            str(out), "--evaluate", "--holdout", str(folders["holdout"]), "--classifier",
            "builtin:fashion-classifier"]  # fmt: skip
    for field in ("pe.iterations=2", "pe.population=6", "output.num_images=6", "seed=3",
                  "domain=a photo of a clothing item", "prompts.max_new_tokens=20"):  # fmt: skip
        args += ["--set", field]
    assert main(args) == 0, capsys.readouterr().err
    assert "privacy audit" in capsys.readouterr().out
    result = json.loads((out / "evaluation.json").read_text())
    assert result["uses_private_data"] and result["fidelity"]["precision"] >= 0
    assert (out / "evaluation" / "roc.png").is_file()
    assert (out / "private" / "audit" / "closest_pairs.png").is_file()
    private_names = {p.name for p in folders["private"].glob("*.png")}
    # imagefolders name files alike: judge only names no synthetic file shares
    distinct = private_names - {p.name for p in (out / "synthetic").glob("*.png")}
    public_text = (out / "evaluation.json").read_text() + (out / "report.html").read_text()
    assert len(distinct) > 40 and not any(f'"{name}"' in public_text for name in distinct)
    assert all(set(p) == {"synthetic_file", "distance", "flagged"}
               for p in result["privacy_audit"]["memorisation"]["pairs"])  # fmt: skip
    audit_pairs = json.loads((out / "private" / "audit" / "pairs.json").read_text())
    assert all(p["member_file"] in private_names for p in audit_pairs)
    assert str(folders["private"]) not in public_text
    report = (out / "report.html").read_text()
    assert "Privacy audit" in report and 'src="private/audit/closest_pairs.png"' in report
    assert main(["verify", str(out)]) == 0
    no_evaluate = ["synthesize", "--private", str(folders["private"]), "--epsilon", "8",
                   "--out", str(tmp_path / "r2"), "--holdout", str(folders["holdout"])]  # fmt: skip
    assert main(no_evaluate) == 2
