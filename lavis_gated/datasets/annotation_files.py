"""Annotation tables (CSV, TSV, JSON, JSON lines) read into string-only pandas frames.

The text is decoded here rather than by pandas, so that a file in the wrong encoding is reported
with its path and line, and every format comes out the same way: one row per record, every value a
string ("" where missing), so that "None" stays an answer and ids keep their leading zeros.
"""

import io
import json
import os

import pandas as pd

FORMATS = {".csv": ",", ".tsv": "\t", ".json": "json", ".jsonl": "jsonl"}


def decode_text(path, encoding="utf-8"):
    """The file's text; a decoding error names the file, the line and the encoding to try."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: line {line} is not valid {encoding} (byte {data[err.start : err.start + 1]!r} at "
            f"offset {err.start}); "
            "set datasets.<name>.encoding to the file's encoding (e.g. latin-1)"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text  # a byte-order mark is not part of the header


def _as_strings(frame):
    return frame.apply(
        lambda column: column.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
    )


def _json_records(text, path, lines):
    if lines:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from None
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON at line {err.lineno} ({err.msg})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of objects (one per question)")
    return records


def read_table(path, encoding="utf-8", delimiter=None):
    """Rows of an annotation file as a DataFrame of strings, the format chosen by the file extension.

    .csv / .tsv (or `delimiter`), .json (a list of objects, e.g. AQUA), .jsonl (one object per line).
    Raises FileNotFoundError for a missing file and ValueError for an empty or undecodable one.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    kind = FORMATS.get(extension, ",")
    text = decode_text(path, encoding)
    if not text.strip():
        raise ValueError(f"{path}: the file is empty (no header, no rows)")
    if kind in ("json", "jsonl"):
        frame = pd.DataFrame.from_records(_json_records(text, path, lines=kind == "jsonl"))
    else:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter or kind, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    return _as_strings(frame)
