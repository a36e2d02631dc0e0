"""Tiny random-initialised encoders of every supported family, built in memory (no downloads).

Shared by the runtime model-side tests. Each config has N=4 layers, hidden 32, 4 heads, so
K = 1, 2, 3 cover the first, middle and last split. `batch(config)` gives a right-padded batch
with different lengths, as the cache loader produces.
"""

from __future__ import annotations

import torch

NUM_LAYERS = 4
LENGTHS = (12, 7, 3)
_COMMON = dict(vocab_size=100, num_attention_heads=4, intermediate_size=64)


def _bert_like(cls_name: str, **extra):
    import transformers

    cls = getattr(transformers, cls_name)
    kw = dict(_COMMON, hidden_size=32, num_hidden_layers=NUM_LAYERS, max_position_embeddings=64)
    kw.update(extra)
    return cls(**kw)


def _distilbert():
    from transformers import DistilBertConfig

    return DistilBertConfig(vocab_size=100, dim=32, n_layers=NUM_LAYERS, n_heads=4, hidden_dim=64,
                            max_position_embeddings=64)


def _deberta_v3(**extra):
    # DeBERTa-v3 style: bucketed relative positions, shared key projections, p2c + c2p.
    kw = dict(relative_attention=True, position_buckets=16, max_relative_positions=-1,
              share_att_key=True, pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm",
              position_biased_input=False, type_vocab_size=0)
    kw.update(extra)
    return _bert_like("DebertaV2Config", **kw)


def _modernbert():
    # local_attention=8 < longest length 12, so the sliding-window mask matters.
    return _bert_like("ModernBertConfig", global_attn_every_n_layers=2, local_attention=8,
                      pad_token_id=0, eos_token_id=1, bos_token_id=2, cls_token_id=2, sep_token_id=1)


# id -> builder of a transformers config
CONFIGS = {
    "bert": lambda: _bert_like("BertConfig"),
    "bert-relative-key-query": lambda: _bert_like("BertConfig", position_embedding_type="relative_key_query"),
    "roberta": lambda: _bert_like("RobertaConfig", pad_token_id=1, max_position_embeddings=66),
    "xlm-roberta": lambda: _bert_like("XLMRobertaConfig", pad_token_id=1, max_position_embeddings=66),
    "camembert": lambda: _bert_like("CamembertConfig", pad_token_id=1, max_position_embeddings=66),
    "distilbert": _distilbert,
    "electra-e16": lambda: _bert_like("ElectraConfig", embedding_size=16),
    "mpnet": lambda: _bert_like("MPNetConfig", max_position_embeddings=66, pad_token_id=1),
    "deberta-v3": _deberta_v3,
    "deberta-v2-conv": lambda: _deberta_v3(conv_kernel_size=3, position_biased_input=True, type_vocab_size=2),
    "modernbert": _modernbert,
}
IDS = list(CONFIGS)


def make_config(name: str, attn_implementation: str | None = "eager"):
    config = CONFIGS[name]()
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def make_base(name: str, attn_implementation: str | None = "eager", seed: int = 0):
    """A random-initialised base model (AutoModel class) in eval mode."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    config = make_config(name, attn_implementation)
    return AutoModel.from_config(config).eval()


def batch(config, lengths=LENGTHS, seed: int = 1):
    """Right-padded (input_ids [B, T], attention_mask [B, T]) with the given real lengths."""
    gen = torch.Generator().manual_seed(seed)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, config.vocab_size, (n,), generator=gen)
        mask[row, :n] = 1
    return ids, mask


def save_tiny(name: str, root, seed: int = 0):
    """Save a tiny base model of family `name` under `root` (once) and return its folder.

    The attention implementation is not saved; pass attn_implementation when loading.
    """
    from pathlib import Path

    folder = Path(root) / f"{name}-{seed}"
    if not (folder / "config.json").exists():
        make_base(name, None, seed).save_pretrained(folder)
    return folder


def real_positions(x, mask):
    """Rows of x [B, T, ...] at the real (mask = 1) positions, flattened: [n_real, ...]."""
    return x[mask.bool()]


def recycled_and_frozen(name: str, k: int, task: str = "seq-cls", num_labels: int = 3):
    """A RecycledModel above layer k and a frozen FullModel from the same weights and head, in
    eval mode, with a batch: (recycled, frozen, (hidden_k, ids, mask)); hidden_k is what the
    cache would hold."""
    import copy

    from runtime.heads import build_head
    from runtime.models import FullModel, RecycledModel
    from runtime.upper import full_from_model, upper_from_model

    base = make_base(name)
    ids, mask = batch(base.config)
    upper = upper_from_model(copy.deepcopy(base), k)
    full = full_from_model(base)
    torch.manual_seed(3)
    head = build_head(task, upper, num_labels)
    recycled = RecycledModel(upper, head).eval()
    frozen = FullModel(full, copy.deepcopy(head), frozen_below=k).eval()
    with torch.no_grad():
        hidden = full.hidden_states_at(ids, mask, k)
    return recycled, frozen, (hidden, ids, mask)
