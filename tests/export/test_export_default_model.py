"""Behaviour with the real default model (all-MiniLM-L6-v2) on a handful of BBC articles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cache_format
from export_testkit import write_jsonl
from export.build import BuildConfig, build_cache
from export.defaults import default_corpus_records, default_model_path


def test_default_out_dir_name():
    assert BuildConfig(layer=3).out_dir() == Path("caches/all-MiniLM-L6-v2-bbcnews-L3-int8")
    assert BuildConfig(layer=2, model="/m/my-bert", corpus="x/news.jsonl",
                       dtype="fp16").out_dir() == Path("caches/my-bert-news-L2-fp16")


@pytest.mark.slow
def test_default_model_cache_matches_transformers(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    records = default_corpus_records()[::600][:4]  # one article from four topics
    corpus = write_jsonl(tmp_path / "bbc4.jsonl",
                         [{"id": r.id, "text": r.text} for r in records])
    out = build_cache(BuildConfig(layer=3, corpus=str(corpus), out=str(tmp_path / "cache"),
                                  dtype="fp32", max_length=128, threads=1, progress=False))
    r = cache_format.open(out)
    assert r.manifest["model"] == str(default_model_path().resolve())
    assert r.manifest["model_name"] == "all-MiniLM-L6-v2" and r.manifest["num_layers"] == 6
    model_dir = str(default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    for record in records:
        enc = tokenizer(record.text, truncation=True, max_length=128, return_tensors="pt")
        with torch.inference_mode():
            want = model(**enc, output_hidden_states=True).hidden_states[3][0].numpy()  # (T, H)
        got = r.get(record.id)
        assert got.shape == want.shape == (128, 384)
        assert np.abs(got - want).max() <= 1e-4
