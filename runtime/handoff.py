"""runtime.handoff: a trained run leaves as a standard Hugging Face model, a peft adapter or ONNX.

    export_run(ExportConfig(run=RUN, out=DIR, format="hf" | "peft" | "onnx")) -> dict

- `hf`: a `save_pretrained` folder of the whole task model: embeddings and layers below K from
  the original checkpoint, the run's layers (LoRA merged, or fine-tuned weights, or bottleneck
  adapters) and head, `id2label`/`label2id` in config.json, the tokenizer beside it. Where
  transformers' own AutoModelFor<Task> class is the model (LoRA, fine-tuning, none; the
  architecture's own seq-cls head) the folder holds no code. Where it is not (a cls/mean-pooling
  seq-cls head, bottleneck adapters) the folder carries `modeling_recycled.py`
  (runtime/handoff_modeling.py, importing nothing of this project) and is loaded with
  `trust_remote_code=True`.
- `peft`: LoRA runs only: adapter_config.json + adapter_model.safetensors that
  `PeftModel.from_pretrained(AutoModelFor<Task>.from_pretrained(BASE), DIR)` reads; the head is
  saved as peft's `modules_to_save`. With a cls/mean head, BASE is `DIR/base`, the un-adapted
  model with that head in the custom-code form above.
- `onnx`: the whole task model as one graph (`model.onnx`, torch.onnx), with config.json and
  the tokenizer beside it (runtime/handoff_onnx.py).

Every format is checked at export against the run's own model (runtime.models, fed layer-K
states computed by the checkpoint in PyTorch) on probe inputs, and refused above 1e-4 max abs
difference of logits. The folder is written under a temporary name and renamed at the end, so a
failed export leaves nothing; an existing --out is never overwritten.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from pathlib import Path

from runtime.errors import RuntimeConfigError
from runtime.handoff_parity import check_parity, hf_logits, load_tokenizer
from runtime.handoff_run import TrainedRun, load_trained_run

FORMATS = ("hf", "peft", "onnx")
MODELING_FILE = "modeling_recycled.py"


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export, and where."""

    run: str  # run folder written by `python -m runtime.train`
    out: str  # folder to create; must not exist yet (or be empty)
    format: str = "hf"  # hf | peft | onnx

    def __post_init__(self):
        if self.format not in FORMATS:
            raise RuntimeConfigError(f"format {self.format!r} is unknown; expected one of "
                                     f"{', '.join(FORMATS)}")
        if os.path.exists(self.out) and (not os.path.isdir(self.out) or os.listdir(self.out)):
            raise RuntimeConfigError(f"--out {self.out!r} already exists and is not an empty "
                                     "folder; pick a new folder (nothing is overwritten)")


def export_run(config: ExportConfig) -> dict:
    """Export run `config.run` to `config.out` in `config.format`; returns a summary dict
    (format, out, max_abs_diff against the run's model, remote_code)."""
    run = load_trained_run(config.run)
    out = Path(config.out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise RuntimeConfigError(f"cannot create {str(tmp)!r} beside --out ({exc.strerror}); "
                                 "pick an --out in a folder you can write") from None
    try:
        summary = _WRITERS[config.format](run, tmp)
        from runtime.handoff_card import write_card

        write_card(run, tmp, config.format, summary)
        if out.exists():
            out.rmdir()  # checked empty in ExportConfig
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"format": config.format, "out": str(out), **summary}


