"""Corpus readers: .jsonl, .csv, .txt (one document a line) and .parquet (when pyarrow is
installed), field selection and validation, turned into `Record`s one at a time.

`iter_corpus` streams: it holds one line (or one parquet row group) at a time, plus 16 bytes
per id for the duplicate check, so a corpus of any size can be read. `read_corpus` is the same
as a list. Every problem names the file and the line (or row) and says what to do: a missing
file, an unknown extension, a missing text or id field, duplicate ids, empty or
whitespace-only texts, bytes that are not UTF-8. A streamed corpus reports a bad line when the
reader reaches it. Texts given as a list of words are joined by single spaces; character
offsets stored in the cache index that joined string.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import ExportError

SUPPORTED_EXTENSIONS = (".jsonl", ".csv", ".txt", ".parquet")
DEFAULT_ID_FIELD = "id"
_BOM = b"\xef\xbb\xbf"
_CHECK_BLOCK = 4096  # rows whose ids are checked for duplicates at once (numpy, not per id)
_COUNT_CHUNK = 8 * 2**20  # bytes read at a time when counting lines


@dataclasses.dataclass(frozen=True)
class Record:
    """One document of a corpus."""

    id: str  # unique key; stride windows are cached as "<id>#<n>"
    text: str  # the (first) text; a list of words arrives here joined by single spaces
    text_pair: str | None = None  # second text of a pair (e.g. the context after a question)
    label: object = None  # known for the built-in corpus only; user labels live in runtime


def read_corpus(path: str | Path, *, text_field: str = "text",
                text_pair_field: str | None = None, id_field: str | None = None) -> list[Record]:
    """Read and check a whole corpus file; see `iter_corpus` for the arguments.

    Returns:
        The records in file order.
    """
    return list(iter_corpus(path, text_field=text_field, text_pair_field=text_pair_field,
                            id_field=id_field))


def iter_corpus(path: str | Path, *, text_field: str = "text",
                text_pair_field: str | None = None,
                id_field: str | None = None) -> Iterator[Record]:
    """Stream and check a corpus file, one record at a time, in file order.

    The file, its extension and the field options are checked at once; each record is checked
    when it is reached, so a bad line far into a big file raises there, after the records
    before it were yielded.

    Args:
        path: a .jsonl, .csv, .txt or .parquet file.
        text_field: field holding the text (a string or a list of words); ignored for .txt.
        text_pair_field: optional field holding the second text of a pair.
        id_field: field holding a unique id; None means "id" where the records have it, else
            the record's 0-based row number.
    """
    path = Path(path)
    suffix = _check_path(path)
    if suffix == ".txt" and text_pair_field is not None:
        raise ExportError(f"{path}: a .txt corpus holds one text a line, it has no field "
                          f"{text_pair_field!r}; use .jsonl or .csv for text pairs")
    readers = {".jsonl": _rows_jsonl, ".csv": _rows_csv, ".txt": _rows_txt,
               ".parquet": _rows_parquet}
    rows = readers[suffix](path)
    if suffix == ".txt":
        text_field = "text"
    return _to_records(path, rows, text_field, text_pair_field, id_field)


def estimate_records(path: str | Path) -> int | None:
    """About how many records a corpus file holds, without parsing it (for a progress bar).

    Lines for .jsonl and .txt (blank .jsonl lines count too), lines minus the header for .csv
    (a quoted text spanning lines counts more than once), the row count of a .parquet footer;
    None where it cannot be had cheaply.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # no pyarrow or not parquet: iter_corpus reports it properly
            return None
    if suffix not in (".jsonl", ".txt", ".csv"):
        return None
    lines, last = 0, b"\n"
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_COUNT_CHUNK):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    lines += last != b"\n"  # a last line without its newline is still a line
    return max(0, lines - 1) if suffix == ".csv" else lines


