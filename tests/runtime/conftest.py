"""Shared helpers for the data/training tests: tiny caches written with cache_format."""

import json

import numpy as np
import pytest


def write_cache(path, records, *, hidden_size=8, dtype="fp32", metadata=None, seed=0):
    """records: {key: (token_ids, offsets or None)}; hidden states are seeded random."""
    import cache_format

    rng = np.random.default_rng(seed)
    meta = {"model": "tiny", "layer": 1, **(metadata or {})}
    with cache_format.create(path, hidden_size=hidden_size, dtype=dtype, codec="none",
                             metadata=meta) as w:
        for key, (ids, offsets) in records.items():
            hidden = rng.standard_normal((len(ids), hidden_size)).astype(np.float32)
            w.add(key, np.asarray(ids), hidden,
                  offsets=None if offsets is None else np.asarray(offsets))
    return cache_format.open(path)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


@pytest.fixture
def tiny_cache(tmp_path):
    return lambda records, **kw: write_cache(tmp_path / "cache", records, **kw)


@pytest.fixture
def jsonl():
    """jsonl(path, rows) writes rows as JSON lines and returns the path as str."""
    return write_jsonl


# --- a tiny BERT checkpoint, corpus and layer-K cache, for trainer / CLI tests -------------

WORDS = ["alpha", "beta", "gamma", "delta", "red", "blue", "green", "cat", "dog", "sun",
         "moon", "run", "jump", "bob", "ann", "paris", "rome", "the", "in", "with"]
PEOPLE, PLACES = {"bob", "ann"}, {"paris", "rome"}
TINY_LAYER = 2


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Folder of a random 4-layer BERT (hidden 32) with a fast word-piece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(d))
    return str(d)


TOPICS = {"cat": ["cat", "dog", "run", "jump"], "sun": ["sun", "moon", "alpha", "beta"],
          "red": ["red", "blue", "green", "gamma"]}


def tiny_rows(n=90, seed=0):
    """Texts whose topic sets most of their words, with names and places as entities."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        pool = TOPICS[topic] * 3 + ["bob", "ann", "paris", "rome", "the", "in", "with"]
        words = [topic] + [str(w) for w in rng.choice(pool, size=int(rng.integers(3, 9)))]
        tags = ["B-person" if w in PEOPLE else "B-geo-loc" if w in PLACES else "O" for w in words]
        rows.append({"id": f"t{i:03d}", "text": " ".join(words), "words": words,
                     "topic": topic, "tags": tags})
    return rows


def build_tiny_cache(model_dir, rows, out, *, layer=TINY_LAYER, dtype="fp32", corpus=None):
    """Cache of layer-`layer` states of `rows` computed with torch, as export would write it."""
    import torch
    from export.corpus import Record
    from export.fingerprint import weights_sha256
    from export.tokenize import load_tokenizer, tokenize
    from runtime.upper import load_full

    encoded = tokenize([Record(id=r["id"], text=r["text"]) for r in rows],
                       load_tokenizer(model_dir), max_length=32)
    full = load_full(model_dir)
    meta = {"model": model_dir, "layer": layer, "max_length": 32, "stride": 0,
            "corpus": corpus, "text_field": "text", "weights_sha256": weights_sha256(model_dir)}
    import cache_format

    with cache_format.create(out, hidden_size=32, dtype=dtype, codec="lz4", metadata=meta) as w:
        for e in encoded:
            ids = torch.as_tensor(e.input_ids, dtype=torch.long)[None]
            with torch.no_grad():
                hidden = full.hidden_states_at(ids, torch.ones_like(ids), layer)[0].numpy()
            w.add(e.key, e.input_ids, hidden, offsets=e.offsets)
    return str(out)


@pytest.fixture(scope="session")
def tiny_task(tmp_path_factory, tiny_model):
    """dict: model, corpus, cache (fp32), seq_labels, tok_labels paths of the tiny task."""
    d = tmp_path_factory.mktemp("tiny-task")
    rows = tiny_rows()
    corpus = write_jsonl(d / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    seq = write_jsonl(d / "seq.jsonl", [{"id": r["id"], "label": r["topic"]} for r in rows])
    tok = write_jsonl(d / "tok.jsonl", [{"id": r["id"], "words": r["words"], "label": r["tags"]}
                                        for r in rows])
    cache = build_tiny_cache(tiny_model, rows, d / "cache", corpus=corpus)
    return {"model": tiny_model, "corpus": corpus, "cache": cache, "seq_labels": seq,
            "tok_labels": tok, "dir": str(d)}
