"""Corpus readers: .jsonl, .csv, .txt (one document a line) and .parquet (when pyarrow is
installed), field selection and validation, turned into a list of `Record`s.

Every problem names the file and the line (or row) and says what to do: a missing file, an
unknown extension, a missing text or id field, duplicate ids, empty or whitespace-only texts,
bytes that are not UTF-8. Texts given as a list of words are joined by single spaces; character
offsets stored in the cache index that joined string.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Iterator

from .errors import ExportError

SUPPORTED_EXTENSIONS = (".jsonl", ".csv", ".txt", ".parquet")
DEFAULT_ID_FIELD = "id"


@dataclasses.dataclass(frozen=True)
class Record:
    """One document of a corpus."""

    id: str  # unique key; stride windows are cached as "<id>#<n>"
    text: str  # the (first) text; a list of words arrives here joined by single spaces
    text_pair: str | None = None  # second text of a pair (e.g. the context after a question)
    label: object = None  # known for the built-in corpus only; user labels live in runtime


def read_corpus(path: str | Path, *, text_field: str = "text",
                text_pair_field: str | None = None, id_field: str | None = None) -> list[Record]:
    """Read and check a corpus file.

    Args:
        path: a .jsonl, .csv, .txt or .parquet file.
        text_field: field holding the text (a string or a list of words); ignored for .txt.
        text_pair_field: optional field holding the second text of a pair.
        id_field: field holding a unique id; None means "id" where the records have it, else
            the record's 0-based row number.
    Returns:
        The records in file order.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ExportError(f"{path}: unknown corpus extension {suffix or '(none)'!r}; "
                          f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if not path.is_file():
        raise ExportError(f"corpus file {path} does not exist; check --corpus")
    if suffix == ".txt" and text_pair_field is not None:
        raise ExportError(f"{path}: a .txt corpus holds one text a line, it has no field "
                          f"{text_pair_field!r}; use .jsonl or .csv for text pairs")
    readers = {".jsonl": _rows_jsonl, ".csv": _rows_csv, ".txt": _rows_txt,
               ".parquet": _rows_parquet}
    rows = readers[suffix](path)
    if suffix == ".txt":
        text_field = "text"
    return _to_records(path, rows, text_field, text_pair_field, id_field)


def _read_utf8(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 are an error naming line and column."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # a BOM would otherwise glue onto the first field name
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ExportError(f"{path} line {line}: byte 0x{raw[exc.start]:02x} at column {column} "
                          f"is not UTF-8; re-save the file as UTF-8") from None


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, say) are not records
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ExportError(f"{path} line {number}: not valid JSON ({exc.msg}); "
                              f"each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise ExportError(f"{path} line {number}: expected a JSON object, got "
                              f"{type(row).__name__}; each line must be one JSON object")
        yield f"line {number}", row


def _rows_csv(path: Path) -> Iterator[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(_read_utf8(path), newline=""))
    try:
        for row in reader:
            yield f"line {reader.line_num}", row
    except csv.Error as exc:
        raise ExportError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None


def _rows_txt(path: Path) -> Iterator[tuple[str, dict]]:
    lines = _read_utf8(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line does not start another document
    for number, line in enumerate(lines, start=1):
        yield f"line {number}", {"text": line.rstrip("\r")}


def _rows_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(f"{path}: reading .parquet needs pyarrow, which is not installed; "
                          f"run `pip install pyarrow` or convert the corpus to .jsonl") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own family (ArrowInvalid, OSError, ...)
        raise ExportError(f"{path}: not a readable parquet file ({exc})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"row {number}", row


def _field_text(path: Path, where: str, row: dict, field: str, option: str) -> str:
    if field not in row or row[field] is None:
        fields = ", ".join(map(str, row)) or "none"
        raise ExportError(f"{path} {where}: no field {field!r} (fields: {fields}); "
                          f"pass {option} naming the text field")
    value = row[field]
    if isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        value = " ".join(value)  # words: offsets will index this joined string
    if not isinstance(value, str):
        raise ExportError(f"{path} {where}: field {field!r} holds {type(value).__name__}; "
                          f"expected a string or a list of words")
    if not value.strip():
        raise ExportError(f"{path} {where}: field {field!r} is empty or whitespace only; "
                          f"remove the record or give it text")
    return value


def _row_id(path: Path, where: str, row: dict, id_field: str | None, index: int) -> str:
    if id_field is None:
        return str(index)
    value = row.get(id_field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ExportError(f"{path} {where}: no id in field {id_field!r}; give every record an "
                          f"id, or pass --id-field naming another field")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ExportError(f"{path} {where}: id field {id_field!r} holds "
                          f"{type(value).__name__}; expected a string or an integer")
    return str(value)


def _to_records(path: Path, rows: Iterator[tuple[str, dict]], text_field: str,
                text_pair_field: str | None, id_field: str | None) -> list[Record]:
    records: list[Record] = []
    seen: dict[str, str] = {}
    for index, (where, row) in enumerate(rows):
        if index == 0 and id_field is None and DEFAULT_ID_FIELD in row:
            id_field = DEFAULT_ID_FIELD  # the records carry ids: every one must have one
        key = _row_id(path, where, row, id_field, index)
        if key in seen:
            raise ExportError(f"{path} {where}: duplicate id {key!r} (first at {seen[key]}); "
                              f"ids must be unique")
        seen[key] = where
        text = _field_text(path, where, row, text_field, "--text-field")
        pair = (None if text_pair_field is None else
                _field_text(path, where, row, text_pair_field, "--text-pair-field"))
        records.append(Record(id=key, text=text, text_pair=pair))
    if not records:
        raise ExportError(f"{path}: the corpus holds no records; give it at least one text")
    return records
