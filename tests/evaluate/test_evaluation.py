"""evaluate() and the CLI on real image folders; `synthesize --evaluate` on a tiny run."""

from __future__ import annotations

import json
import re
import shutil
import stat
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


def _public_files(root: Path, skip: Path) -> dict[Path, bytes]:
    """Every file under `root` except those under `skip` (the private folder)."""
    return {p: p.read_bytes() for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}  # fmt: skip


def _private_needles(full: dict, private_folder: Path, synthetic: Path) -> list[str]:
    """Strings that only a per-image or exact private value would produce: private file names
    (those no synthetic file shares), per-image distances, the private class mix, folders."""
    mem = full["privacy_audit"]["memorisation"]
    names = {p.name for p in private_folder.glob("*.png")} - {p.name for p in synthetic.rglob("*")}
    assert len(names) > 40
    needles = [f'"{n}"' for n in names] + [f"/{n}" for n in names]
    values = [p["distance"] for p in mem["pairs"]] + [mem["synthetic_to_member_min"],
                                                      mem["threshold"]]  # fmt: skip
    values = [v for v in values if v > 1e-6]  # the verbatim copies sit at 0
    assert values
    needles += [repr(v) for v in values] + [f"{v:.6g}" for v in values]
    # the private class mix's values are multiples of 1/N, as are the ROC's rates: look for
    # the key and, in JSON files, the list itself (see _assert_no_private_mix)
    needles += ["reference_mix", "member_file", str(private_folder)]
    return needles


def _lists(node: object) -> list[list]:
    if isinstance(node, dict):
        return [x for v in node.values() for x in _lists(v)]
    if isinstance(node, list):
        return [node, *(x for v in node for x in _lists(v))]
    return []


def _assert_no_private_mix(public: dict, full: dict) -> None:
    mix = full["classes"]["reference_mix"]
    assert not any(len(x) == len(mix) and x == mix for x in _lists(public))


def _assert_nothing_private(files: dict[Path, bytes], needles: list[str]) -> None:
    for path, data in files.items():
        found = [n for n in needles if n.encode() in data]
        assert not found, f"{path} holds private values: {found[:5]}"


def _assert_labelled_not_dp(public: dict) -> None:
    label = "not DP, computed against the private data; never fed back into the run"
    assert public["not_dp"] == label and public["fidelity"]["not_dp"] == label
    for section in ("classes", "privacy_audit", "fid", "class_mix_total_variation_to_private"):
        if section in public:
            assert public[section]["not_dp"] == label, section


