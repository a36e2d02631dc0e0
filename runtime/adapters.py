"""runtime.adapters: LoRA (peft), Houlsby bottleneck adapters, or plain fine-tuning of layers.

`apply_adapters(model, AdapterConfig(...), layers=...)` works on an UpperStack, a FullEncoder, or
a RecycledModel/FullModel (then the head stays trainable). It freezes the encoder, adds the
adapters to the listed layers (absolute layer numbers of the checkpoint, so the same numbers mean
the same layers in the upper stack and in the full encoder) and returns the trainable names.

    lora        peft LoRA on each layer's query and value projections (per-architecture names),
                or with targets="all" on every linear layer of the layer (attention and FFN)
    bottleneck  Houlsby: a bottleneck (down, activation, up) after the attention-output and the
                FFN-output projections of each layer; the up-projection starts at zero, so the
                adapted model starts equal to the base model
    finetune    the listed layers train as they are
    none        nothing in the encoder trains (a linear probe: the head only)

With `input_adapter` (lora or bottleneck), one more bottleneck adapter sits on the states
entering the lowest adapted layer: in a recycled run, the cached layer-K states.

`merge_adapters(model)` folds LoRA into the base weights for inference (`unmerge_adapters` undoes
it). Saving and loading adapter folders is runtime.adapter_files'.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from torch import nn

from export.architectures import hidden_size
from runtime.options import ADAPTER_KINDS as KINDS, INPUT_ADAPTER_KINDS, LORA_TARGETS
from runtime.errors import RuntimeConfigError
# The adapter's structure has one owner, the module exported folders ship as custom code
# (it imports only torch and transformers); training adds the near-identity start below.
from runtime.handoff_modeling import (ACTIVATIONS, BottleneckAdapter as _BottleneckStructure,
                                      InputAdapter as _InputStructure, attach_input_adapter)


@dataclass(frozen=True)
class AdapterConfig:
    """What trains in the encoder; checked on construction."""

    kind: str = field(default="lora", metadata={"help": "lora | bottleneck | finetune | none"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA / bottleneck input"})
    bottleneck_size: int = field(default=64, metadata={"help": "Houlsby bottleneck width"})
    targets: str = field(default="attention", metadata={
        "help": "LoRA: attention (query and value projections) | all (every linear of a layer)"})
    activation: str = field(default="gelu", metadata={"help": "bottleneck nonlinearity"})
    input_adapter: bool = field(default=False, metadata={
        "help": "lora or bottleneck: also a bottleneck adapter (bottleneck_size wide) on the states "
                "entering the lowest adapted layer (in a recycled run, the cached layer-K states)"})
    input_size: int | None = field(default=None, metadata={
        "help": "the input adapter's width; None: bottleneck_size"})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RuntimeConfigError(f"adapter kind {self.kind!r} is unknown; expected one of {list(KINDS)}")
        for name in ("r", "bottleneck_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RuntimeConfigError(f"adapter {name}={value!r}; expected a positive integer")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise RuntimeConfigError(f"adapter alpha={self.alpha!r}; expected a positive number")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise RuntimeConfigError(f"adapter dropout={self.dropout!r}; expected 0 <= dropout < 1")
        if self.targets not in LORA_TARGETS:
            raise RuntimeConfigError(f"adapter targets {self.targets!r} is unknown; expected one of "
                                     f"{list(LORA_TARGETS)}")
        if not isinstance(self.input_adapter, bool):
            raise RuntimeConfigError(
                f"adapter input_adapter={self.input_adapter!r}; expected true or false")
        if self.input_adapter and self.kind not in INPUT_ADAPTER_KINDS:
            raise RuntimeConfigError(f"an input adapter goes with kind 'lora' or 'bottleneck', "
                                     f"not {self.kind!r}")
        if self.input_size is not None:
            if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) \
                    or self.input_size < 1:
                raise RuntimeConfigError(
                    f"adapter input_size={self.input_size!r}; expected a positive integer")
            if not self.input_adapter:
                raise RuntimeConfigError("adapter input_size is the input adapter's width; it "
                                         "needs input_adapter")
        if self.activation not in ACTIVATIONS:
            raise RuntimeConfigError(
                f"adapter activation {self.activation!r} is unknown; expected one of {sorted(ACTIVATIONS)}"
            )

    @property
    def has_bottlenecks(self) -> bool:
        """Whether any bottleneck module is added (the layers' or the input adapter): what
        transformers' own classes cannot express, so an export needs modeling_recycled."""
        return self.kind == "bottleneck" or self.input_adapter

    @property
    def input_width(self) -> int:
        """The input adapter's bottleneck width: its own, else the layers' adapters'."""
        return self.input_size if self.input_size is not None else self.bottleneck_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuntimeConfigError(f"unknown adapter settings {unknown}; expected only {sorted(known)}")
        return cls(**data)


class BottleneckAdapter(_BottleneckStructure):
    """Houlsby adapter around a Linear, y + up(act(down(dropout(y)))), starting as identity."""

    def __init__(self, base_layer: nn.Linear, size: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__(base_layer, size, activation, dropout)
        _near_identity(self)


class InputAdapter(_InputStructure):
    """h + up(act(down(dropout(h)))) on a layer's input states, starting as identity."""

    def __init__(self, width: int, size: int, activation: str = "gelu", dropout: float = 0.0):
        super().__init__(width, size, activation, dropout)
        _near_identity(self)


def _near_identity(adapter: nn.Module) -> None:
    # Zero up-projection: the adapter adds exactly 0 at the start.
    nn.init.zeros_(adapter.adapter_up.weight)
    nn.init.zeros_(adapter.adapter_up.bias)
    nn.init.normal_(adapter.adapter_down.weight, std=1e-2)
    nn.init.zeros_(adapter.adapter_down.bias)


def resolve_stack(model: nn.Module):
    """(stack, wrapper or None) for a stack or a RecycledModel/FullModel."""
    from runtime.upper import _Stack

    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # DDP wraps the RecycledModel/FullModel during training
    if isinstance(model, _Stack):
        return model, None
    if isinstance(getattr(model, "encoder", None), _Stack):
        return model.encoder, model
    raise RuntimeConfigError(
        f"cannot put adapters on a {type(model).__name__}; expected an UpperStack, FullEncoder, "
        "RecycledModel or FullModel from runtime"
    )


def _check_layers(stack, wrapper, layers) -> tuple[int, ...]:
    own = range(stack.layer, stack.layer + len(stack.layers))
    allowed = wrapper.adapter_layers() if wrapper is not None else own
    chosen = tuple(allowed if layers is None else layers)
    bad = [i for i in chosen if i not in allowed]
    if bad or len(set(chosen)) != len(chosen):
        raise RuntimeConfigError(
            f"adapter layers {list(chosen)} are not all distinct layers of {list(allowed)}; "
            "layer numbers are absolute (0..N-1); an upper stack holds K..N-1 and frozen "
            "layers below K cannot take adapters"
        )
    return chosen


def _lora_targets(stack, layers, targets: str = "attention") -> list[str]:
    names = []
    for i in layers:
        prefix = f"layers.{i - stack.layer}."
        layer = stack.layers[i - stack.layer]
        names += [prefix + n for n, m in layer.named_modules()
                  if isinstance(m, nn.Linear)
                  and (targets == "all" or n.split(".")[-1] in stack.family.lora_targets)]
    return names


def lora_leaf_names(stack, targets: str) -> list[str]:
    """The Linear names (last path component) LoRA adapts inside a layer, for peft's config."""
    if targets != "all":
        return list(stack.family.lora_targets)
    return sorted({n.split(".")[-1] for n, m in stack.layers[0].named_modules()
                   if isinstance(m, nn.Linear)})


def _add_lora(stack, config: AdapterConfig, layers) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    targets = _lora_targets(stack, layers, config.targets)
    if not targets:
        raise RuntimeConfigError(
            f"no LoRA target modules {stack.family.lora_targets} in layers {list(layers)}; "
            "pass layers of this model"
        )
    lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=targets, bias="none")
    inject_adapter_in_model(lora, stack)


def _add_bottlenecks(stack, config: AdapterConfig, layers) -> None:
    for i in layers:
        layer = stack.layers[i - stack.layer]
        for path in stack.family.bottleneck_targets:
            parent_path, _, leaf = path.rpartition(".")
            parent = layer.get_submodule(parent_path) if parent_path else layer
            base = getattr(parent, leaf)
            adapter = BottleneckAdapter(base, config.bottleneck_size, config.activation, config.dropout)
            setattr(parent, leaf, adapter)


def _add_input_adapter(stack, config: AdapterConfig, layers) -> None:
    # Measured (docs/FIDELITY.md, RECIPE): on WNUT-16 the adapters below K are what full-bottleneck
    # gains by; in a recycled run this one adapts the cached states in their place.
    lowest = stack.layers[min(layers) - stack.layer]
    attach_input_adapter(lowest, InputAdapter(hidden_size(stack.config), config.input_width,
                                              config.activation, config.dropout))


def apply_adapters(model: nn.Module, config: AdapterConfig, layers=None) -> list[str]:
    """Freeze the encoder, add `config`'s adapters to `layers`, return the trainable names.

    Args:
        model: UpperStack, FullEncoder, RecycledModel or FullModel (changed in place).
        config: AdapterConfig.
        layers: absolute layer numbers; default all layers that may train (the upper stack's;
            for FullModel all N, or K..N-1 when frozen_below=K).
    Returns:
        Names (relative to `model`) of the parameters with requires_grad, head included.
    """
    stack, wrapper = resolve_stack(model)
    if getattr(stack, "adapter_config", None) is not None:
        raise RuntimeConfigError("this model already has adapters; build a fresh model to apply others")
    chosen = _check_layers(stack, wrapper, layers)
    stack.requires_grad_(False)
    if config.kind == "lora":
        _add_lora(stack, config, chosen)
    elif config.kind == "bottleneck":
        _add_bottlenecks(stack, config, chosen)
    elif config.kind == "finetune":
        for i in chosen:
            stack.layers[i - stack.layer].requires_grad_(True)
    if config.input_adapter:  # after the layers' adapters: kept runs draw weights in this order
        _add_input_adapter(stack, config, chosen)
    for name, p in stack.named_parameters():  # peft marks its own; make bottlenecks explicit
        if "adapter_down" in name or "adapter_up" in name or "lora_" in name:
            p.requires_grad_(True)
    stack.adapter_config, stack.adapter_layers = config, chosen  # plain attributes, read on save
    return [name for name, p in model.named_parameters() if p.requires_grad]


def merge_adapters(model: nn.Module) -> int:
    """Fold LoRA into the base projections (faster inference); returns how many were merged.

    Bottleneck adapters are nonlinear and stay as they are; `unmerge_adapters` undoes a merge.
    """
    return _set_merged(model, True)


def unmerge_adapters(model: nn.Module) -> int:
    """Undo `merge_adapters` (before training further); returns how many were unmerged."""
    return _set_merged(model, False)


def _set_merged(model: nn.Module, merged: bool) -> int:
    from peft.tuners.tuners_utils import BaseTunerLayer

    stack, _ = resolve_stack(model)
    count = 0
    for module in stack.modules():
        if isinstance(module, BaseTunerLayer) and module.merged != merged:
            module.merge() if merged else module.unmerge()
            count += 1
    return count


