"""runtime.handoff_onnx: the whole task model of a run as one ONNX graph.

`model.onnx` takes the tokenizer's int64 inputs (input_ids, attention_mask and, where the model
uses them, token_type_ids), each [batch, sequence] with both axes dynamic, and returns `logits`
([B, C] or [B, T, C]) or `start_logits` and `end_logits` ([B, T]). It is exported with
`torch.onnx.export` from the same in-memory transformers model the hf format saves (Optimum's
exporter does not take the custom-code heads and adapters, so one exporter serves every run),
then run by onnxruntime and compared with the run's own model on probe texts: refused above
1e-4. config.json (labels), the tokenizer and the model card go beside it.
"""

from __future__ import annotations

import inspect
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from runtime.errors import RuntimeConfigError

GRAPH_FILE = "model.onnx"
_OPSET = 17  # the TorchScript exporter's well-trodden opset, as export/onnx_export.py uses


class _Logits(nn.Module):
    """Positional inputs -> plain logits tensors, the form torch.onnx.export traces."""

    def __init__(self, model: nn.Module, input_names: list, qa: bool):
        super().__init__()
        self.model, self.input_names, self.qa = model, input_names, qa

    def forward(self, *inputs):
        out = self.model(**dict(zip(self.input_names, inputs)))
        return (out.start_logits, out.end_logits) if self.qa else out.logits


def graph_inputs(model, tokenizer) -> list:
    """The tokenizer's outputs that the model takes, in a fixed order."""
    accepted = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in accepted:
        names.append("token_type_ids")
    return names


def write_onnx(run, folder: Path) -> dict:
    """Export run `run` as `folder`/model.onnx (+ config, tokenizer); returns the summary."""
    import onnxruntime

    from runtime import handoff, handoff_parity as parity

    model = handoff.build_hf_model(run)
    tokenizer = parity.load_tokenizer(run)
    names = graph_inputs(model, tokenizer)
    outputs = list(run.task.output_names)
    example = parity.probe_inputs(run, parity.PROBE_TEXTS[1:])
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes.update({o: {0: "batch", 1: "sequence"} if run.task.per_token else {0: "batch"}
                 for o in outputs})
    path = folder / GRAPH_FILE
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(_Logits(model, names, len(outputs) == 2).eval(),
                          tuple(example[n] for n in names), str(path), input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=_OPSET,
                          dynamo=False)
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unrelated exception types
        raise RuntimeConfigError(f"onnxruntime cannot load the exported graph ({exc}); "
                                 "nothing was written") from None
    fed = [i.name for i in session.get_inputs()]

    def logits_of(inputs):
        return session.run(outputs, {n: inputs[n].numpy() for n in fed})

    diff = parity.check_parity(run, "ONNX graph", logits_of)
    model.config.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if run.remote_code:  # config.json names it in auto_map
        shutil.copyfile(Path(handoff.__file__).with_name("handoff_modeling.py"),
                        folder / handoff.MODELING_FILE)
    return {"max_abs_diff": diff, "remote_code": run.remote_code, "inputs": fed,
            "outputs": outputs}
