"""runtime.upper: the layers above K of a Hugging Face encoder, fed from a layer-K cache.

`load_upper(path, layer=K)` loads the checkpoint, keeps layers K..N-1 and the encoder-level state
they need, and drops the embeddings and lower layers. Fed the full model's hidden_states[K] (what
the cache holds) it returns the full model's last_hidden_state. `load_full(path)` is the whole
encoder behind the same kind of interface (`.config`, `.layers`), for the no-recycling baselines;
both run the same per-family code (`runtime.upper_archs`) above layer K.

Batches are right-padded: real tokens first, then padding, as the cache loader produces them.
Positions that models derive from token order (MPNet, DeBERTa, ModernBERT) therefore match.
"""

from __future__ import annotations

import torch
from torch import nn

from export import architectures
from runtime.errors import RuntimeConfigError
from runtime.architectures import family_class, is_supported, supported_model_types
from runtime.upper_archs import Family

__all__ = ["UpperStack", "FullEncoder", "load_upper", "load_full", "num_layers", "check_layer",
           "upper_from_model", "full_from_model", "is_supported", "supported_model_types"]


def _load_config(model_path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_path))
    except (OSError, ValueError) as exc:
        raise RuntimeConfigError(
            f"cannot read a transformers config from {str(model_path)!r} ({exc}); "
            "pass the folder of a saved Hugging Face checkpoint"
        ) from exc


def _load_base_model(model_path, attn_implementation: str | None):
    from transformers import AutoModel

    kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    family_class(_load_config(model_path))  # refuse unsupported architectures before loading
    try:
        return AutoModel.from_pretrained(str(model_path), **kwargs)
    except OSError as exc:  # config present, weights missing or unreadable
        raise RuntimeConfigError(
            f"cannot load the weights of {str(model_path)!r} ({exc}); pass a complete checkpoint folder"
        ) from exc


def _layer_list(model: nn.Module, family: type[Family]) -> nn.ModuleList:
    module = model
    for part in family.layers_path.split("."):
        module = getattr(module, part)
    return module


def num_layers(model_path) -> int:
    """Number of transformer layers N of the checkpoint at `model_path` (config only, no weights)."""
    return architectures.num_layers(_load_config(model_path))


def check_layer(layer: int, total: int) -> int:
    """Return `layer` if it can split a `total`-layer model (export's one rule), else raise
    RuntimeConfigError."""
    problem = architectures.layer_problem(layer, total)
    if problem is not None:
        raise RuntimeConfigError(problem)
    return int(layer)


def _pooler_state(model: nn.Module) -> dict | None:
    """The checkpoint's BERT-style pooler weights (dense), if the base model has one."""
    pooler = getattr(model, "pooler", None)
    if pooler is None or not hasattr(pooler, "dense"):
        return None
    return {k: v.detach().clone() for k, v in pooler.state_dict().items()}


def _check_inputs(hidden: torch.Tensor, attention_mask: torch.Tensor, width: int | None) -> None:
    if hidden.dim() != 3 or (width is not None and hidden.shape[-1] != width):
        raise RuntimeConfigError(
            f"hidden has shape {tuple(hidden.shape)}; expected [batch, tokens, {width}] "
            "(float hidden states of layer K, as stored in the cache)"
        )
    if tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise RuntimeConfigError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
            f"{tuple(hidden.shape[:2])} (one 0/1 entry per token of hidden)"
        )


