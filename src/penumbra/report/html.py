"""report.html: what a person looks at after a run, self-contained and offline.

Shows only public material: DP-selected captions, their renders, noisy (DP) vote histograms,
the accounting, lineage and the synthetic images. Never private data (DESIGN.md invariant 2);
metrics computed against private data appear only if an evaluation wrote them: aggregates
from evaluation.json, labelled "not DP, computed against the private data".

The report reads a run; it does not render one. Pictures of candidates come from a `Renderer`
its caller passes in (penumbra.spti.render.CaptionRenderer is one).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Protocol

from penumbra.data.imagefolder import read_imagefolder_metadata
from penumbra.errors import PenumbraError
from penumbra.pe.store import read_json, read_population


class Renderer(Protocol):
    """What the report needs to show a PE's top candidates: captions in, one image file per
    caption out. The caller passes one (spti's CaptionRenderer, which renders through the run's
    cache); the report itself only reads a run and never renders."""

    def render(self, captions: list[str]) -> list[Path]: ...


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
.grid{display:flex;flex-wrap:wrap;gap:6px}.cell{width:110px;font-size:11px;text-align:center}
.cell img{width:96px;height:96px;image-rendering:pixelated;border:1px solid #ccc}
code{background:#f4f4f4;padding:2px 4px}.note{color:#666;font-size:.9em}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="">'


def _cell(path: Path, caption: str, extra: str = "") -> str:
    text = html.escape(caption)
    return f'<div class="cell" title="{text}">{_img(path)}<br>{text[:60]}{extra}</div>'


def votes_svg(noisy: list[float], threshold: float, width: int = 360, height: int = 120) -> str:
    """Noisy votes of one iteration, sorted, with the threshold as a red line."""
    values = sorted(noisy, reverse=True)
    top = max(max(values), threshold, 1.0)
    low = min(min(values), 0.0)
    span = top - low
    bar = width / len(values)

    def y(v: float) -> float:
        return height - (v - low) / span * height

    bars = "".join(
        f'<rect x="{i * bar:.2f}" y="{min(y(v), y(0)):.2f}" width="{max(bar - 0.5, 0.5):.2f}" '
        f'height="{abs(y(v) - y(0)):.2f}" fill="#4a78b5"/>'
        for i, v in enumerate(values)
    )
    lines = (
        f'<line x1="0" x2="{width}" y1="{y(0):.2f}" y2="{y(0):.2f}" stroke="#333"/>'
        f'<line x1="0" x2="{width}" y1="{y(threshold):.2f}" y2="{y(threshold):.2f}" '
        'stroke="#c33" stroke-dasharray="4 2"/>'
    )
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="noisy votes">{bars}{lines}</svg>'
    )


def _by_class(meta: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """Up to `most` outputs; in a labelled run taken in turn from each class, so every class
    shows."""
    if not meta or "label" not in meta[0]:
        return meta[:most]
    groups: dict[Any, list[dict[str, Any]]] = {}
    for m in meta:
        groups.setdefault(m.get("label"), []).append(m)
    out: list[dict[str, Any]] = []
    while len(out) < min(most, len(meta)):
        for group in groups.values():
            if group and len(out) < most:
                out.append(group.pop(0))
    return out


def _class_note(row: dict[str, Any]) -> str:
    if "class_name" not in row:
        return ""
    return f"<br><b>{html.escape(str(row['class_name']))}</b>"


def _run_start(run_dir: Path) -> dict[str, Any] | None:
    """The ledger's run_start entry (public parameters), if the run has a ledger."""
    path = run_dir / "ledger" / "entries.jsonl"
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        first = f.readline()
    try:
        entry = json.loads(first)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and entry.get("type") == "run_start" else None


def _policy_paragraph(run_dir: Path, meta: list[dict[str, Any]]) -> str:
    """What each output carries and passed (README "What each output carries"): never a mark
    claimed where the file does not read back one."""
    policy: dict[str, Any] | None = None
    path = run_dir / "ledger" / "entries.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("type") == "policy":
            policy = entry
            break  # the first, as verify reads it
    if policy is None:
        return "<p>Output policy: none recorded (not watermarked, not checked).</p>"
    marked = sum(1 for m in meta if m.get("watermark"))
    settings = {k: v if isinstance(v, dict) else {} for k, v in policy.items()}
    mark = settings.get("watermark", {}).get("mark")
    if mark is None:
        carried = "not watermarked (watermark off)"
    elif marked == len(meta):
        carried = f"every output watermarked with run identifier {mark}"
    elif marked == 0:
        carried = ("not watermarked: no output carries the mark (under 256×256 pixels, or "
                   "lost to a lossy format)")  # fmt: skip
    else:
        carried = (
            f"{marked} of {len(meta)} outputs watermarked with run identifier {mark}; "
            f"{len(meta) - marked} not watermarked (smaller than 256×256 pixels, or the mark "
            "did not survive the lossy format)"
        )
    faces, blocklist = settings.get("faces", {}), settings.get("blocklist", {})
    checks = [f"faces: {faces.get('action')}" if faces else "faces: not checked",
              f"PDQ blocklist {str(blocklist.get('sha256'))[:16]}… (threshold "
              f"{blocklist.get('threshold')})" if blocklist else "no blocklist"]  # fmt: skip
    withheld = len(policy["withheld"]) if isinstance(policy.get("withheld"), list) else 0
    return (
        f"<p>Output policy: {html.escape(carried)}; {html.escape('; '.join(checks))}; "
        f"{withheld} render(s) withheld and replaced by another seed of the same caption. "
        "Find a copy's run with <code>penumbra identify FILE --ledger RUN</code>.</p>"
    )


