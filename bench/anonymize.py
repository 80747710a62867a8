"""All anonymization benchmarks of issue #9 in one command, then their results collected into
bench/RESULTS.md's "Anonymization" section.

    .venv/bin/python bench/anonymize.py [faces|voice|tables ...]   # default: all three

Each part is its own script (bench/anonymize_{faces,voice,tables}.py) writing
bench/results/anonymize_<part>.md and .png; this runs them in separate processes (so one
part's torch threads or memory do not skew another's timings) and splices the Markdown files
into RESULTS.md between the markers below.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from results_md import splice_section

BENCH = Path(__file__).resolve().parent
PARTS = ("faces", "voice", "tables")


def collect(results: Path = BENCH / "RESULTS.md") -> None:
    sections = []
    for part in PARTS:
        md = BENCH / "results" / f"anonymize_{part}.md"
        if md.exists():
            lines = md.read_text().strip().splitlines()
            title = lines[0].lstrip("# ")
            rest = [("##" + ln) if ln.startswith("#") else ln for ln in lines[1:]]
            body = "\n".join([title, *rest])
            png = f"results/anonymize_{part}.png"
            sections.append(f"### {body.strip()}\n\nPlot: [{png}]({png})\n")
    splice_section(
        "anonymize", "\n".join(["## Anonymization (`bench/anonymize.py`)\n", *sections]), results
    )


def main(argv: list[str]) -> int:
    parts = argv or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.stderr.write(f"error: unknown part(s) {unknown}; choose from {PARTS}\n")
        return 2
    for part in parts:
        script = BENCH / f"anonymize_{part}.py"
        code = subprocess.call([sys.executable, str(script)])
        if code != 0:
            sys.stderr.write(f"error: {script.name} exited with {code}\n")
            return code
    collect()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--collect"]:
        collect()
        raise SystemExit(0)
    raise SystemExit(main(sys.argv[1:]))