def test_cli_evaluate_reports_copies_and_keeps_per_image_results_in_a_private_folder(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "eval.json"
    code = main(["evaluate", "--synthetic", str(folders["leaky"]), "--reference",
                 str(folders["private"]), "--holdout", str(folders["holdout"]), "--classifier",
                 "builtin:fashion-classifier", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "not DP" in printed and "membership inference AUC" in printed
    details = tmp_path / "results" / "eval.private"
    assert stat.S_IMODE(details.stat().st_mode) == 0o700
    full = json.loads((details / "evaluation.json").read_text())
    public = json.loads(out.read_text())
    _assert_labelled_not_dp(public)
    assert public["private_details"] == "eval.private/evaluation.json"
    fid = public["fidelity"]
    assert fid["frechet_distance"] > 0 and 0 <= fid["precision"] <= 1
    assert {"kid", "kid_std", "recall", "density", "coverage"} <= set(fid)
    assert len(public["classes"]["synthetic_mix"]) == 10
    assert "reference_mix" not in public["classes"]
    assert len(full["classes"]["reference_mix"]) == 10
    mem = full["privacy_audit"]["memorisation"]
    # the 12 verbatim copies sit at distance 0 from their private originals
    assert mem["flagged"] >= 12 and public["privacy_audit"]["memorisation"]["flagged"] >= 12
    flagged = [p for p in mem["pairs"] if p["flagged"]]
    assert {p["synthetic_file"] for p in flagged} >= {f"copy-{i}.png" for i in range(12)}
    median = mem["nonmember_to_member_median"]
    assert all(p["distance"] < 1e-3 * median for p in flagged[:12]), flagged
    assert all(p["member_file"] in {q.name for q in folders["private"].glob("*.png")}
               for p in mem["pairs"])  # fmt: skip
    public_mem = public["privacy_audit"]["memorisation"]
    assert not {"pairs", "threshold", "synthetic_to_member_min"} & set(public_mem)
    # 12 of 60 members are in the synthetic set: those score maximally, the rest at chance
    assert public["privacy_audit"]["membership_inference"]["auc"] > 0.55
    assert Path(public["artifacts"]["roc"]).is_file()
    assert set(public["artifacts"]) == {"roc"}
    assert (details / "closest_pairs.png").stat().st_size > 1000
    outside = _public_files(tmp_path / "results", details)
    assert set(outside) == {out, tmp_path / "results" / "eval_roc.png"}
    needles = _private_needles(full, folders["private"], folders["leaky"])
    _assert_nothing_private(outside, needles)
    _assert_nothing_private({Path("stdout"): printed.encode()}, needles)
    _assert_no_private_mix(public, full)
    # --json prints the aggregates too, and without --out nothing private is written
    assert main(["evaluate", "--synthetic", str(folders["leaky"]), "--reference",
                 str(folders["private"]), "--json"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["private_details"].startswith("not written")
    _assert_nothing_private({Path("stdout"): json.dumps(printed).encode()}, needles)


def test_cli_evaluate_refuses_a_remote_embedder_unless_allowed(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.json"
    args = ["evaluate", "--synthetic", str(folders["leaky"]), "--reference",
            str(folders["private"]), "--embedder", "openai:emb@https://embed.example.com/v1",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--embedder: openai:emb@https://embed.example.com/v1" in line
    assert "--allow-remote-private" in line and "https://embed.example.com/v1" in line
    assert not out.exists() and not (tmp_path / "o.private").exists()


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


def test_synthesize_evaluate_keeps_everything_but_aggregates_inside_private(
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
    printed = capsys.readouterr().out
    assert "privacy audit" in printed
    private = out / "private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "audit").stat().st_mode) == 0o700
    public = json.loads((out / "evaluation.json").read_text())
    full = json.loads((private / "evaluation.json").read_text())
    _assert_labelled_not_dp(public)
    assert public["private_details"] == "private/evaluation.json"
    assert public["fidelity"]["precision"] >= 0 and public["reference"]["images"] == 60
    assert "pairs" not in public["privacy_audit"]["memorisation"]
    assert public["artifacts"] == {"roc": "evaluation/roc.png"}
    assert (out / "evaluation" / "roc.png").is_file()
    assert (private / "audit" / "closest_pairs.png").is_file()
    assert full["artifacts"]["closest_pairs"] == "private/audit/closest_pairs.png"
    private_names = {p.name for p in folders["private"].glob("*.png")}
    assert all(p["member_file"] in private_names
               for p in full["privacy_audit"]["memorisation"]["pairs"])  # fmt: skip
    # nothing outside private/ (evaluation.json, report.html, the ledger, ...) holds a private
    # file name, a per-image distance or the private class mix
    needles = _private_needles(full, folders["private"], out / "synthetic")
    _assert_nothing_private(_public_files(out, private), needles)
    _assert_no_private_mix(public, full)
    _assert_nothing_private({Path("stdout"): printed.encode()}, needles)
    report = (out / "report.html").read_text()
    assert "Privacy audit (not DP, computed against the private data" in report
    assert "Fidelity (not DP, computed against the private data" in report
    assert "closest_pairs.png" not in report and "private/evaluation.json" not in report
    assert main(["verify", str(out), "--trust-run-key"]) == 0
    no_evaluate = ["synthesize", "--private", str(folders["private"]), "--epsilon", "8",
                   "--out", str(tmp_path / "r2"), "--holdout", str(folders["holdout"])]  # fmt: skip
    assert main(no_evaluate) == 2


def test_synthesize_evaluate_with_public_n_publishes_no_evaluation_number(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fractions over the private set (recall, coverage, AUC), ROC steps and progress counts
    would reveal the exact N that privacy.public_n keeps unpublished (found in review)."""
    out = tmp_path / "run"
    n = len(list(folders["private"].glob("*.png")))
    args = ["synthesize", "--private", str(folders["private"]), "--epsilon", "8", "--out",
            str(out), "--evaluate", "--holdout", str(folders["holdout"])]  # fmt: skip
    for field in ("pe.iterations=1", "pe.population=6", "output.num_images=6", "seed=3",
                  "domain=a photo of a clothing item", "prompts.max_new_tokens=20",
                  "privacy.public_n=997"):  # fmt: skip
        args += ["--set", field]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    public = json.loads((out / "evaluation.json").read_text())
    assert set(public) == {"withheld", "private_details", "not_dp"}
    full = json.loads((out / "private" / "evaluation.json").read_text())
    assert full["fidelity"]["recall"] >= 0 and full["privacy_audit"] is not None
    assert not (out / "evaluation").exists()  # no ROC picture outside private/
    assert (out / "private" / "audit" / "roc.png").is_file()
    recall = f"{full['fidelity']['recall']:.3f}"
    report = re.sub(r"base64,[A-Za-z0-9+/=]+", "", (out / "report.html").read_text())
    for text in (printed.out, printed.err, report):
        assert f"/{n}" not in text and f" {n} " not in text
        assert recall not in text or full["fidelity"]["recall"] in (0.0, 1.0)
    assert "privacy.public_n is set" in (out / "report.html").read_text()
