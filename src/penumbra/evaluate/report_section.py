"""The report's evaluation section, from the run's evaluation.json (aggregates only).

Shows fidelity metrics, the class-mix distance, the privacy audit's rates and the ROC curve,
all labelled "not DP, computed against the private data". Never per-image values, private
file names, the private class mix or a private image: those stay in private/evaluation.json and
private/audit/, which the report names but neither reads nor links (DESIGN.md invariant 2).
Only allow-listed keys are read, so an older evaluation.json that still held per-image values
shows nothing more.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from penumbra.evaluate.outputs import NOT_DP

ROC = "evaluation/roc.png"


def _row(name: str, value: str) -> str:
    return f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{value}</td></tr>"


def _fmt(value: Any, digits: str = ".4g") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return format(value, digits)


def _number(section: dict[str, Any], key: str, digits: str = ".4g") -> str:
    return _fmt(section.get(key), digits)


def evaluation_section(run_dir: Path, metrics: dict[str, Any]) -> str:
    label = html.escape(NOT_DP)
    parts = [
        "<h2>Evaluation</h2>",
        f"<p class='note'><b>{label}</b>: these numbers compare the synthetic set with the "
        "private images. They are aggregates; per-image results stay in the run's private/ "
        "folder and are not shown here.</p>",
    ]
    if isinstance(metrics.get("withheld"), str):
        parts.append(f"<p>{html.escape(metrics['withheld'])}.</p>")
        return "".join(parts)
    fid = metrics.get("fidelity")
    if isinstance(fid, dict):
        space = html.escape(str(metrics.get("feature_space", {}).get("uri", "?")))
        parts.append(f"<h3>Fidelity ({label})</h3>"
                     f"<p>In the feature space of <code>{space}</code>.</p><table>")  # fmt: skip
        parts.append(_row("Fréchet distance", _number(fid, "frechet_distance")))
        if isinstance(metrics.get("fid"), dict):
            parts.append(_row("FID (Inception, pytorch-fid protocol)",
                              _number(metrics["fid"], "fid")))  # fmt: skip
        kid, kid_std = fid.get("kid"), fid.get("kid_std")
        if isinstance(kid, int | float) and isinstance(kid_std, int | float):
            parts.append(_row("KID × 10³", f"{1e3 * kid:.4g} ± {1e3 * kid_std:.2g}"))
        k = fid.get("k")
        k_text = f" (k={int(k)})" if isinstance(k, int | float) else ""
        for name in ("precision", "recall", "density", "coverage"):
            parts.append(_row(f"{name}{k_text}", _number(fid, name, ".3f")))
        classes = metrics.get("classes")
        if isinstance(classes, dict):
            parts.append(_row("class-mix total variation", _number(classes, "total_variation",
                                                                   ".3f")))  # fmt: skip
        parts.append("</table>")
    mix = metrics.get("class_mix_total_variation_to_private")
    if isinstance(mix, dict) and isinstance(mix.get("total_variation"), dict):
        parts.append(f"<h3>Class mix: total variation to the private mix ({label})</h3><table>")
        parts.extend(_row(str(name), _fmt(value, ".3f"))
                     for name, value in mix["total_variation"].items())  # fmt: skip
        parts.append("</table>")
    dark = metrics.get("dark_share_within_class")
    if isinstance(dark, dict) and isinstance(dark.get("private"), list):
        parts.append(f"<h3>Share of dark items within each class ({label})</h3><table>")
        parts.append(_row("class", "private / synthetic / held-out real"))
        n = len(dark["private"])
        synthetic = dark.get("synthetic") or [None] * n
        held_out = dark.get("held_out") or [None] * n
        parts.extend(
            _row(str(c), f"{_fmt(p, '.2f')} / {_fmt(q, '.2f')} / {_fmt(h, '.2f')}")
            for c, (p, q, h) in enumerate(zip(dark["private"], synthetic, held_out, strict=False))
        )
        parts.append(_row("largest gap, synthetic", _fmt(dark.get("max_gap"), ".2f")))
        parts.append(
            _row("largest gap, held-out real (sampling noise)",
                 _fmt(dark.get("max_gap_held_out"), ".2f"))
        )  # fmt: skip
        parts.append("</table>")
    audit = metrics.get("privacy_audit")
    if isinstance(audit, dict):
        mia = audit.get("membership_inference", {})
        mem = audit.get("memorisation", {})
        parts.append(f"<h3>Privacy audit ({label})</h3><table>")
        ci = f"{_number(mia, 'auc_ci95_low', '.3f')}–{_number(mia, 'auc_ci95_high', '.3f')}"
        parts.append(_row("membership-inference AUC", f"{_number(mia, 'auc', '.3f')} "
                          f"(95% CI {ci})"))  # fmt: skip
        parts.append(_row("TPR at 1% FPR", _number(mia, "tpr_at_1pct_fpr", ".3f")))
        parts.append(_row("synthetic closer to a member than a non-member",
                          _number(mem, "closer_to_member_share", ".3f")))  # fmt: skip
        flagged = mem.get("flagged")
        share = mem.get("flagged_share")
        text = "n/a" if not isinstance(flagged, int) else (
            f"{flagged} ({_fmt(share, '.1%')} of the synthetic images)"
        )  # fmt: skip
        parts.append(_row("flagged near-copies", text))
        parts.append("</table>")
        roc = run_dir / ROC
        if roc.is_file():
            data = base64.b64encode(roc.read_bytes()).decode("ascii")
            parts.append(f'<p><img src="data:image/png;base64,{data}" alt="ROC"></p>')
        parts.append("<p class='note'>The closest synthetic/private pairs (private images) and "
                     "the per-image distances are in the run's <code>private/</code> folder, "
                     "for the data holder only.</p>")  # fmt: skip
    tstr = metrics.get("tstr")
    if isinstance(tstr, dict):
        parts += _tstr_section(run_dir, tstr, metrics.get("artifacts") or {})
    return "\n".join(parts)


def _tstr_section(run_dir: Path, tstr: dict[str, Any], artifacts: dict[str, Any]) -> list[str]:
    """Train on synthetic, test on real: accuracy and per-class recall of both classifiers."""
    parts = [f"<h3>Train on synthetic, test on real ({html.escape(str(tstr.get('not_dp')))})"
             "</h3><table>"]  # fmt: skip
    keys = (("synthetic", "trained on synthetic"), ("real_same_number", "trained on real"))
    cols = [(tstr.get(k) or {}, name) for k, name in keys]
    header = "".join(f"<td><b>{html.escape(name)} ({_fmt(p.get('train_images'), 'd')})</b></td>"
                     for p, name in cols)  # fmt: skip
    parts.append(f"<tr><th></th>{header}</tr>")
    parts.append(
        "<tr><th style='text-align:left'>accuracy</th>"
        + "".join(f"<td>{_number(p, 'accuracy', '.3f')}</td>" for p, _ in cols) + "</tr>"
    )  # fmt: skip
    for name in cols[0][0].get("per_class_recall") or {}:
        values = "".join(
            f"<td>{_fmt((p.get('per_class_recall') or {}).get(name), '.3f')}</td>" for p, _ in cols
        )
        parts.append(f"<tr><th style='text-align:left'>recall: {html.escape(name)}</th>"
                     f"{values}</tr>")  # fmt: skip
    parts.append(f"</table><p class='note'>{html.escape(str(tstr.get('protocol_text', '')))}; "
                 f"chance {_number(tstr, 'chance', '.3f')}.</p>")  # fmt: skip
    picture = artifacts.get("tstr_confusion")
    if isinstance(picture, str) and (run_dir / picture).is_file():
        data = base64.b64encode((run_dir / picture).read_bytes()).decode("ascii")
        parts.append(f'<p><img src="data:image/png;base64,{data}" alt="TSTR confusion"></p>')
    return parts
