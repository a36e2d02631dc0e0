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
    BBC article (all five topics), computed with transformers in eager PyTorch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from export.defaults import default_corpus_records, default_model_path

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    records = default_corpus_records()[::35][:num_docs]
    out = []
    with torch.inference_mode():
        for rec in records:
            enc = tokenizer(rec.text, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer][0]
            out.append((rec.id, enc["input_ids"][0].numpy(), hidden.numpy().astype(np.float32)))
    return out


@pytest.fixture(scope="session")
def bbc_states():
    return real_layer_states(BENCH_DOCS)
