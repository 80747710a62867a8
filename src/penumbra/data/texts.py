"""Reading private texts (Aug-PE): a JSONL file of {"text": ...} rows, or a folder of .txt."""

from __future__ import annotations

import json
from pathlib import Path

from penumbra.errors import DataError


def read_private_texts(source: Path | str) -> list[str]:
    """Non-empty texts, in file order; DataError naming the file and line of a bad row."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: does not exist; give a .jsonl file or a folder of .txt files")
    texts: list[str] = []
    if path.is_dir():
        for file in sorted(path.rglob("*.txt")):
            try:
                text = file.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError as e:
                raise DataError(f"{file}: not UTF-8 text") from e
            if text:
                texts.append(text)
    else:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: invalid JSON ({e.msg})") from e
                value = row.get("text") if isinstance(row, dict) else row
                if not isinstance(value, str):
                    raise DataError(f'{path}:{number}: expected {{"text": "..."}} or a string')
                if value.strip():
                    texts.append(value.strip())
    if not texts:
        raise DataError(f"{path}: no private texts found")
    return texts