def layer_states(run: TrainedRun, *, adapted: bool = True) -> dict:
    """absolute layer number -> state dict of the run's layer, named as in the base model.

    LoRA is merged into the base projections and unwrapped; bottleneck adapters stay (their
    names match handoff_modeling). `adapted=False` gives {} (the checkpoint's layers).
    """
    if not adapted:
        return {}
    from peft.tuners.tuners_utils import BaseTunerLayer

    from runtime.adapters import merge_adapters

    model = copy.deepcopy(run.built.model)
    merge_adapters(model)
    stack = model.encoder
    wrapped = [(n, m) for n, m in stack.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in wrapped:
        parent, _, leaf = name.rpartition(".")
        setattr(stack.get_submodule(parent), leaf, module.get_base_layer())
    return {stack.layer + i: layer.state_dict() for i, layer in enumerate(stack.layers)}


def hf_config(run: TrainedRun, *, remote: bool):
    """config.json of the exported task model (remote: handoff_modeling's config)."""
    from transformers import AutoConfig

    base = AutoConfig.from_pretrained(run.built.model_path)
    labels = {}
    if run.task.has_label_names:
        labels = {"id2label": dict(enumerate(run.label_names)),
                  "label2id": {n: i for i, n in enumerate(run.label_names)}}
        base.id2label, base.label2id = labels["id2label"], labels["label2id"]
    if not remote:
        return base
    from runtime import handoff_modeling as hm

    config = hm.RecycledEncoderConfig(
        encoder=base.to_dict(), pooling=run.pooling, bottleneck=_bottleneck_spec(run),
        classifier_dropout=float(run.built.head.dropout.p) if run.pooling != "pooler" else 0.0,
        **labels)
    config.auto_map = {"AutoConfig": "modeling_recycled.RecycledEncoderConfig",
                       run.task.auto_class: f"modeling_recycled.{run.task.remote_class}"}
    return config


def _bottleneck_spec(run: TrainedRun) -> dict | None:
    """The bottleneck adapters handoff_modeling adds: the layers' (bottleneck runs) and the
    input adapter (bottleneck or LoRA runs; LoRA itself is merged into the weights)."""
    adapter = getattr(run.stack, "adapter_config", None)
    if adapter is None or not adapter.has_bottlenecks:
        return None
    family, layered = run.stack.family, adapter.kind == "bottleneck"
    return {"size": adapter.bottleneck_size, "activation": adapter.activation,
            "dropout": adapter.dropout, "layers": list(run.stack.adapter_layers) if layered else [],
            "layers_path": family.layers_path,
            "targets": list(family.bottleneck_targets) if layered else [],
            "input_layer": min(run.stack.adapter_layers) if adapter.input_adapter else None,
            "input_size": adapter.input_width if adapter.input_adapter else None}


def build_hf_model(run: TrainedRun, *, adapted: bool = True, remote: bool | None = None):
    """The run's whole task model as a transformers model (eval mode), weights filled in.

    remote: use handoff_modeling's classes (default: when the run needs them).
    adapted: False keeps the checkpoint's layers (the base of a peft adapter).
    """
    from transformers import AutoModel

    import transformers

    remote = run.remote_code if remote is None else remote
    config = hf_config(run, remote=remote)
    if remote:
        from runtime import handoff_modeling as hm

        target = getattr(hm, run.task.remote_class)(config)
    else:
        target = getattr(transformers, run.task.auto_class).from_config(config)
    base = AutoModel.from_pretrained(run.built.model_path)
    state = _encoder_state(run, base.state_dict(), layer_states(run, adapted=adapted))
    _load_into(target, target.model if remote else target, state, run.built.head.state_dict())
    return target.eval()


def _encoder_state(run: TrainedRun, checkpoint: dict, layers: dict) -> dict:
    path = run.stack.family.layers_path
    state = dict(checkpoint)
    for index, layer in layers.items():
        prefix = f"{path}.{index}."
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        state.update({prefix + k: v for k, v in layer.items()})
    return state


def _name_of(target, module) -> str:
    return next(name for name, m in target.named_modules() if m is module)


def _load_into(target, task_module, encoder_state: dict, head_state: dict) -> None:
    """Load encoder (base-model names) and head (runtime.heads names) weights into `target`.

    task_module: the AutoModelFor<Task> (or, under a cls/mean head, AutoModel) inside target.
    """
    keys = set(target.state_dict())
    base = _name_of(target, task_module.base_model)
    task = _name_of(target, task_module)
    task_prefix = f"{task}." if task else ""
    full = {f"{base}.{k}": v for k, v in encoder_state.items() if f"{base}.{k}" in keys}
    for key, value in head_state.items():
        name = next((n for n in (task_prefix + key, f"{base}.{key}", key) if n in keys), None)
        if name is None:
            raise RuntimeConfigError(f"the head's {key!r} has no place in "
                                     f"{type(target).__name__}; this head cannot be exported")
        full[name] = value
    missing = sorted(keys - set(full))
    if missing:
        raise RuntimeConfigError(f"no weights for {missing[0]!r} of {type(target).__name__} "
                                 f"({len(missing)} missing); the checkpoint does not match the run")
    target.load_state_dict(full, strict=True)


# --- checking an export against the run ------------------------------------------------------


def save_hf(run: TrainedRun, folder: Path, *, adapted: bool = True) -> None:
    """Write the hf folder (model, config, tokenizer[, modeling file]) of the run into `folder`."""
    model = build_hf_model(run, adapted=adapted)
    model.save_pretrained(str(folder))
    load_tokenizer(run).save_pretrained(str(folder))
    if run.remote_code:
        shutil.copyfile(Path(__file__).with_name("handoff_modeling.py"), folder / MODELING_FILE)


def load_hf(run: TrainedRun, folder: Path):
    """The exported folder loaded back as a user would (trust_remote_code where needed)."""
    import transformers

    cls = getattr(transformers, run.task.auto_class)
    return cls.from_pretrained(str(folder), trust_remote_code=run.remote_code).eval()


def _write_hf(run: TrainedRun, tmp: Path) -> dict:
    save_hf(run, tmp)
    diff = check_parity(run, "hf model", lambda inputs: hf_logits(load_hf(run, tmp), inputs))
    return {"max_abs_diff": diff, "remote_code": run.remote_code}


def _write_peft(run: TrainedRun, tmp: Path) -> dict:
    from runtime.handoff_peft import write_peft

    return write_peft(run, tmp)


def _write_onnx(run: TrainedRun, tmp: Path) -> dict:
    from runtime.handoff_onnx import write_onnx

    return write_onnx(run, tmp)


_WRITERS = {"hf": _write_hf, "peft": _write_peft, "onnx": _write_onnx}
