"""build_cache end to end on a tiny model: values, keys, metadata, resume, refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cache_format
from export_testkit import TEXTS, write_jsonl
from export.build import BuildConfig, build_cache
from export.errors import ExportError

METADATA_KEYS = {"model", "weights_sha256", "layer", "num_layers", "tokenizer_sha256",
                 "max_length", "stride", "truncation", "text_field", "text_pair_field",
                 "corpus", "architecture"}


def _config(model, corpus, out, **kw) -> BuildConfig:
    kw = {"layer": 2, "dtype": "fp32", "max_length": 32, "batch_tokens": 96, "threads": 1,
          "progress": False, **kw}
    return BuildConfig(model=str(model), corpus=str(corpus), out=str(out), **kw)


def test_cache_holds_hidden_states_k_of_real_tokens(tiny_bert, small_corpus, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    out = build_cache(_config(tiny_bert, small_corpus, tmp_path / "cache"))
    r = cache_format.open(out)
    assert sorted(r.keys()) == [f"doc-{i:02d}" for i in range(len(TEXTS))]
    assert METADATA_KEYS <= set(r.manifest) and r.manifest["layer"] == 2
    assert r.manifest["corpus"] == str(small_corpus.resolve())
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModel.from_pretrained(str(tiny_bert)).eval()
    for i in (0, 2, 3):  # a long, a short and a truncated text
        enc = tokenizer(TEXTS[i], truncation=True, max_length=32, return_tensors="pt",
                        return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0].numpy()
        with torch.inference_mode():
            want = model(**enc, output_hidden_states=True).hidden_states[2][0].numpy()  # (T, H)
        key = f"doc-{i:02d}"
        assert r.token_ids(key).tolist() == enc["input_ids"][0].tolist()
        assert np.array_equal(r.offsets(key), offsets)
        assert np.abs(r.get(key) - want).max() <= 1e-4


def test_stride_windows_are_cached_as_id_n(tiny_bert, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": TEXTS[3]},
                                                 {"id": "short", "text": TEXTS[2]}])
    out = build_cache(_config(tiny_bert, corpus, tmp_path / "cache", max_length=16, stride=4))
    keys = cache_format.open(out).keys()
    assert "short#0" in keys and {"long#0", "long#1", "long#2"} <= set(keys)
    assert all(k.startswith(("long#", "short#")) for k in keys)


class _Crash(RuntimeError):
    pass


def _crash_after(n):
    def hook(number):
        if number + 1 >= n:
            raise _Crash(f"simulated crash after batch {number}")
    return hook


def test_resume_after_a_crash_equals_an_uninterrupted_build(tiny_bert, small_corpus, tmp_path):
    kw = dict(dtype="int8", commit_every_s=0.0)  # commit after every batch
    whole = build_cache(_config(tiny_bert, small_corpus, tmp_path / "whole", **kw))
    resumed = tmp_path / "resumed"
    with pytest.raises(_Crash):
        build_cache(_config(tiny_bert, small_corpus, resumed, **kw), on_batch=_crash_after(3))
    committed = len(cache_format.open(resumed))  # the crash kept what was committed
    assert 0 < committed < len(TEXTS)
    messages = []
    build_cache(_config(tiny_bert, small_corpus, resumed, **kw), log=messages.append)
    assert any(f"{committed} were already committed" in m for m in messages)
    a, b = cache_format.open(whole), cache_format.open(resumed)
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        assert np.array_equal(a.get(key), b.get(key)), key
        assert np.array_equal(a.token_ids(key), b.token_ids(key))


def test_rerun_of_a_finished_cache_computes_nothing(tiny_bert, small_corpus, tmp_path):
    config = _config(tiny_bert, small_corpus, tmp_path / "cache")
    build_cache(config)
    messages = []
    build_cache(config, log=messages.append)
    assert any(m.startswith("encoded 0 records (0 tokens)") and
               m.endswith(f"{len(TEXTS)} were already committed") for m in messages)


def test_out_dir_with_another_layer_is_refused_and_kept(tiny_bert, small_corpus, tmp_path):
    out = build_cache(_config(tiny_bert, small_corpus, tmp_path / "cache"))
    before = sorted(p.name for p in out.rglob("*"))
    with pytest.raises(ExportError) as err:
        build_cache(_config(tiny_bert, small_corpus, out, layer=3))
    assert str(err.value) == (f"--out {out} holds a cache built with other settings (layer 2 "
                              f"!= 3); pass another --out or delete it")
    assert sorted(p.name for p in out.rglob("*")) == before
    assert len(cache_format.open(out)) == len(TEXTS)


def test_out_dir_with_foreign_files_is_refused(tiny_bert, small_corpus, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ExportError, match=r"holds files that are not a cache \(thesis.tex\)"):
        build_cache(_config(tiny_bert, small_corpus, tmp_path / "mine"))


@pytest.mark.parametrize("field, value, message", [
    ("dtype", "int4", "--dtype 'int4' is not one of int8, fp16, fp32"),
    ("codec", "gzip", "--codec 'gzip' is not one of lz4, none, zstd"),
    ("batch_tokens", 0, "--batch-tokens must be an integer >= 1, got 0"),
    ("shard_index", 2, "--shard-index 2 / --num-shards 2 are out of range"),
], ids=["dtype", "codec", "batch-tokens", "shard-index"])
def test_config_checked_up_front(field, value, message):
    kw = {"layer": 1, field: value}
    if field == "shard_index":
        kw["num_shards"] = 2
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BuildConfig(**kw)


def test_model_without_tokenizer_is_refused(tmp_path, small_corpus):
    from export_testkit import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "model", "bert")
    with pytest.raises(ExportError, match=r"has no tokenizer \(none of tokenizer.json, .*\); "
                                          r"save it beside the model with tokenizer"):
        build_cache(_config(model_dir, small_corpus, tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()


def test_pairs_with_stride_match_transformers_window_by_window(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    question, context = "who held rates?", TEXTS[3] + " " + TEXTS[1]
    corpus = write_jsonl(tmp_path / "qa.jsonl", [{"id": "q1", "question": question,
                                                  "context": context}])
    out = build_cache(_config(tiny_bert, corpus, tmp_path / "cache", max_length=24, stride=6,
                              text_field="question", text_pair_field="context"))
    r = cache_format.open(out)
    assert r.manifest["truncation"] == "only_second"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    enc = tokenizer(question, context, truncation="only_second", max_length=24, stride=6,
                    return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding=True, return_tensors="pt")
    assert sorted(r.keys()) == sorted(f"q1#{n}" for n in range(len(enc["input_ids"])))
    model = AutoModel.from_pretrained(str(tiny_bert)).eval()
    with torch.inference_mode():
        want = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     token_type_ids=enc["token_type_ids"],
                     output_hidden_states=True).hidden_states[2].numpy()  # (W, T, H)
    for n in range(len(enc["input_ids"])):
        real = int(enc["attention_mask"][n].sum())
        key = f"q1#{n}"
        assert r.token_ids(key).tolist() == enc["input_ids"][n, :real].tolist()
        assert r.offsets(key).tolist() == enc["offset_mapping"][n, :real].tolist()
        assert np.abs(r.get(key) - want[n, :real]).max() <= 1e-4
