"""Shared benchmark inputs: real hidden states of the default model on real BBC articles."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCH_LAYER = 3
BENCH_DOCS = 64
BENCH_MAX_LENGTH = 256


def real_layer_states(num_docs: int, layer: int = BENCH_LAYER, max_length: int = BENCH_MAX_LENGTH):
    """[(key, token_ids, hidden float32 [T, H])] of the default model at `layer`, every 35th
    BBC article (all five topics)."""
    from transformers import AutoTokenizer

    from bench.endtoend import layer_states
    from export.defaults import default_corpus_records, default_model_path

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    records = default_corpus_records()[::35][:num_docs]
    keyed_ids = [(r.id, np.asarray(tokenizer(r.text, truncation=True, max_length=max_length)
                                   ["input_ids"], dtype=np.int64)) for r in records]
    return layer_states(path, layer, keyed_ids)


@pytest.fixture(scope="session")
def bbc_states():
    return real_layer_states(BENCH_DOCS)
