"""runtime.handoff_peft: a LoRA run as a peft adapter folder.

The folder holds adapter_config.json and adapter_model.safetensors that

    PeftModel.from_pretrained(AutoModelFor<Task>.from_pretrained(BASE, id2label=...), DIR)

reads. The LoRA target modules are the run's own wrapped projections, named by their full path
in the task model (so runs whose LoRA covers more than query/value export as they are), and the
head is peft's `modules_to_save`. BASE is the original checkpoint when the architecture's own
head is the run's head; with a cls/mean-pooling head it is `DIR/base`, the un-adapted model with
the trained head in handoff_modeling's custom-code form (`trust_remote_code=True`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from runtime.errors import RuntimeConfigError

BASE_FOLDER = "base"


def write_peft(run, folder: Path) -> dict:
    """Write the adapter of LoRA run `run` into `folder`; returns the export summary."""
    from runtime import handoff, handoff_parity as parity

    if run.config.adapter != "lora":
        raise RuntimeConfigError(f"run {run.path!r} trained {run.config.adapter!r}, not LoRA; "
                                 "--format peft exports LoRA runs only: use --format hf")
    if run.config.input_adapter:
        raise RuntimeConfigError(f"run {run.path!r} has an input adapter, which a peft LoRA "
                                 "folder cannot hold; use --format hf or onnx")
    base_dir = None
    if run.remote_code:  # the head has no transformers class: ship the base beside the adapter
        base_dir = folder / BASE_FOLDER
        handoff.save_hf(run, base_dir, adapted=False)
    model = _peft_model(run, _fresh_base(run, base_dir))
    model.save_pretrained(str(folder))
    parity.load_tokenizer(run).save_pretrained(str(folder))
    diff = parity.check_parity(run, "peft adapter", lambda inputs: parity.hf_logits(
        load_peft(run, folder, base_dir), inputs))
    summary = {"max_abs_diff": diff, "remote_code": run.remote_code}
    if base_dir is not None:
        summary.update(peft_base=f"DIR/{BASE_FOLDER}", peft_base_kwargs=", trust_remote_code=True")
    else:
        summary.update(peft_base=run.built.model_path,
                       peft_base_kwargs=", id2label=..., label2id=..." if run.task.has_label_names else "")
    return summary


def _fresh_base(run, base_dir):
    """The base task model a user would load: the checkpoint with a (random) head, or DIR/base."""
    import transformers

    from runtime import handoff

    cls = getattr(transformers, run.task.auto_class)
    if base_dir is not None:
        return cls.from_pretrained(str(base_dir), trust_remote_code=True).eval()
    config = handoff.hf_config(run, remote=False)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized" head: the adapter has it
    try:
        return cls.from_pretrained(run.built.model_path, config=config).eval()
    finally:
        transformers.logging.set_verbosity(verbosity)


def load_peft(run, folder: Path, base_dir):
    """The adapter folder loaded back as a user would: PeftModel over a fresh base."""
    from peft import PeftModel

    return PeftModel.from_pretrained(_fresh_base(run, base_dir), str(folder)).eval()


def _lora_modules(run) -> dict:
    """run-stack name -> LoRA-wrapped module, for every adapted projection."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n: m for n, m in run.stack.named_modules() if isinstance(m, BaseTunerLayer)}


def _task_module(base):
    return base.model if hasattr(base, "auto_class") and hasattr(base, "model") else base


def _path_in_base(run, base, stack_name: str) -> str:
    """'layers.<i>.<rest>' of the run's stack -> the module's full name in the task model."""
    from runtime.handoff import _name_of

    index, _, rest = stack_name[len("layers."):].partition(".")
    prefix = _name_of(base, _task_module(base).base_model)
    return f"{prefix}.{run.stack.family.layers_path}.{int(index) + run.stack.layer}.{rest}"


def _head_modules(run, base) -> dict:
    """head child name -> its module name in the task model (the modules peft saves whole)."""
    from runtime.handoff import _name_of

    task = _name_of(base, _task_module(base))
    task_prefix = f"{task}." if task else ""
    names = set(dict(base.named_modules()))
    prefix = _name_of(base, _task_module(base).base_model)
    out = {}
    for child, module in run.built.head.named_children():
        if not any(True for _ in module.parameters()):
            continue  # dropout: nothing to save
        name = next((n for n in (task_prefix + child, f"{prefix}.{child}", child) if n in names),
                    None)
        if name is None:
            raise RuntimeConfigError(f"the head's {child!r} has no place in the base model; "
                                     "this head cannot be exported as a peft adapter")
        out[child] = name
    return out


def _peft_model(run, base):
    """peft model over `base` carrying the run's LoRA weights and head."""
    from peft import LoraConfig, get_peft_model

    adapter = run.stack.adapter_config
    lora = _lora_modules(run)
    targets = {name: _path_in_base(run, base, name) for name in lora}
    heads = _head_modules(run, base)
    config = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                        bias="none", target_modules=sorted(targets.values()),
                        modules_to_save=sorted(heads.values()), task_type=run.task.peft_task_type)
    model = get_peft_model(base, config)
    inner = model.base_model.model
    with torch.no_grad():
        for name, source in lora.items():
            target = inner.get_submodule(targets[name])
            for part in ("lora_A", "lora_B"):
                getattr(target, part)["default"].load_state_dict(
                    getattr(source, part)["default"].state_dict())
        for child, name in heads.items():
            wrapper = inner.get_submodule(name)
            wrapper.modules_to_save["default"].load_state_dict(
                getattr(run.built.head, child).state_dict())
    return model.eval()
