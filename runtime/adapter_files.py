"""Adapter folders: `save_adapters(model, dir)` and `load_adapters(model, dir)`.

A folder holds adapter_model.safetensors (+ peft's adapter_config.json for LoRA, with keys named
as in the transformers base model so `PeftModel.from_pretrained` on `AutoModel` reads them) and
recycling_adapters.json (model type, layer count, adapted layers, the AdapterConfig). A run folder
keeps weights.pt instead; `python -m runtime.export --format peft` makes a peft folder of a run.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from runtime.adapters import AdapterConfig, lora_leaf_names, resolve_stack, apply_adapters
from runtime.errors import RuntimeConfigError

META_FILE = "recycling_adapters.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def _renumber(key: str, shift: int, old_prefix: str, new_prefix: str) -> str:
    """'<old_prefix>.<i>.rest' -> '<new_prefix>.<i + shift>.rest'."""
    index, _, rest = key[len(old_prefix) + 1:].partition(".")
    return f"{new_prefix}.{int(index) + shift}.{rest}"


def _saved_prefix(stack) -> str:
    # LoRA keys are named as in the transformers base model (PeftModel's convention); the
    # other kinds use the runtime's own absolute names 'layers.<i>'.
    if stack.adapter_config.kind == "lora":
        return "base_model.model." + stack.family.layers_path
    return "layers"


def _adapter_state(stack) -> dict:
    """Relative-named tensors that define the adapters (what save writes, load expects)."""
    kind = stack.adapter_config.kind
    if kind == "lora":
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(stack)
    if kind == "bottleneck":
        return {k: v for k, v in stack.state_dict().items() if ".adapter_" in k}
    state = {}
    if kind == "finetune":
        for i in stack.adapter_layers:
            rel = i - stack.layer
            state.update({f"layers.{rel}.{k}": v for k, v in stack.layers[rel].state_dict().items()})
    return state


def save_adapters(model: nn.Module, directory) -> Path:
    """Write the adapter weights and settings of `model` to `directory` (created); returns it."""
    from safetensors.torch import save_file

    stack, _ = resolve_stack(model)
    config = getattr(stack, "adapter_config", None)
    if config is None:
        raise RuntimeConfigError("the model has no adapters to save; call apply_adapters first")
    if config.kind == "lora" and config.input_adapter:
        raise RuntimeConfigError("a LoRA adapter folder is peft's format, which cannot hold the "
                                 "input adapter; keep the run folder, or export it with "
                                 "`python -m runtime.export --format hf`")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    prefix = _saved_prefix(stack)
    state = {_renumber(k, stack.layer, "layers", prefix): v.detach().contiguous().cpu()
             for k, v in _adapter_state(stack).items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    if config.kind == "lora":
        _peft_config(stack).save_pretrained(str(out))
    meta = {"format_version": 1, "model_type": stack.config.model_type, "num_layers": stack.num_layers,
            "layers": list(stack.adapter_layers), "adapter": config.to_dict()}
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _peft_config(stack):
    """peft's LoraConfig for the same adapters on the transformers base model."""
    from peft import LoraConfig

    c = stack.adapter_config
    return LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout, bias="none",
                      target_modules=lora_leaf_names(stack, c.targets),
                      layers_to_transform=list(stack.adapter_layers),
                      layers_pattern=stack.family.layers_path.split(".")[-1])


def _read_meta(directory: Path) -> dict:
    try:
        return json.loads((directory / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeConfigError(
            f"cannot read {directory / META_FILE} ({exc}); pass a folder written by save_adapters"
        ) from exc


def load_adapters(model: nn.Module, directory) -> AdapterConfig:
    """Add (if absent) and load the adapters saved in `directory` into `model`; returns the config."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = _read_meta(directory)
    stack, _ = resolve_stack(model)
    if meta["model_type"] != stack.config.model_type or meta["num_layers"] != stack.num_layers:
        raise RuntimeConfigError(
            f"adapters in {directory} were trained on a {meta['model_type']} with {meta['num_layers']} "
            f"layers, not this {stack.config.model_type} with {stack.num_layers}; use the same checkpoint"
        )
    config = AdapterConfig.from_dict(meta["adapter"])
    if getattr(stack, "adapter_config", None) is None:
        apply_adapters(model, config, layers=meta["layers"])
    elif stack.adapter_config != config or list(stack.adapter_layers) != meta["layers"]:
        raise RuntimeConfigError(f"the model already has other adapters than those in {directory}")
    prefix = _saved_prefix(stack)
    saved = load_file(str(directory / WEIGHTS_FILE))
    state = {_renumber(k, -stack.layer, prefix, "layers"): v for k, v in saved.items()}
    expected = set(_adapter_state(stack))
    if set(state) != expected:
        raise RuntimeConfigError(
            f"{directory / WEIGHTS_FILE} does not match the adapters: missing "
            f"{sorted(expected - set(state))[:3]}, unexpected {sorted(set(state) - expected)[:3]}"
        )
    _load_state(stack, state)
    return config


def _load_state(stack, state: dict) -> None:
    if stack.adapter_config.kind == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(stack, state)
        return
    try:
        stack.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: another hidden size or bottleneck width
        raise RuntimeConfigError(f"adapter weights do not fit this model: {exc}") from exc
