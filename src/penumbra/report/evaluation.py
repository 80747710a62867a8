"""The report's evaluation section: metrics tables, the MIA ROC curve, the closest pairs.

The closest-pairs picture shows private images, so it is linked from the run's private/
folder, never embedded: the report stays free of private data when shared on its own, and
shows the pairs to whoever opens it beside the run's private/ folder.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def _row(name: str, value: str) -> str:
    return f"<tr><th style='text-align:left'>{html.escape(name)}</th><td>{value}</td></tr>"


def _fmt(value: Any, digits: str = ".4g") -> str:
    return format(value, digits) if isinstance(value, int | float) else html.escape(str(value))


def evaluation_section(run_dir: Path, metrics: dict[str, Any]) -> str:
    parts = ["<h2>Evaluation</h2>"]
    label = metrics.get("uses_private_data")
    if label:
        parts.append(f"<p class='note'><b>{html.escape(label)}</b>: these numbers compare the "
                     "synthetic set with the private images; they are not DP and never fed "
                     "back into the run.</p>")  # fmt: skip
    fid = metrics.get("fidelity")
    if fid:
        space = html.escape(metrics.get("feature_space", {}).get("uri", "?"))
        parts.append(f"<p>Fidelity in the feature space of <code>{space}</code>.</p><table>")
        parts.append(_row("Fréchet distance", _fmt(fid["frechet_distance"])))
        if "fid" in metrics:
            parts.append(_row("FID (Inception, pytorch-fid protocol)", _fmt(metrics["fid"]["fid"])))
        parts.append(_row("KID × 10³", f"{1e3 * fid['kid']:.4g} ± {1e3 * fid['kid_std']:.2g}"))
        for name in ("precision", "recall", "density", "coverage"):
            parts.append(_row(f"{name} (k={int(fid['k'])})", _fmt(fid[name], ".3f")))
        classes = metrics.get("classes")
        if classes:
            parts.append(_row("class-mix total variation", _fmt(classes["total_variation"], ".3f")))
        parts.append("</table>")
    mix = metrics.get("class_mix_total_variation_to_private")
    if mix:
        parts.append("<h3>Class mix: total variation to the private mix</h3><table>")
        parts.extend(_row(name, _fmt(value, ".3f")) for name, value in mix.items())
        parts.append("</table>")
    audit = metrics.get("privacy_audit")
    if audit:
        mia, mem = audit["membership_inference"], audit["memorisation"]
        parts.append(f"<h3>Privacy audit ({html.escape(audit['label'])})</h3><table>")
        ci = f"{mia['auc_ci95_low']:.3f}–{mia['auc_ci95_high']:.3f}"
        parts.append(_row("membership-inference AUC", f"{mia['auc']:.3f} (95% CI {ci})"))
        parts.append(_row("TPR at 1% FPR", _fmt(mia["tpr_at_1pct_fpr"], ".3f")))
        parts.append(_row("synthetic closer to a member than a non-member",
                          _fmt(mem.get("closer_to_member_share", "n/a"), ".3f")))  # fmt: skip
        parts.append(_row("flagged near-copies",
                          f"{mem['flagged']} (distance ≤ {_fmt(mem['threshold'])})"))  # fmt: skip
        parts.append("</table>")
        artifacts = metrics.get("artifacts", {})
        roc = run_dir / artifacts.get("roc", "")
        if artifacts.get("roc") and roc.is_file():
            data = base64.b64encode(roc.read_bytes()).decode("ascii")
            parts.append(f'<p><img src="data:image/png;base64,{data}" alt="ROC"></p>')
        if artifacts.get("closest_pairs"):
            link = html.escape(artifacts["closest_pairs"])
            parts.append(
                "<p class='note'>Closest synthetic/private pairs (private images: shown only "
                f"where this run's private/ folder sits beside the report; "
                f"<code>{link}</code>).</p>"
                f'<p><img src="{link}" alt="closest pairs: open beside the private/ folder"></p>'
            )
    return "\n".join(parts)