def _pe_folders(run_dir: Path, start: dict[str, Any] | None) -> list[tuple[str, Path]]:
    """(title, folder) of each PE the run made: one, or one per class in a labelled run."""
    folder = run_dir / "candidates"
    if (folder / "state.json").exists():
        return [("", folder)]
    names = list((start or {}).get("classes") or [])
    found = sorted(p for p in folder.glob("class-*") if (p / "state.json").exists())
    out = []
    for path in found:
        label = int(path.name.split("-")[1])
        name = names[label] if label < len(names) else str(label)
        out.append((f"class {label} ({name})", path))
    return out


def _class_section(run_dir: Path, start: dict[str, Any]) -> list[str]:
    """The classes of a labelled run: what decided each one's share of the outputs."""
    classes = list(start.get("classes") or [])
    counts: list[int] | None = None
    path = run_dir / "ledger" / "entries.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("type") == "class_counts":
            counts = entry["noisy_counts"]
            break
    fractions = start.get("class_fractions") or {}
    outputs = [0] * len(classes)
    synthetic = run_dir / "synthetic"
    if (synthetic / "metadata.jsonl").exists():
        for m in read_imagefolder_metadata(synthetic):
            if isinstance(m.get("label"), int) and 0 <= m["label"] < len(classes):
                outputs[m["label"]] += 1
    source = "noisy class count (DP release)" if counts is not None else "public fraction"
    parts = [
        f"<h2>Classes ({len(classes)}): one PE per class, parallel composition</h2>"
        f"<p>Each class's private images voted only on that class's candidates; the run spends "
        f"one class's ε. Outputs per class: one each, the rest in proportion to the {source}."
        f"</p><table><tr><th>label</th><th>class</th><th>{source}</th><th>outputs</th></tr>"
    ]
    for c, name in enumerate(classes):
        share = counts[c] if counts is not None else f"{fractions.get(name, 0):.3g}"
        parts.append(
            f"<tr><td>{c}</td><td>{html.escape(name)}</td><td>{share}</td>"
            f"<td>{outputs[c]}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _pe_section(
    title: str, folder: Path, renderer: Renderer | None,
    payloads: dict[str, str],
) -> list[str]:  # fmt: skip
    """Accounting, noisy votes and top candidates of one PE (of the run, or of one class)."""
    releases = [read_json(p) for p in sorted(folder.glob("release-*.json"))]
    head = f" — {html.escape(title)}" if title else ""
    parts = [f"<h2>Privacy accounting{head}</h2><table><tr><th>iteration</th><th>σ</th>"
             "<th>cumulative ε</th><th>δ</th></tr>"]  # fmt: skip
    for r in releases:
        parts.append(
            f"<tr><td>{r['iteration']}</td><td>{r['sigma']:.4g}</td>"
            f"<td>{r['cumulative_epsilon']:.4g}</td><td>{r['delta']:.3g}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<h2>Noisy votes per iteration (DP releases){head}</h2><div class='grid'>")
    for r in releases:
        parts.append(
            f"<div><div class='note'>iteration {r['iteration']}, threshold "
            f"{r['threshold']:g}</div>{votes_svg(r['noisy'], r['threshold'])}</div>"
        )
    parts.append("</div>")
    for t, r in enumerate(releases):
        rows = read_population(folder / f"population-{t:03d}.parquet")
        payloads.update(zip(rows["id"], rows["payload"], strict=True))
        if renderer is None:
            continue
        order = sorted(range(len(r["noisy"])), key=lambda i: -r["noisy"][i])[:16]
        captions = [rows["payload"][i] for i in order]
        paths = renderer.render(captions)
        parts.append(
            f"<h2>Iteration {t}{head}: top candidates by noisy votes</h2><div class='grid'>"
        )
        parts.extend(
            _cell(p, c, f"<br><b>{r['noisy'][i]:.1f}</b>")
            for p, c, i in zip(paths, captions, order, strict=True)
        )
        parts.append("</div>")
    final = folder / f"population-{len(releases):03d}.parquet"  # the final population, if any
    if releases and final.is_file():
        rows = read_population(final)
        payloads.update(zip(rows["id"], rows["payload"], strict=True))
    return parts


