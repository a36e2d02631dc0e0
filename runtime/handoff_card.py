"""runtime.handoff_card: the model card (README.md) of an exported folder.

It says what the folder holds and how to load it, and where the model came from: base
checkpoint, K, the cache fingerprint, the training recipe and the run's test metrics, plus the
parity measured at export.
"""

from __future__ import annotations

import json
from pathlib import Path

_LOADERS = {
    "hf": """```python
from transformers import {auto}, AutoTokenizer, pipeline
model = {auto}.from_pretrained("{out}"{trust})
tokenizer = AutoTokenizer.from_pretrained("{out}")
{pipeline}```""",
    "peft": """```python
from peft import PeftModel
from transformers import {auto}, AutoTokenizer
base = {auto}.from_pretrained("{base}"{base_kwargs})
model = PeftModel.from_pretrained(base, "{out}")
tokenizer = AutoTokenizer.from_pretrained("{out}")
```""",
    "onnx": """```python
import onnxruntime
from transformers import AutoTokenizer
session = onnxruntime.InferenceSession("{out}/model.onnx")
tokenizer = AutoTokenizer.from_pretrained("{out}")
enc = tokenizer(["some text"], return_tensors="np", truncation=True)
outputs = session.run(None, {{i.name: enc[i.name] for i in session.get_inputs()}})
```""",
}
_REMOTE_NOTES = {
    "hf": "The folder carries `modeling_recycled.py` (torch and transformers only): the head or "
          "adapters have no transformers class, so load it with `trust_remote_code=True`.",
    "peft": "`base/` carries `modeling_recycled.py` (torch and transformers only): the head has "
            "no transformers class, so load the base with `trust_remote_code=True`.",
    "onnx": "The graph needs only onnxruntime. config.json names `modeling_recycled.py` (beside "
            "it) for `AutoConfig.from_pretrained(DIR, trust_remote_code=True)`.",
}


def write_card(run, folder: Path, fmt: str, summary: dict) -> None:
    """Write `folder`/README.md for run `run` exported as `fmt` (summary: what export measured)."""
    fingerprint = run.run_config.cache_fingerprint
    c = run.config
    recipe = {"task": c.task, "mode": c.mode, "adapter": c.adapter, "lr": c.learning_rate,
              "epochs": c.epochs, "epochs_run": run.metrics.get("epochs_run"),
              "pooling": run.pooling if run.task.pools else None, "seed": c.seed,
              "head_init": c.head_init}
    if c.adapter == "lora":
        recipe.update(lora_r=c.lora_r, lora_alpha=c.lora_alpha)
    if c.adapter in ("lora", "bottleneck"):
        recipe.update(input_adapter=c.input_adapter)
    if c.input_adapter_size is not None:  # TrainConfig allows it only with input_adapter
        recipe.update(input_adapter_size=c.input_adapter_size)
    if c.input_adapter_lr is not None:
        recipe.update(input_adapter_lr=c.input_adapter_lr)
    if c.max_grad_norm is not None:
        recipe.update(max_grad_norm=c.max_grad_norm)
    if run.stack.adapter_config.has_bottlenecks:
        recipe.update(bottleneck_size=c.bottleneck_size)
    trust = ", trust_remote_code=True" if summary.get("remote_code") else ""
    pipe = (f'classify = pipeline("{run.task.pipeline}", model="{folder.name}"{trust})\n'
            if run.task.pipeline else "")
    base = summary.get("peft_base") or run.built.model_path
    labels = json.dumps(dict(enumerate(run.label_names))) if run.label_names else None
    base_kwargs = summary.get("peft_base_kwargs", "")
    loader = _LOADERS[fmt].format(auto=run.task.auto_class, out="DIR", trust=trust,
                                  pipeline=pipe.replace(folder.name, "DIR"), base=base,
                                  base_kwargs=base_kwargs)
    lines = [
        "---", f"library_name: {'peft' if fmt == 'peft' else 'transformers' if fmt == 'hf' else 'onnx'}",
        f"base_model: {run.built.model_path}", f"tags: [embedding-recycling, {c.task}]", "---", "",
        f"# {c.task} model trained with embedding recycling ({fmt} export)", "",
        _provenance(run, fingerprint.get("layer")), "",
        f"- base model: `{run.built.model_path}`",
        f"- K (cached lower layers): {fingerprint.get('layer')}",
        f"- cache fingerprint: `{json.dumps(fingerprint, sort_keys=True)}`",
        f"- recipe: `{json.dumps(recipe, sort_keys=True)}`",
        f"- labels (id2label): `{labels}`" if labels else "- labels: start/end logits (extractive QA)",
        f"- test metrics of the run (metrics.json): `{json.dumps(run.metrics, sort_keys=True)}`",
        f"- checked at export: max abs logit difference against the run's own model "
        f"{summary.get('max_abs_diff', float('nan')):.2e} (limit 1e-4)",
        f"- inputs: truncate at {fingerprint.get('max_length')} tokens, as the cache was built",
        "", "## Loading", "", loader, "",
    ]
    if summary.get("remote_code"):
        lines += [_REMOTE_NOTES[fmt], ""]
    (folder / "README.md").write_text("\n".join(lines))


def _provenance(run, layer) -> str:
    """Which weights are the checkpoint's and which the run trained, by training mode."""
    where = f"(`python -m runtime.train --mode {run.config.mode}`, run `{run.path}`)"
    if run.config.mode == "full":
        return (f"The embeddings come unchanged from the base checkpoint; all layers carry the "
                f"run's adapters and the head was trained on raw text {where}.")
    source = "a cache of layer-K hidden states" if run.config.mode == "recycled" else "raw text"
    return (f"The embeddings and layers 0..{layer - 1} come unchanged from the base checkpoint; "
            f"the layers above and the head were trained from {source} {where}.")
