"""The streaming build: the corpus is read a window at a time, windows are cut by record number
(the same in every shard), resume stays bit-identical across windows, the first commit comes
early, and the corpus reader streams, counts cheaply and finds duplicates across blocks."""
from __future__ import annotations

import numpy as np
import pytest

import cache_format
from export_testkit import TEXTS, write_jsonl
from export import build as build_module
from export import corpus as corpus_module
from export.build import BuildConfig, build_cache, shard_windows
from export.corpus import Record, estimate_records, iter_corpus
from export.errors import ExportError


def _config(model, corpus, out, **kw) -> BuildConfig:
    kw = {"layer": 2, "dtype": "fp32", "max_length": 32, "batch_tokens": 96, "threads": 1,
          "progress": False, **kw}
    return BuildConfig(model=str(model), corpus=str(corpus), out=str(out), **kw)


class _Crash(RuntimeError):
    pass


def _records(n):
    return [Record(id=str(i), text="x") for i in range(n)]


@pytest.mark.parametrize("n, window, shards, index, want", [
    (7, 3, 1, 0, [["0", "1", "2"], ["3", "4", "5"], ["6"]]),
    (7, 3, 2, 0, [["0", "2"], ["4"], ["6"]]),
    (7, 3, 2, 1, [["1"], ["3", "5"]]),
    (6, 3, 3, 2, [["2"], ["5"]]),
], ids=["one-shard", "shard-0-of-2", "shard-1-of-2", "shard-2-of-3"])
def test_windows_are_cut_by_record_number_in_every_shard(n, window, shards, index, want):
    got = [[r.id for r in w] for w in shard_windows(_records(n), window, shards, index)]
    assert got == want


def test_shards_together_hold_every_record_once():
    ids = sorted(r.id for i in range(3) for w in shard_windows(_records(50), 8, 3, i) for r in w)
    assert ids == sorted(str(i) for i in range(50))


def test_first_batch_is_encoded_after_reading_one_window(tiny_bert, small_corpus, tmp_path,
                                                         monkeypatch):
    read = []

    def counting(config):
        for record in corpus_module.iter_corpus(config.corpus):
            read.append(record.id)
            yield record

    monkeypatch.setattr(build_module, "_load_records", counting)
    seen = []
    build_cache(_config(tiny_bert, small_corpus, tmp_path / "c", window=5),
                on_batch=lambda n: seen.append(len(read)))
    # The first batch ran when one window (plus the record that proved it full) was read.
    assert seen[0] <= 6 and read == [f"doc-{i:02d}" for i in range(len(TEXTS))]


def test_resume_across_windows_equals_an_uninterrupted_build(tiny_bert, small_corpus, tmp_path):
    kw = dict(dtype="int8", commit_every_s=0.0, window=7)  # commit after every batch

    def crash(number):
        if number >= 4:  # in the second window
            raise _Crash(number)

    whole = build_cache(_config(tiny_bert, small_corpus, tmp_path / "whole", **kw))
    resumed = tmp_path / "resumed"
    with pytest.raises(_Crash):
        build_cache(_config(tiny_bert, small_corpus, resumed, **kw), on_batch=crash)
    committed = len(cache_format.open(resumed))
    assert 7 < committed < len(TEXTS)
    build_cache(_config(tiny_bert, small_corpus, resumed, **kw))
    a, b = cache_format.open(whole), cache_format.open(resumed)
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        assert np.array_equal(a.get(key), b.get(key)), key


def test_first_commit_comes_before_commit_every_s(tiny_bert, small_corpus, tmp_path,
                                                  monkeypatch):
    monkeypatch.setattr(build_module, "_FIRST_COMMIT_S", 0.0)

    def crash(number):
        if number >= 2:
            raise _Crash(number)

    out = tmp_path / "c"
    with pytest.raises(_Crash):
        build_cache(_config(tiny_bert, small_corpus, out, commit_every_s=3600.0), on_batch=crash)
    # Batch 0 was committed at once; batches 1 and 2 only when the crash closed the writer.
    assert len(cache_format.open(out)) > 0


