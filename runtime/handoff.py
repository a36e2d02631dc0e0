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
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from runtime.errors import RuntimeConfigError

FORMATS = ("hf", "peft", "onnx")
TOLERANCE = 1e-4  # max abs difference of logits allowed against the run's own model
MODELING_FILE = "modeling_recycled.py"
AUTO_CLASSES = {"seq-cls": "AutoModelForSequenceClassification",
                "token-cls": "AutoModelForTokenClassification",
                "qa": "AutoModelForQuestionAnswering"}
REMOTE_CLASSES = {"seq-cls": "RecycledForSequenceClassification",
                  "token-cls": "RecycledForTokenClassification",
                  "qa": "RecycledForQuestionAnswering"}
PROBE_TEXTS = ("the quick brown fox jumps over the lazy dog near the river bank",
               "a short one", "shares fell as the bank cut its profit forecast for the year")


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


@dataclasses.dataclass
class TrainedRun:
    """A run folder rebuilt in memory, without its cache."""

    path: str
    saved: dict  # RUN/config.json
    config: object  # TrainConfig
    built: object  # runtime.inference.Built, best weights loaded, eval mode
    label_names: list
    pooling: str  # resolved seq-cls pooling ("pooler" for older runs)
    metrics: dict  # RUN/metrics.json ({} if absent)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def stack(self):
        return self.built.model.encoder

    @property
    def remote_code(self) -> bool:
        """True when transformers' own classes cannot express the model (see module doc)."""
        pooled = self.task == "seq-cls" and self.pooling in ("cls", "mean")
        return pooled or self.config.adapter == "bottleneck"


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


def load_trained_run(run: str) -> TrainedRun:
    """Rebuild run folder `run` (config.json, weights.pt) from its checkpoint, no cache needed."""
    from runtime import inference
    from runtime.runs import (LEGACY_DEFAULTS, _read_run_config, load_weights_into,
                              saved_train_config)

    saved = {**LEGACY_DEFAULTS, **_read_run_config(run)}
    config = dataclasses.replace(saved_train_config(saved), device="cpu")
    fingerprint = saved.get("cache_fingerprint") or {}
    manifest = {"model": fingerprint.get("model"), "layer": fingerprint.get("layer")}
    if manifest["layer"] is None:
        raise RuntimeConfigError(f"{run}/config.json has no cache_fingerprint.layer; the run "
                                 "is from an older version: train it again")
    _check_weights(run, inference.model_path_of(config, manifest), fingerprint)
    built = inference.build_model(config, manifest, saved["label_names"])
    weights = load_weights_into(run, built)
    stray = [k for k in weights if not k.startswith(("encoder.layers.", "head."))]
    if stray:
        raise RuntimeConfigError(f"{run}/weights.pt trains {stray[0]!r}, outside the layers and "
                                 "the head; export does not know where it goes in the checkpoint")
    metrics_path = os.path.join(run, "metrics.json")
    metrics = json.loads(Path(metrics_path).read_text()) if os.path.isfile(metrics_path) else {}
    return TrainedRun(run, saved, config, built, list(saved["label_names"]),
                      saved["pooling"], metrics)


def _check_weights(run: str, model_path: str, fingerprint: dict) -> None:
    from export.fingerprint import weights_sha256

    expected = fingerprint.get("weights_sha256")
    if expected and weights_sha256(model_path) != expected:
        raise RuntimeConfigError(f"checkpoint {model_path!r} has other weights than the one run "
                                 f"{run!r} was trained on (weights_sha256 differs); restore it")


# --- the whole model as transformers modules -------------------------------------------------

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
    if run.task != "qa":
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
                       AUTO_CLASSES[run.task]: f"modeling_recycled.{REMOTE_CLASSES[run.task]}"}
    return config


def _bottleneck_spec(run: TrainedRun) -> dict | None:
    adapter = getattr(run.stack, "adapter_config", None)
    if adapter is None or adapter.kind != "bottleneck":
        return None
    family = run.stack.family
    return {"size": adapter.bottleneck_size, "activation": adapter.activation,
            "dropout": adapter.dropout, "layers": list(run.stack.adapter_layers),
            "layers_path": family.layers_path, "targets": list(family.bottleneck_targets)}


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

        target = getattr(hm, REMOTE_CLASSES[run.task])(config)
    else:
        target = getattr(transformers, AUTO_CLASSES[run.task]).from_config(config)
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

def load_tokenizer(run: TrainedRun):
    """The checkpoint's tokenizer, truncating at the cache's max_length as the cache build did."""
    from export.tokenize import load_tokenizer as _load

    tokenizer = _load(run.built.model_path)
    max_length = (run.saved.get("cache_fingerprint") or {}).get("max_length")
    if max_length:
        tokenizer.model_max_length = int(max_length)
    return tokenizer


def probe_inputs(run: TrainedRun, texts=PROBE_TEXTS) -> dict:
    """Right-padded int64 tensors {input_ids, attention_mask[, token_type_ids]} of `texts`."""
    tokenizer = load_tokenizer(run)
    enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    return {k: v.to(torch.long) for k, v in enc.items()}


def runtime_logits(run: TrainedRun, inputs: dict) -> list:
    """The run's own model on `inputs` (layer-K states from the checkpoint in PyTorch):
    [logits] or [start, end], numpy."""
    from runtime.upper import load_full

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    types = inputs.get("token_type_ids")
    with torch.no_grad():
        if run.config.mode == "recycled":
            full = load_full(run.built.model_path)
            hidden = full.hidden_states_at(ids, mask, run.stack.layer, types)  # (B, T, H)
            out = run.built.model(hidden, mask)
        else:
            out = run.built.model(ids, mask, types)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def max_diff(run: TrainedRun, reference: list, got: list, mask) -> float:
    """Max abs difference over real tokens (all of them for seq-cls)."""
    mask = np.asarray(mask).astype(bool)
    worst = 0.0
    for a, b in zip(reference, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise RuntimeConfigError(f"exported model gives logits of shape {b.shape}, the run "
                                     f"{a.shape}; the export is wrong")
        if run.task != "seq-cls":
            a, b = a[mask], b[mask]
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def hf_logits(model, inputs: dict) -> list:
    """[logits] or [start_logits, end_logits] of a transformers task model, numpy."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    feed = {k: v for k, v in inputs.items() if k in accepted or "kwargs" in accepted}
    with torch.no_grad():
        out = model(**feed)
    if hasattr(out, "start_logits"):
        return [out.start_logits.numpy(), out.end_logits.numpy()]
    return [out.logits.numpy()]


def check_parity(run: TrainedRun, what: str, logits_of) -> float:
    """Max abs difference of `logits_of(inputs)` against the run on probes; refused above 1e-4.

    Two probes: a padded batch of three texts, and one text alone (another batch size and
    length, so a graph that fixed either shape is caught).
    """
    diff = 0.0
    for texts in (PROBE_TEXTS, PROBE_TEXTS[:1]):
        inputs = probe_inputs(run, texts)
        diff = max(diff, max_diff(run, runtime_logits(run, inputs), logits_of(inputs),
                                  inputs["attention_mask"]))
    if not diff <= TOLERANCE:
        raise RuntimeConfigError(f"the exported {what} differs from the run's model by {diff:.2e} "
                                 f"(max abs logit difference; at most {TOLERANCE} allowed); "
                                 "nothing was written")
    return diff


# --- the formats -------------------------------------------------------------------------------

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

    cls = getattr(transformers, AUTO_CLASSES[run.task])
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
