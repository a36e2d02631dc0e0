"""runtime.upper_archs: what each encoder family computes around its layers.

A `Family` module holds the encoder-level state that every layer of that architecture needs
(DeBERTa-v2's relative embeddings and their LayerNorm, MPNet's relative attention bias,
ModernBERT's final norm) and knows the family's calling convention: how the 0/1 padding mask
becomes the mask the layers expect, how one layer is called, and what runs after the last layer.
runtime.architectures maps each model type to its family. `runtime.upper` builds both the upper
stack and the full encoder from the same family, so the recycled and full models run literally
the same code above layer K.

The masks reproduce what the Hugging Face model builds in its own `forward` for the attention
implementation the checkpoint was loaded with (eager or sdpa); flash-attention checkpoints are
refused, because their unpadded layout does not match a right-padded cache batch.
"""

from __future__ import annotations

import torch
from torch import nn

from runtime.errors import RuntimeConfigError


def _additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0/1 mask [B, T] -> additive mask [B, 1, 1, T]: 0 where attended, dtype-min at padding.

    This is `ModuleUtilsMixin.get_extended_attention_mask` for an encoder; SDPA accepts the same
    broadcastable float mask, so one form serves eager and sdpa layers alike.
    """
    mask = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (1.0 - mask) * torch.finfo(dtype).min


def _no_flash(config) -> None:
    if getattr(config, "_attn_implementation", None) == "flash_attention_2":
        raise RuntimeConfigError(
            "attn_implementation='flash_attention_2' is not supported by the upper stack: it expects "
            "unpadded batches; load the checkpoint with attn_implementation='sdpa' or 'eager'"
        )


class Family(nn.Module):
    """Base: encoder-level state and calling convention of one architecture family.

    Subclasses set `layers_path` (where the layer list lives in the base model),
    `lora_targets` (names of the query/value projections inside a layer) and
    `bottleneck_targets` (layer-relative paths of the attention-output and FFN-output
    projections, where Houlsby adapters go).
    """

    layers_path: str = "encoder.layer"
    lora_targets: tuple[str, ...] = ()
    bottleneck_targets: tuple[str, ...] = ()

    def __init__(self, config) -> None:
        super().__init__()
        _no_flash(config)
        self.config = config

    @classmethod
    def from_model(cls, model: nn.Module) -> "Family":
        """Take the encoder-level modules this family needs from a loaded base model."""
        return cls(model.config)

    @classmethod
    def take_embeddings(cls, model: nn.Module) -> nn.Module:
        """The module that maps input ids to hidden_states[0] (only the full encoder keeps it)."""
        return model.embeddings

    def drop_lower(self) -> None:
        """Free state only the lower layers use (called when building an upper stack)."""

    def embed(self, embeddings: nn.Module, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """hidden_states[0]; token_type_ids is ignored by families without segment embeddings."""
        return embeddings(input_ids=input_ids)

    def prepare(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """Per-batch state shared by all layers (masks, position bias). mask is long [B, T]."""
        return {"mask": _additive_mask(attention_mask, hidden.dtype)}

    def run_layer(self, layer: nn.Module, hidden, state: dict, index: int) -> torch.Tensor:
        """Run one layer; `index` is its absolute number in the checkpoint (0-based)."""
        return layer(hidden, attention_mask=state["mask"])[0]

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the base model applies after its last layer (identity for most)."""
        return hidden


class _ProjectedEmbeddings(nn.Module):
    """ELECTRA: word embeddings of size E, then a linear projection to the hidden size H."""

    def __init__(self, embeddings: nn.Module, project: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.project = project

    def forward(self, input_ids: torch.Tensor, token_type_ids=None) -> torch.Tensor:
        embedded = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)  # (B, T, E)
        return self.project(embedded)  # (B, T, H)


class BertFamily(Family):
    """BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA: additive mask, layers need nothing else.

    BERT's relative_key position types live inside each layer's attention, so they come along.
    """

    lora_targets = ("query", "value")
    bottleneck_targets = ("attention.output.dense", "output.dense")

    @classmethod
    def take_embeddings(cls, model: nn.Module) -> nn.Module:
        project = getattr(model, "embeddings_project", None)  # ELECTRA with E != H
        return model.embeddings if project is None else _ProjectedEmbeddings(model.embeddings, project)

    def embed(self, embeddings, input_ids, attention_mask, token_type_ids=None):
        # None: the embeddings use their all-zero buffer, as the base model does.
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids)


