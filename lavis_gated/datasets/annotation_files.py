"""Annotation tables (CSV, TSV, JSON, JSON lines) read into string-only pandas frames.

The text is decoded and split into records here rather than by pandas, so that a file in the wrong
encoding, a row with more or fewer fields than the header (an unquoted comma in a value) or an unclosed
quote is reported with its path and line; pandas would stop with a bare ParserError or, for an extra
field in the first row, silently shift every column. Every format comes out the same way: one row per
record, every value a string ("" where missing), so that "None" stays an answer and ids keep their
leading zeros. A frame's index says where each record is: the line it starts on (CSV, TSV, JSON lines)
or its position in the list from 1 (JSON), which is what error messages quote.
"""

import csv
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


def _as_text(value, keep_lists=False):
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if keep_lists and isinstance(value, list):
        return [_as_text(v) for v in value]
    return str(value)


def _as_strings(frame, keep_lists=False):
    return frame.apply(lambda column: column.map(lambda v: _as_text(v, keep_lists)))


def _json_records(text, path, lines):
    """(records, where each is: its line for JSON lines, its position from 1 for JSON)."""
    if lines:
        records, numbers = [], []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number} is not JSON ({err.msg})") from None
                numbers.append(number)
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON at line {err.lineno} ({err.msg})") from None
        numbers = list(range(1, len(records) + 1)) if isinstance(records, list) else []
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a list of objects (one per question)")
    return records, numbers


def _delimited_records(text, path, delimiter):
    """(header, rows, the line each row starts on) of CSV/TSV text; blank lines are skipped. A row
    whose field count differs from the header's, or an unclosed quote, is an error naming the lines."""
    if len(delimiter) != 1:
        raise ValueError(f"{path}: datasets.<name>.delimiter must be one character, got {delimiter!r}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, rows, starts, wrong = None, [], [], []
    end = 0  # the last line read so far
    while True:
        start = end + 1
        try:
            record = next(reader, None)
        except csv.Error as err:
            raise ValueError(
                f"{path}: line {start}: {err} (a quote that is not closed, or text after a closing "
                'quote? quote a value that holds quotes as "...""..." )'
            ) from None
        if record is None:
            break
        end = reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if header is None:
            header = record
        elif len(record) != len(header):
            wrong.append(f"line {start} has {len(record)}")
        else:
            rows.append(record)
            starts.append(start)
    if wrong:
        raise ValueError(
            f"{path}: {len(wrong)} rows do not have the header's {len(header)} fields; first: "
            f"{', '.join(wrong[:5])} (an unquoted {delimiter!r} inside a value? quote such values "
            '"like, this")'
        )
    return header, rows, starts


def read_table(path, encoding="utf-8", delimiter=None, keep_lists=False):
    """Rows of an annotation file as a DataFrame of strings, the format chosen by the file extension.

    .csv / .tsv (or `delimiter`), .json (a list of objects, e.g. AQUA), .jsonl (one object per line).
    The index holds each record's line (its position from 1 in a .json list). keep_lists: a JSON list value
    (an image's captions) stays a list of strings. Raises FileNotFoundError
    for a missing file and ValueError, naming the file and line, for an empty, undecodable or malformed
    one.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    extension = os.path.splitext(path)[1].lower()
    kind = FORMATS.get(extension, ",")
    text = decode_text(path, encoding)
    if not text.strip():
        raise ValueError(f"{path}: the file is empty (no header, no rows)")
    if kind in ("json", "jsonl"):
        records, numbers = _json_records(text, path, lines=kind == "jsonl")
        frame = pd.DataFrame.from_records(records)
        frame.index = numbers
    else:
        header, rows, starts = _delimited_records(text, path, delimiter or kind)
        header = [c.strip() for c in header]
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise ValueError(f"{path}: the header names column(s) {repeated} more than once")
        frame = pd.DataFrame(rows, columns=header, index=starts, dtype=object)
    frame.columns = [str(c).strip() for c in frame.columns]
    return _as_strings(frame, keep_lists)