def write_report(run_dir: Path, *, renderer: Renderer | None = None) -> Path:
    """Write run_dir/report.html from what the run left on disk; returns its path.

    `renderer` (passed by the pipeline that made the run) draws each iteration's top
    candidates; without one the report leaves those pictures out and shows the rest."""
    start = _run_start(run_dir)
    folders = _pe_folders(run_dir, start)
    if not folders:
        raise PenumbraError(f"{run_dir / 'candidates'}: no PE state; is this a penumbra run?")
    states = [read_json(f / "state.json") for _, f in folders]
    releases = [read_json(p) for _, f in folders for p in sorted(f.glob("release-*.json"))]
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>penumbra run</title><style>{CSS}</style>"
    ]
    settings, state = states[0]["settings"], states[0]
    spent = max((r["cumulative_epsilon"] for r in releases), default=0.0)
    labelled = len(folders) > 1 or bool(folders[0][0])
    per = " per class (parallel composition)" if labelled else ""
    parts.append(f"<h1>penumbra run: {html.escape(run_dir.name)}</h1>")
    parts.append(
        f"<p>(ε, δ) = ({spent:.4g}, {settings['delta']:.3g}) spent of target ε = "
        f"{settings['epsilon']:g}; σ = {state['sigma']:.4g}; "
        f"{len(releases) // max(1, len(folders))} DP releases{per}.</p>"
        f"<p>Verify it: <code>penumbra verify {html.escape(str(run_dir))} --pubkey "
        "&lt;the published key&gt;</code> with the key the data holder published, never the "
        "run's own <code>ledger/pubkey</code> (a forger replaces that too); multi-holder runs "
        "add <code>--cosigner &lt;key&gt;</code> for each aggregator's published key. Without "
        "them verify checks integrity only and says who is not authenticated (exit 3).</p>"
    )
    if start is not None:
        size = (
            f"N = {start['n_private']} private samples"
            if start.get("n_private") is not None
            else f"N ≤ {start.get('public_n')} (a public bound; the exact N is not published)"
        )
        parts.append(
            f"<p>Neighbouring datasets: {html.escape(str(start.get('neighbouring', '')))}. "
            f"{html.escape(size)}; noise: exact discrete Gaussian on integer votes, "
            f"accountant {html.escape(str(start.get('accountant', '')))}.</p>"
        )
        if start.get("classes"):
            parts += _class_section(run_dir, start)
    payloads: dict[str, str] = {}
    for title, folder in folders:
        parts += _pe_section(title, folder, renderer, payloads)
    synthetic = run_dir / "synthetic"
    if (synthetic / "metadata.jsonl").exists():
        meta = read_imagefolder_metadata(synthetic)
        distinct = len({m.get("caption") for m in meta})
        parts.append(
            f"<h2>Synthetic images ({len(meta)}, {distinct} distinct captions)</h2>"
            "<div class='grid'>"
        )
        parts.append(_policy_paragraph(run_dir, meta))
        shown = _by_class(meta, 96)
        parts.extend(_cell(synthetic / m["file_name"], m["caption"], _class_note(m)) for m in shown)
        parts.append("</div><h2>Lineage of a few outputs</h2><ul>")
        for m in meta[:3]:
            chain = [f"{html.escape(cid)}: “{html.escape(payloads.get(cid, '?'))}”"
                     for cid in m.get("parent_chain", [])]  # fmt: skip
            parts.append(f"<li>{html.escape(m['file_name'])} ← " + " ← ".join(chain) + "</li>")
        parts.append("</ul>")
    texts = synthetic / "texts.jsonl"
    if texts.exists():
        synthetic_texts = [
            json.loads(line) for line in texts.read_text(encoding="utf-8").splitlines()
        ]
        parts.append(f"<h2>Synthetic texts ({len(synthetic_texts)})</h2><ol>")
        parts.extend(f"<li>{html.escape(r['text'])}</li>" for r in synthetic_texts[:200])
        parts.append("</ol>")
    # only the aggregates at the run root; never private/evaluation.json
    evaluation = run_dir / "evaluation.json"
    if evaluation.exists():
        from penumbra.evaluate.report_section import evaluation_section

        metrics: dict[str, Any] = json.loads(evaluation.read_text(encoding="utf-8"))
        parts.append(evaluation_section(run_dir, metrics))
    out = run_dir / "report.html"
    from penumbra.durable import atomic_write_bytes

    atomic_write_bytes(out, "\n".join(parts).encode("utf-8"))
    return out