class _Stack(nn.Module):
    """Layers `layer`..`layer+len(layers)-1` of a checkpoint plus the family's shared state."""

    def __init__(self, config, family: Family, layers: nn.ModuleList, first: int, pooler_state):
        super().__init__()
        self.config = config
        self.family = family
        self.layers = layers
        self.layer = first  # absolute index of layers[0] in the checkpoint
        # Plain attribute (not a buffer): only build_head reads it, it is not trained or saved.
        self.pooler_state = pooler_state

    @property
    def num_layers(self) -> int:
        """N: the number of layers of the whole checkpoint."""
        return architectures.num_layers(self.config)

    def run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, H] entering layers[0], mask [B, T] -> last_hidden_state [B, T, H]."""
        mask = attention_mask.to(device=hidden.device, dtype=torch.long)
        state = self.family.prepare(hidden, mask)
        for offset, layer in enumerate(self.layers):
            hidden = self.family.run_layer(layer, hidden, state, self.layer + offset)
        return self.family.finish(hidden)


class UpperStack(_Stack):
    """Layers K..N-1 of an encoder: forward(hidden [B,T,H] of layer K, mask [B,T]) -> [B,T,H].

    Attributes: `config` (the transformers config), `layer` (K), `layers` (nn.ModuleList of the
    N-K upper layers, where adapters go), `family` (shared encoder-level state), `num_layers` (N),
    `pooler_state` (the checkpoint's BERT pooler weights or None, for `build_head`).
    """

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        _check_inputs(hidden, attention_mask, self.config.hidden_size)
        # The cache dequantises to float32; a stack moved to bf16/fp16 takes its own dtype.
        weight_dtype = next(self.layers.parameters()).dtype
        return self.run_layers(hidden.to(weight_dtype), attention_mask)


class FullEncoder(_Stack):
    """The whole encoder: forward(input_ids [B,T], mask [B,T]) -> last_hidden_state [B,T,H].

    Same attributes as UpperStack with `layer` = 0 and `layers` all N layers, plus `embeddings`.
    `hidden_states_at(input_ids, mask, K)` gives hidden_states[K], what the cache stores.
    """

    def __init__(self, config, family, layers, embeddings: nn.Module, pooler_state):
        super().__init__(config, family, layers, 0, pooler_state)
        self.embeddings = embeddings

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """hidden_states[0]: the embedding output the first layer sees."""
        return self.family.embed(self.embeddings, input_ids, attention_mask, token_type_ids)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """input_ids, attention_mask [B, T] (token_type_ids [B, T] for sentence pairs)."""
        hidden = self.embed(input_ids, attention_mask, token_type_ids)
        return self.run_layers(hidden, attention_mask)

    def hidden_states_at(self, input_ids, attention_mask, layer: int, token_type_ids=None):
        """hidden_states[K] of the full model: embeddings then layers 0..K-1, no final norm."""
        check_layer(layer, len(self.layers))
        hidden = self.embed(input_ids, attention_mask, token_type_ids)
        mask = attention_mask.to(device=hidden.device, dtype=torch.long)
        state = self.family.prepare(hidden, mask)
        for index in range(layer):
            hidden = self.family.run_layer(self.layers[index], hidden, state, index)
        return hidden


def upper_from_model(model: nn.Module, layer: int) -> UpperStack:
    """Split an in-memory transformers base model: keep layers `layer`..N-1, drop the rest.

    The model is taken apart (its layer list is cut); do not use it afterwards.
    """
    family_cls = family_class(model.config)
    layers = _layer_list(model, family_cls)
    check_layer(layer, len(layers))
    upper = nn.ModuleList(list(layers)[layer:])
    pooler_state = _pooler_state(model)
    family = family_cls.from_model(model)
    family.drop_lower()
    return UpperStack(model.config, family, upper, layer, pooler_state).eval()


def full_from_model(model: nn.Module) -> FullEncoder:
    """Wrap an in-memory transformers base model as a FullEncoder (shares its modules)."""
    family_cls = family_class(model.config)
    layers = _layer_list(model, family_cls)
    embeddings = family_cls.take_embeddings(model)
    pooler_state = _pooler_state(model)
    family = family_cls.from_model(model)
    return FullEncoder(model.config, family, nn.ModuleList(list(layers)), embeddings, pooler_state).eval()


def load_upper(model_path, layer: int, *, attn_implementation: str | None = None) -> UpperStack:
    """Load layers K..N-1 of the checkpoint at `model_path`, in eval mode.

    Args:
        model_path: folder of a saved Hugging Face encoder (see `supported_model_types()`).
        layer: K, the number of lower layers the cache holds; 1 <= K < N.
        attn_implementation: "eager" or "sdpa"; default: what transformers picks.
    Returns:
        UpperStack; upper(hidden [B,T,H] float, attention_mask [B,T] 0/1) -> [B,T,H].
    """
    config = _load_config(model_path)
    family_class(config)  # an unsupported architecture is named before its layers are counted
    check_layer(layer, architectures.num_layers(config))
    return upper_from_model(_load_base_model(model_path, attn_implementation), layer)


def load_full(model_path, *, attn_implementation: str | None = None) -> FullEncoder:
    """Load the whole encoder at `model_path` as a FullEncoder (eval mode); see load_upper."""
    return full_from_model(_load_base_model(model_path, attn_implementation))
