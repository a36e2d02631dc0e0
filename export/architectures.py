"""The encoder architectures export supports, and what differs between them.

One table, looked up by the config's `model_type`: which config key holds the number of layers
(DistilBERT says `n_layers`), whether onnxruntime's transformer optimiser knows the graph, and
how many position slots are reserved before the first usable one (RoBERTa-style models number
positions from `pad_token_id + 1`, so 514 embeddings give 512 usable positions).
"""
from __future__ import annotations

import dataclasses
import numbers

from .errors import ExportError


@dataclasses.dataclass(frozen=True)
class Architecture:
    layers_key: str  # config attribute holding the number of transformer layers
    ort_model_type: str | None  # onnxruntime.transformers.optimizer model_type; None: skip
    padded_positions: bool  # positions start after pad_token_id (RoBERTa, XLM-R, MPNet)
    # A norm the model applies after its last layer: hidden_states[K] is taken before it, so the
    # truncated model must drop it, and Optimum (which reloads from disk) cannot export that.
    final_norm: str | None = None


ARCHITECTURES = {
    "bert": Architecture("num_hidden_layers", "bert", False),
    "roberta": Architecture("num_hidden_layers", "bert", True),
    "xlm-roberta": Architecture("num_hidden_layers", "bert", True),
    "camembert": Architecture("num_hidden_layers", "bert", True),
    "distilbert": Architecture("n_layers", "bert", False),
    "electra": Architecture("num_hidden_layers", "bert", False),
    # The BERT fusion patterns do not match these graphs; onnxruntime's own session-level
    # optimisation still runs on them.
    "mpnet": Architecture("num_hidden_layers", None, True),
    "deberta-v2": Architecture("num_hidden_layers", None, False),
    "modernbert": Architecture("num_hidden_layers", None, False, final_norm="final_norm"),
}


def architecture_of(config) -> Architecture:
    """The table entry for a transformers config, or a one-line error naming what is known."""
    return architecture_for(getattr(config, "model_type", None))


def architecture_for(model_type: str | None) -> Architecture:
    """The table entry for a `model_type` string, or a one-line error naming what is known."""
    if model_type not in ARCHITECTURES:
        raise ExportError(f"architecture {model_type!r} is not supported; supported: "
                          f"{', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[model_type]


def num_layers(config) -> int:
    """Number of transformer layers of the full model."""
    return int(getattr(config, architecture_of(config).layers_key))


def hidden_size(config) -> int:
    """Width of the hidden states (DistilBERT calls it `dim`)."""
    return int(getattr(config, "hidden_size", None) or getattr(config, "dim"))


def max_positions(config) -> int:
    """Longest sequence (special tokens included) the position embeddings allow."""
    limit = int(getattr(config, "max_position_embeddings"))
    if architecture_of(config).padded_positions:
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return limit


def layer_problem(layer, total: int, model_type: str | None = None) -> str | None:
    """What is wrong with splitting a `total`-layer model after layer K, or None.

    The one rule for K, for export and runtime alike: an integer with 1 <= K < total (the lower
    K layers are cached, at least one layer stays on top).
    """
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 1 <= layer < total:
        model = f"{total}-layer {model_type} model" if model_type else f"{total}-layer model"
        return (f"layer K={layer!r} is out of range for this {model}; pick an integer "
                f"1 <= K <= {total - 1} (at least one layer must stay above the cache)")
    return None


def check_model_layer(config, layer: int) -> None:
    """`layer_problem` for a transformers config, as an ExportError."""
    problem = layer_problem(layer, num_layers(config), config.model_type)
    if problem is not None:
        raise ExportError(problem)
