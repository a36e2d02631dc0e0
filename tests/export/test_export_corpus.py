"""Corpus readers: formats, field selection, ids, and one clear error per bad input."""
from __future__ import annotations

import importlib.util
import json

import pytest

from export_testkit import write_jsonl
from export.corpus import Record, read_corpus
from export.defaults import default_corpus_records
from export.errors import ExportError


def test_jsonl_with_ids_words_and_pairs(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": 7, "q": "Who?", "ctx": ["Ada", "wrote", "it", "."]},
        {"id": "x", "q": "When?", "ctx": "In 1843."},
    ])
    records = read_corpus(path, text_field="q", text_pair_field="ctx")
    assert records == [Record(id="7", text="Who?", text_pair="Ada wrote it ."),
                       Record(id="x", text="When?", text_pair="In 1843.")]


def test_jsonl_without_ids_uses_row_numbers_and_skips_blank_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
    assert [(r.id, r.text) for r in read_corpus(path)] == [("0", "a"), ("1", "b")]


def test_csv_with_id_field_and_bom(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes('\ufeffkey,body\nk1,"multi\nline"\nk2,plain\n'.encode("utf-8"))
    records = read_corpus(path, text_field="body", id_field="key")
    assert [(r.id, r.text) for r in records] == [("k1", "multi\nline"), ("k2", "plain")]


def test_txt_one_document_a_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first doc\r\nsecond doc\n", encoding="utf-8")
    assert [(r.id, r.text) for r in read_corpus(path)] == [("0", "first doc"),
                                                           ("1", "second doc")]


def _bad(path, **kwargs) -> str:
    with pytest.raises(ExportError) as err:
        read_corpus(path, **kwargs)
    return str(err.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    assert _bad(path) == f"corpus file {path} does not exist; check --corpus"


def test_unknown_extension(tmp_path):
    path = tmp_path / "c.xml"
    path.write_text("<a/>")
    assert _bad(path) == (f"{path}: unknown corpus extension '.xml'; use one of .jsonl, .csv, "
                          f".txt, .parquet")


def test_missing_text_field(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "body": "x"}])
    assert _bad(path) == (f"{path} line 1: no field 'text' (fields: id, body); pass "
                          f"--text-field naming the text field")


def test_missing_id_on_a_later_record(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "text": "x"}, {"text": "y"}])
    assert _bad(path) == (f"{path} line 2: no id in field 'id'; give every record an id, or "
                          f"pass --id-field naming another field")


def test_explicit_id_field_missing(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "x"}])
    assert "no id in field 'uid'" in _bad(path, id_field="uid")


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"},
                                              {"id": "a", "text": "z"}])
    assert _bad(path) == f"{path} line 3: duplicate id 'a' (first at line 1); ids must be unique"


@pytest.mark.parametrize("text", ["", "   \t ", []], ids=["empty", "whitespace", "no-words"])
def test_empty_text(tmp_path, text):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "ok"}, {"id": "b", "text": text}])
    assert _bad(path) == (f"{path} line 2: field 'text' is empty or whitespace only; remove "
                          f"the record or give it text")


def test_empty_line_in_txt(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("one\n\nthree\n", encoding="utf-8")
    assert _bad(path).startswith(f"{path} line 2: field 'text' is empty or whitespace only")


def test_text_of_wrong_type(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": 3}])
    assert "field 'text' holds int; expected a string or a list of words" in _bad(path)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "costs \xa315"}\n')
    assert _bad(path) == (f"{path} line 2: byte 0xa3 at column 17 is not UTF-8; re-save the "
                          f"file as UTF-8")


def test_invalid_json_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    assert _bad(path).startswith(f"{path} line 2: not valid JSON")


def test_empty_corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n", encoding="utf-8")
    assert _bad(path) == f"{path}: the corpus holds no records; give it at least one text"


def test_pair_field_on_txt_refused(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a\n", encoding="utf-8")
    assert "a .txt corpus holds one text a line" in _bad(path, text_pair_field="ctx")


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    # A None entry in sys.modules makes `import pyarrow` raise ImportError, as if absent.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    assert _bad(path) == (f"{path}: reading .parquet needs pyarrow, which is not installed; "
                          f"run `pip install pyarrow` or convert the corpus to .jsonl")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")
def test_parquet_reads_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x y", "z"]}), path)
    assert [(r.id, r.text) for r in read_corpus(path)] == [("a", "x y"), ("b", "z")]


def test_builtin_bbc_records():
    records = default_corpus_records()
    assert len(records) == 2225
    assert records[0].id == "business/001" and records[0].label == "business"
    assert records[0].text.startswith("Ad sales boost Time Warner profit\n")
    assert sorted({r.label for r in records}) == ["business", "entertainment", "politics",
                                                  "sports", "tech"]
    assert len({r.id for r in records}) == 2225
    # sports/199.txt holds a bare 0xa3 byte: the documented cp1252 fallback reads it as "£".
    (mutu,) = [r for r in records if r.id == "sports/199"]
    assert "a £15.8m signing" in mutu.text
    json.dumps([r.__dict__ for r in records[:3]])  # plain, serialisable fields