class DistilBertFamily(Family):
    """DistilBERT: eager layers take the 0/1 mask itself; sdpa layers a 4D additive mask."""

    layers_path = "transformer.layer"
    lora_targets = ("q_lin", "v_lin")
    bottleneck_targets = ("attention.out_lin", "ffn.lin2")

    def embed(self, embeddings, input_ids, attention_mask, token_type_ids=None):
        return embeddings(input_ids)

    def prepare(self, hidden, attention_mask):
        if self.config._attn_implementation == "sdpa":
            return {"mask": _additive_mask(attention_mask, hidden.dtype)}
        return {"mask": attention_mask}  # (B, T); MultiHeadSelfAttention reshapes it itself

    def run_layer(self, layer, hidden, state, index):
        return layer(hidden, attn_mask=state["mask"], head_mask=None)[-1]


class MPNetFamily(Family):
    """MPNet: one relative attention bias table at encoder level, shared by all layers."""

    lora_targets = ("q", "v")
    bottleneck_targets = ("attention.attn.o", "output.dense")

    def __init__(self, config, shell: nn.Module) -> None:
        super().__init__(config)
        # The HF encoder with its layer list emptied: keeps relative_attention_bias and its
        # compute_position_bias(), so the bias is bucketed exactly as the full model does.
        self.shell = shell

    @classmethod
    def from_model(cls, model):
        shell = model.encoder
        shell.layer = nn.ModuleList()
        return cls(model.config, shell)

    def prepare(self, hidden, attention_mask):
        return {
            "mask": _additive_mask(attention_mask, hidden.dtype),
            "bias": self.shell.compute_position_bias(hidden),  # (B, heads, T, T)
        }

    def run_layer(self, layer, hidden, state, index):
        return layer(hidden, state["mask"], None, state["bias"])[0]


class DebertaV2Family(Family):
    """DeBERTa-v2/v3: relative embeddings (+LayerNorm) and bucketed relative positions.

    The optional conv layer runs after layer 0 only, so an upper stack (K >= 1) never needs it;
    the full encoder keeps it.
    """

    lora_targets = ("query_proj", "value_proj")
    bottleneck_targets = ("attention.output.dense", "output.dense")

    def __init__(self, config, shell: nn.Module, conv: nn.Module | None) -> None:
        super().__init__(config)
        # The HF encoder with its layers and conv removed: get_rel_embedding(), get_rel_pos()
        # and get_attention_mask() are then the very functions the full model calls.
        self.shell = shell
        self.conv = conv

    @classmethod
    def from_model(cls, model):
        shell = model.encoder
        conv = shell.conv
        shell.layer, shell.conv = nn.ModuleList(), None
        return cls(model.config, shell, conv)

    def drop_lower(self) -> None:
        self.conv = None  # applied after layer 0 only

    def embed(self, embeddings, input_ids, attention_mask, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids, mask=attention_mask)

    def prepare(self, hidden, attention_mask):
        return {
            "input_mask": attention_mask,
            "mask": self.shell.get_attention_mask(attention_mask),  # (B, 1, T, T)
            "rel_pos": self.shell.get_rel_pos(hidden),  # (1, T, T)
            "rel_embeddings": self.shell.get_rel_embedding(),
        }

    def run_layer(self, layer, hidden, state, index):
        out, _ = layer(
            hidden, state["mask"], relative_pos=state["rel_pos"], rel_embeddings=state["rel_embeddings"]
        )
        if index == 0 and self.conv is not None:
            out = self.conv(hidden, out, state["input_mask"])
        return out


class ModernBertFamily(Family):
    """ModernBERT: rotary positions per layer, global/sliding-window masks, a final norm."""

    layers_path = "layers"
    lora_targets = ("Wqkv",)
    bottleneck_targets = ("attn.Wo", "mlp.Wo")

    def __init__(self, config, final_norm: nn.Module) -> None:
        super().__init__(config)
        # torch.compile of the MLP on every new shape would dominate CPU time; eager is exact.
        config.reference_compile = False
        self.final_norm = final_norm

    @classmethod
    def from_model(cls, model):
        return cls(model.config, model.final_norm)

    def prepare(self, hidden, attention_mask):
        from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask

        seq_len = hidden.shape[1]
        global_mask = _prepare_4d_attention_mask(attention_mask, hidden.dtype)  # (B, 1, T, T)
        rows = torch.arange(seq_len, device=hidden.device)
        distance = (rows[None, :] - rows[:, None]).abs()  # (T, T)
        window = (distance <= self.config.local_attention // 2)[None, None]  # (1, 1, T, T)
        sliding = global_mask.masked_fill(~window, torch.finfo(hidden.dtype).min)
        positions = rows.unsqueeze(0)  # (1, T): right padding keeps real tokens at 0..L-1
        return {"mask": global_mask, "sliding": sliding, "positions": positions}

    def run_layer(self, layer, hidden, state, index):
        return layer(
            hidden,
            attention_mask=state["mask"],
            sliding_window_mask=state["sliding"],
            position_ids=state["positions"],
        )[0]

    def finish(self, hidden):
        return self.final_norm(hidden)