def _check_path(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise ExportError(f"{path}: unknown corpus extension {suffix or '(none)'!r}; "
                          f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if not path.is_file():
        raise ExportError(f"corpus file {path} does not exist; check --corpus")
    return suffix


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its ending); bytes that are not UTF-8 are an error
    naming line and column. Lines split on b"\\n" only, which never occurs inside a UTF-8
    sequence, so each line decodes on its own."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            skip = len(_BOM) if number == 1 and raw.startswith(_BOM) else 0
            try:
                # A BOM would otherwise glue onto the first field name.
                yield number, raw[skip:].decode("utf-8")
            except UnicodeDecodeError as exc:
                column = skip + exc.start + 1
                raise ExportError(f"{path} line {number}: byte 0x{raw[skip + exc.start]:02x} at "
                                  f"column {column} is not UTF-8; re-save the file as "
                                  f"UTF-8") from None


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in _utf8_lines(path):
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
    reader = csv.DictReader(line for _, line in _utf8_lines(path))
    try:
        for row in reader:
            yield f"line {reader.line_num}", row
    except csv.Error as exc:
        raise ExportError(f"{path} line {reader.line_num}: malformed CSV ({exc})") from None


def _rows_txt(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in _utf8_lines(path):
        yield f"line {number}", {"text": line.removesuffix("\n").rstrip("\r")}


def _rows_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError(f"{path}: reading .parquet needs pyarrow, which is not installed; "
                          f"run `pip install pyarrow` or convert the corpus to .jsonl") from None
    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=_CHECK_BLOCK)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"row {number}", row
    except Exception as exc:  # pyarrow raises its own family (ArrowInvalid, OSError, ...)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"{path}: not a readable parquet file ({exc})") from None


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
                text_pair_field: str | None, id_field: str | None) -> Iterator[Record]:
    """Records from rows, in blocks: a block's ids are checked for duplicates together, then
    its records are yielded. Errors come out in row order, as if checked one row at a time."""
    seen = _SeenIds()
    count = 0
    while True:
        block, wheres, error = [], [], None
        try:
            for where, row in rows:
                if count == 0 and id_field is None and DEFAULT_ID_FIELD in row:
                    id_field = DEFAULT_ID_FIELD  # the records carry ids: every one must have one
                key = _row_id(path, where, row, id_field, count)
                wheres.append(where)
                count += 1
                text = _field_text(path, where, row, text_field, "--text-field")
                pair = (None if text_pair_field is None else
                        _field_text(path, where, row, text_pair_field, "--text-pair-field"))
                block.append(Record(id=key, text=text, text_pair=pair))
                if len(block) == _CHECK_BLOCK:
                    break
        except ExportError as exc:
            error = exc  # raised after the ids of the rows before it are checked
            keys = [r.id for r in block] + ([key] if len(wheres) > len(block) else [])
        else:
            keys = [r.id for r in block]
        seen.check(path, keys, wheres)
        yield from block
        if error is not None:
            raise error
        if len(block) < _CHECK_BLOCK:
            break
    if count == 0:
        raise ExportError(f"{path}: the corpus holds no records; give it at least one text")


class _SeenIds:
    """Ids already read, as 64-bit hashes beside the line (or row) number they came from:
    16 bytes an id, where a set of strings would take about 100.

    Kept as a few sorted numpy runs, merged when one grows as big as the one before (as a
    log-structured merge tree does), so checking a block is one vectorised binary search per
    run, and there are O(log n) runs. Two different ids share a hash with probability about
    n**2 / 2**65 (3e-6 for 10 million ids); such a pair would be reported as a duplicate.
    """

    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted int64 hashes, numbers)

    def check(self, path: Path, keys: list[str], wheres: list[str]) -> None:
        """Raise on the first id (in row order) that repeats an earlier one.

        `wheres` are "line N" or "row N", one per key, all with the same word.
        """
        if not keys:
            return
        first: dict[str, int] = {}
        earliest, earlier_where = len(keys), None
        for i, key in enumerate(keys):
            if key in first:
                earliest, earlier_where = i, wheres[first[key]]
                break
            first[key] = i
        word = wheres[0].split(" ", 1)[0]
        hashes = np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))
        for run, numbers in self._runs:
            pos = np.minimum(np.searchsorted(run, hashes), len(run) - 1)  # (n,)
            hits = np.flatnonzero(run[pos] == hashes)
            if len(hits) and hits[0] < earliest:
                earliest = int(hits[0])
                earlier_where = f"{word} {int(numbers[pos[earliest]])}"
        if earlier_where is not None:
            raise ExportError(f"{path} {wheres[earliest]}: duplicate id {keys[earliest]!r} "
                              f"(first at {earlier_where}); ids must be unique")
        numbers = np.array([int(w.rsplit(" ", 1)[1]) for w in wheres[:len(keys)]], np.int64)
        self._add(hashes, numbers)

    def _add(self, hashes: np.ndarray, numbers: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self._runs.append((hashes[order], numbers[order]))
        while len(self._runs) > 1 and len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (h2, n2), (h1, n1) = self._runs.pop(), self._runs.pop()
            h, n = np.concatenate([h1, h2]), np.concatenate([n1, n2])
            order = np.argsort(h, kind="stable")
            self._runs.append((h[order], n[order]))
