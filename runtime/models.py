"""runtime.models: encoder + task head, for the recycled, full and frozen training modes.

    RecycledModel(upper, head)            forward(hidden [B,T,H], mask [B,T]) -> logits
    FullModel(full, head, frozen_below)   forward(input_ids [B,T], mask [B,T], token_type_ids=None)

`build_model(config, manifest, label_names)` assembles a run's model: `--mode recycled` is a
RecycledModel fed from the cache; `--mode full` a FullModel with frozen_below=None (adapters or
fine-tuning on all N layers); `--mode frozen` a FullModel with frozen_below=K (embeddings and
layers 0..K-1 frozen, only what lies above K trains, no cache).
Both expose `.encoder`, `.head`, `.loss(logits, labels)` and `.trainable_parameters()`, and with
the same checkpoint, adapters on the same layers and the same head weights they give the same
logits for the same examples.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from runtime.errors import RuntimeConfigError
from runtime.heads import TaskHead
from runtime.inputs import model_path_of
from runtime.tasks import task_named
from runtime.upper import FullEncoder, UpperStack, check_layer


class _EncoderWithHead(nn.Module):
    def __init__(self, encoder: nn.Module, head: TaskHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def task(self) -> str:
        return self.head.task

    def loss(self, logits, labels) -> torch.Tensor:
        """The head's loss (see runtime.heads)."""
        return self.head.loss(logits, labels)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) for every parameter that trains: adapters/unfrozen layers and head."""
        return [(name, p) for name, p in self.named_parameters() if p.requires_grad]

    def adapter_layers(self) -> range:
        """Absolute layer numbers that adapters go on by default in this mode."""
        raise NotImplementedError


class RecycledModel(_EncoderWithHead):
    """Upper stack (layers K..N-1) + head, fed hidden states of layer K from the cache."""

    def __init__(self, upper: UpperStack, head: TaskHead) -> None:
        if not isinstance(upper, UpperStack):
            raise RuntimeConfigError(
                f"RecycledModel needs an UpperStack (from runtime.load_upper), got {type(upper).__name__}"
            )
        super().__init__(upper, head)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        return self.head(self.encoder(hidden, attention_mask), attention_mask)

    def adapter_layers(self) -> range:
        return range(self.encoder.layer, self.encoder.num_layers)


class FullModel(_EncoderWithHead):
    """The whole encoder + head, from token ids; `frozen_below=K` freezes everything below K.

    Freezing is structural: the embeddings and layers 0..K-1 get requires_grad=False here and
    `runtime.adapters.apply_adapters` only touches layers >= K (its default for this model).
    """

    def __init__(self, full: FullEncoder, head: TaskHead, frozen_below: int | None = None) -> None:
        if not isinstance(full, FullEncoder):
            raise RuntimeConfigError(
                f"FullModel needs a FullEncoder (from runtime.upper.load_full), got {type(full).__name__}"
            )
        if frozen_below is not None:
            check_layer(frozen_below, full.num_layers)
        super().__init__(full, head)
        self.frozen_below = frozen_below
        if frozen_below is not None:
            self._freeze_lower(frozen_below)

    def _frozen_modules(self) -> list[nn.Module]:
        # Encoder-level shared state (DeBERTa relative embeddings, MPNet bias) feeds the lower
        # layers too, so it is frozen along with them.
        below = self.encoder.layers[: self.frozen_below]
        return [self.encoder.embeddings, self.encoder.family, *below]

    def _freeze_lower(self, layer: int) -> None:
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> "FullModel":
        """As nn.Module.train, but frozen lower layers stay in eval mode (no dropout there).

        The cache is built in eval mode, so this keeps --mode frozen equal to --mode recycled.
        """
        super().train(mode)
        if self.frozen_below is not None:
            for module in self._frozen_modules():
                module.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids=None):
        """token_type_ids: segment ids of sentence pairs (QA), as export.lower feeds them."""
        return self.head(self.encoder(input_ids, attention_mask, token_type_ids), attention_mask)

    def adapter_layers(self) -> range:
        first = 0 if self.frozen_below is None else self.frozen_below
        return range(first, self.encoder.num_layers)


@dataclasses.dataclass
class Built:
    """A model ready to train or predict, and what is needed to feed it."""

    model: torch.nn.Module  # RecycledModel or FullModel
    head: torch.nn.Module
    model_path: str


def build_model(config, manifest: dict, label_names: list) -> Built:
    """The mode's model (see module docstring), with adapters applied, in train mode."""
    from runtime.adapters import apply_adapters
    from runtime.heads import build_head
    from runtime.pooling import resolve_pooling
    from runtime.upper import load_full, load_upper

    path, layer = model_path_of(config, manifest), int(manifest["layer"])
    encoder = load_upper(path, layer=layer) if config.mode == "recycled" else load_full(path)
    torch.manual_seed(config.seed)  # same head initialisation in every mode
    num_labels = task_named(config.task).num_labels(label_names)
    pooling = resolve_pooling(config.pooling, path)
    head = build_head(config.task, encoder, num_labels, pooling=pooling)
    if config.mode == "recycled":
        model = RecycledModel(encoder, head)
    else:
        model = FullModel(encoder, head, frozen_below=layer if config.mode == "frozen" else None)
    torch.manual_seed(config.seed + 1)
    apply_adapters(model, adapter_config(config), layers=model.adapter_layers())
    return Built(model.to(config.device).train(), head, path)


def adapter_config(config):
    """The AdapterConfig a TrainConfig asks for (its `lora_r` is the adapter's `r`)."""
    from runtime.adapters import AdapterConfig as cls
    if config.adapter == "lora":
        return cls(kind="lora", r=config.lora_r, alpha=config.lora_alpha,
                   targets=config.lora_targets, input_adapter=config.input_adapter,
                   bottleneck_size=config.bottleneck_size, input_size=config.input_adapter_size)
    if config.adapter == "bottleneck":
        return cls(kind="bottleneck", bottleneck_size=config.bottleneck_size,
                   input_adapter=config.input_adapter, input_size=config.input_adapter_size)
    return cls(kind=config.adapter)
