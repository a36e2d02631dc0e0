"""Helpers for the export tests: tiny random-initialised checkpoints built here (no
downloads) and small corpora. A module of its own (not conftest) so that `import` finds it
by a name no other test folder uses."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

TINY_LAYERS = 4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Markets rallied on Friday after the central bank held rates.",
    "A short one.",
    "Embedding recycling caches the hidden states of the lower layers once, so that the "
    "upper layers can be trained many times over from the cache instead of the raw text.",
    "Ünïcödé text, with accents: café, naïve, Zürich.",
    "Numbers like 3.14 and 2,225 split into several word pieces.",
    "Yet another sentence about football, films and politics.",
    "Tokens per second is what the benchmark measures.",
] * 3


def save_tiny_model(path: Path, model_type: str = "bert", *, vocab_size: int | None = None,
                    seed: int = 0) -> Path:
    """A random-initialised 4-layer, hidden-32 checkpoint of `model_type` in `path`."""
    import torch
    from transformers import AutoConfig, AutoModel

    common = dict(vocab_size=vocab_size or 99, hidden_size=32, num_hidden_layers=TINY_LAYERS,
                  num_attention_heads=4, intermediate_size=37, max_position_embeddings=128)
    extra = {
        "bert": {},
        "roberta": dict(max_position_embeddings=130, pad_token_id=1, type_vocab_size=1),
        "xlm-roberta": dict(max_position_embeddings=130, pad_token_id=1, type_vocab_size=1),
        "electra": dict(embedding_size=16),
        "mpnet": dict(max_position_embeddings=130),
        "deberta-v2": dict(relative_attention=True, position_buckets=16, type_vocab_size=0,
                           pos_att_type=["p2c", "c2p"], max_relative_positions=64,
                           position_biased_input=False),
        "modernbert": dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, cls_token_id=2,
                           sep_token_id=3, global_attn_every_n_layers=2, local_attention=16),
    }
    if model_type == "distilbert":
        config = AutoConfig.for_model("distilbert", vocab_size=common["vocab_size"], dim=32,
                                      n_layers=TINY_LAYERS, n_heads=4, hidden_dim=37,
                                      max_position_embeddings=128)
    else:
        config = AutoConfig.for_model(model_type, **{**common, **extra[model_type]})
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(str(path))
    return path


def copy_default_tokenizer(path: Path) -> None:
    from export.defaults import default_model_path

    for name in TOKENIZER_FILES:
        shutil.copy(default_model_path() / name, path / name)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
