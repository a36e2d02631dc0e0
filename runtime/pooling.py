"""runtime.pooling: how a sequence-classification head turns token states into one vector.

`resolve_pooling` turns the CLI's `auto` into a concrete choice for a checkpoint (following
sentence-transformers' own pooling config where the checkpoint has one); `masked_mean` is the
mean over real tokens that "mean" pooling and ModernBERT's mean classifier pooling use.
"""

from __future__ import annotations

import json
import os

import torch

from runtime.errors import RuntimeConfigError
from runtime.options import POOLINGS


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states: hidden [B, T, H], mask [B, T] -> [B, H]."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)


def check_pooling(pooling: str) -> str:
    """`pooling` if it is one of POOLINGS, else a RuntimeConfigError naming them."""
    if pooling not in POOLINGS:
        raise RuntimeConfigError(f"pooling {pooling!r} is unknown; expected auto or one "
                                 f"of {list(POOLINGS)}")
    return pooling


def resolve_pooling(requested: str, model_path) -> str:
    """`auto` follows a sentence-transformers checkpoint's pooling, else "pooler".

    all-MiniLM-L6-v2 and all-mpnet-base-v2 were trained through their mean-pooled output; their
    BERT/MPNet pooler was never trained for classification (a probe on it stays at the majority
    class), so `auto` reads `modules.json` and the Pooling module's `config.json` when present.
    """
    if requested != "auto":
        return check_pooling(requested)
    modules = os.path.join(str(model_path), "modules.json")
    if not os.path.isfile(modules):
        return "pooler"
    with open(modules, encoding="utf-8") as f:
        entries = json.load(f)
    for entry in entries if isinstance(entries, list) else []:
        if str(entry.get("type", "")).endswith("models.Pooling"):
            pooling_config = os.path.join(str(model_path), entry.get("path", ""), "config.json")
            if not os.path.isfile(pooling_config):
                return "mean"  # sentence-transformers' own default
            with open(pooling_config, encoding="utf-8") as f:
                modes = json.load(f)
            return "cls" if modes.get("pooling_mode_cls_token") else "mean"
    return "pooler"