def test_window_is_checked_up_front():
    with pytest.raises(ExportError, match=r"--window must be an integer >= 1, got 0"):
        BuildConfig(layer=1, window=0)


def test_iter_corpus_yields_records_before_a_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": \n', encoding="utf-8")
    got = []
    with pytest.raises(ExportError, match=r"line 3: not valid JSON"):
        for record in iter_corpus(path):
            got.append(record.text)
    assert got == ["a", "b"]


@pytest.mark.parametrize("block", [2, 3, 4096], ids=["block-2", "block-3", "block-4096"])
def test_duplicate_ids_are_found_across_blocks(tmp_path, monkeypatch, block):
    monkeypatch.setattr(corpus_module, "_CHECK_BLOCK", block)
    rows = [{"id": f"k{i}", "text": "t"} for i in range(9)] + [{"id": "k1", "text": "t"}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(ExportError) as err:
        list(iter_corpus(path))
    assert str(err.value) == f"{path} line 10: duplicate id 'k1' (first at line 2); ids must be unique"


def test_a_duplicate_id_is_reported_before_a_later_bad_field(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_module, "_CHECK_BLOCK", 3)
    rows = [{"id": "a", "text": "t"}, {"id": "b", "text": "t"}, {"id": "c", "text": "t"},
            {"id": "a", "text": "t"}, {"id": "d", "text": ""}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(ExportError, match=r"line 4: duplicate id 'a' \(first at line 1\)"):
        list(iter_corpus(path))


@pytest.mark.parametrize("name, content, want", [
    ("c.jsonl", '{"text": "a"}\n{"text": "b"}\n', 2),
    ("c.jsonl", '{"text": "a"}\n{"text": "b"}', 2),
    ("c.txt", "one\ntwo\nthree\n", 3),
    ("c.csv", "id,text\n1,a\n2,b\n", 2),
    ("c.md", "x\n", None),
], ids=["jsonl", "no-final-newline", "txt", "csv-header", "unknown"])
def test_estimate_records_counts_lines(tmp_path, name, content, want):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert estimate_records(path) == want


def test_bf16_build_is_close_to_fp32_and_refuses_an_fp32_rerun(tiny_bert, small_corpus,
                                                                tmp_path):
    fp32 = cache_format.open(build_cache(_config(tiny_bert, small_corpus, tmp_path / "fp32")))
    out = build_cache(_config(tiny_bert, small_corpus, tmp_path / "bf16", compute="bf16"))
    bf16 = cache_format.open(out)
    assert bf16.manifest["compute"] == "bf16" and "compute" not in fp32.manifest
    assert not (out / "onnx").exists()  # PyTorch runs the lower stack: nothing exported
    for key in fp32.keys():
        a, b = fp32.get(key), bf16.get(key)
        assert np.linalg.norm(b - a) <= 0.05 * np.linalg.norm(a), key
    with pytest.raises(ExportError, match=r"built with other settings \(compute 'bf16' != None\)"):
        build_cache(_config(tiny_bert, small_corpus, out))


def test_bf16_build_warns_on_a_cpu_without_bf16_and_is_refused_on_cuda(tiny_bert, small_corpus,
                                                                       tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "bf16_warning", lambda: "warning: no bf16 here")
    lines = []
    build_cache(_config(tiny_bert, small_corpus, tmp_path / "bf16", compute="bf16"),
                log=lines.append)
    assert "warning: no bf16 here" in lines
    lines.clear()
    build_cache(_config(tiny_bert, small_corpus, tmp_path / "fp32"), log=lines.append)
    assert not any(line.startswith("warning") for line in lines)
    with pytest.raises(ExportError, match="--compute bf16 runs the lower stack in PyTorch on "
                                          "the CPU; for --device cuda leave --compute at fp32"):
        _config(tiny_bert, small_corpus, tmp_path / "gpu", compute="bf16", device="cuda")
