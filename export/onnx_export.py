"""The lower stack as ONNX: embeddings plus layers 0..K-1, exported once, checked against
PyTorch, optimised for onnxruntime, and reused while model and K stay the same.

The export runs Optimum's exporter (task feature-extraction) on a copy of the checkpoint
truncated to K layers: its `last_hidden_state` is the full model's `hidden_states[K]`. Where
Optimum cannot export an architecture, `torch.onnx.export` does. The graph is compared with the
full PyTorch model on probe inputs and refused if any real token differs by more than 1e-4.
Files land in `<onnx_dir>/`: model.onnx, model.optimized.onnx (when onnxruntime's transformer
optimiser applies and stays within tolerance) and export.json (fingerprint and checks).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .architectures import (architecture_for, architecture_of, check_model_layer, hidden_size,
                            max_positions, num_layers)
from .errors import ExportError
from .fingerprint import check_model_dir, weights_sha256
from .locking import file_lock

EXPORT_INFO = "export.json"
PLAIN_NAME = "model.onnx"
OPTIMIZED_NAME = "model.optimized.onnx"
TOLERANCE = 1e-4  # max abs difference allowed against PyTorch in fp32
EXPORTERS = ("auto", "optimum", "torch")
_TORCH_OPSET = 17  # the TorchScript exporter's well-trodden opset; Optimum picks its own


def load_config(model_path: Path):
    """The checkpoint's config; an unknown or unsupported model_type is a one-line error."""
    try:
        model_type = json.loads((model_path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise ExportError(f"{model_path}/config.json is unreadable ({exc})") from None
    architecture_for(model_type)
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_path))


def export_lower(model_path: str | Path, layer: int, onnx_dir: str | Path, *,
                 exporter: str = "auto", weights_hash: str | None = None) -> dict:
    """Export the lower `layer` layers of `model_path` to `onnx_dir`, or reuse a matching export.

    Args:
        model_path: a Hugging Face checkpoint folder.
        layer: K, with 1 <= K < number of layers.
        onnx_dir: where the ONNX files and export.json go (replaced when stale).
        exporter: "auto" (Optimum, falling back to torch.onnx), "optimum" or "torch".
        weights_hash: the checkpoint's weights_sha256 when the caller already has it.
    Returns:
        The contents of export.json.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter {exporter!r} is unknown; use one of {', '.join(EXPORTERS)}")
    model_path = check_model_dir(model_path)
    config = load_config(model_path)
    check_model_layer(config, layer)
    sha = weights_hash or weights_sha256(model_path)
    onnx_dir = Path(onnx_dir)
    onnx_dir.parent.mkdir(parents=True, exist_ok=True)
    # Parallel shard writers share the folder: one exports, the others wait and reuse.
    with file_lock(onnx_dir.parent / ".onnx.lock"):
        _remove_stale_exports(onnx_dir.parent)
        info = reusable_export(onnx_dir, weights_hash=sha, layer=layer,
                               architecture=config.model_type)
        if info is None:
            info = _export_fresh(model_path, config, layer, sha, onnx_dir, exporter)
    return info


def _remove_stale_exports(folder: Path) -> None:
    """Delete `.onnx-*` work folders of exports killed mid-way (a kill skips their clean-up).
    Called under the export lock, so no live export owns one."""
    for stale in folder.glob(".onnx-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def reusable_export(onnx_dir: Path, *, weights_hash: str, layer: int,
                    architecture: str) -> dict | None:
    """export.json of a finished export of the same weights and K, else None."""
    try:
        info = json.loads((Path(onnx_dir) / EXPORT_INFO).read_text())
    except (OSError, ValueError):
        return None
    same = (info.get("weights_sha256") == weights_hash and info.get("layer") == layer
            and info.get("architecture") == architecture)
    return info if same and (Path(onnx_dir) / str(info.get("file"))).is_file() else None


@contextlib.contextmanager
def _quiet():
    """Silence the expected chatter of an export (unused upper-layer weights, tracer warnings)."""
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    loggers = [logging.getLogger(n) for n in ("optimum", "onnxruntime", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(previous)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_fresh(model_path, config, layer, sha, onnx_dir, exporter) -> dict:
    import onnxruntime
    import transformers

    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=onnx_dir.parent))
    try:
        with _quiet():
            out = tmp / "onnx"
            used, reason = _run_exporter(model_path, config, layer, tmp, out, exporter)
            inputs = _graph_inputs(out / PLAIN_NAME)
            probe = _probe_inputs(config, inputs)
            reference = _reference(model_path, probe, layer)
            diff = _max_diff(out / PLAIN_NAME, probe, reference)
            if not diff <= TOLERANCE:
                raise ExportError(f"the exported lower stack differs from PyTorch by {diff:.2e} "
                                  f"(> {TOLERANCE:g}) on probe inputs; refusing it")
            optimized_diff = _optimize(out, config, probe, reference)
        info = {
            "model": str(model_path), "architecture": config.model_type,
            "weights_sha256": sha, "layer": layer, "num_layers": num_layers(config),
            "hidden_size": hidden_size(config), "num_attention_heads": _heads(config),
            "inputs": inputs, "exporter": used, "fallback_reason": reason,
            "file": OPTIMIZED_NAME if optimized_diff is not None else PLAIN_NAME,
            "max_abs_diff": diff, "optimized_max_abs_diff": optimized_diff,
            "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__,
        }
        (out / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if onnx_dir.exists():
            shutil.rmtree(onnx_dir)
        os.replace(out, onnx_dir)
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _heads(config) -> int:
    return int(getattr(config, "num_attention_heads", None) or getattr(config, "n_heads"))


def truncated_model(model_path: Path, config, layer: int):
    """The checkpoint cut to its lower `layer` layers, in eval mode: its last_hidden_state is the
    full model's hidden_states[K]. The one builder of the lower stack in PyTorch (the exporter
    and export.throughput's eager baseline both use it), so a norm the model applies after its
    last layer (ModernBERT's final_norm) is dropped for both."""
    import torch
    from transformers import AutoModel, logging

    check_model_layer(config, layer)  # K = 0 would load a model of no layers, and run
    arch = architecture_of(config)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the unused upper-layer weights are expected
    try:
        model = AutoModel.from_pretrained(str(model_path), **{arch.layers_key: layer}).eval()
    finally:
        logging.set_verbosity(verbosity)
    if arch.final_norm is not None:
        setattr(model, arch.final_norm, torch.nn.Identity())
    return model


def _run_exporter(model_path, config, layer, tmp, out, exporter) -> tuple[str, str | None]:
    """Write out/model.onnx; returns (exporter used, why Optimum was not used or None)."""
    model = truncated_model(model_path, config, layer)
    reason = None
    if architecture_of(config).final_norm is not None and exporter != "optimum":
        exporter, reason = "torch", "optimum: the truncated model must drop its final norm"
    if exporter in ("auto", "optimum"):
        truncated = tmp / "truncated"
        model.save_pretrained(str(truncated))
        try:
            _export_optimum(truncated, tmp / "optimum")
            out.mkdir()
            os.replace(tmp / "optimum" / PLAIN_NAME, out / PLAIN_NAME)
            return "optimum-onnx", None
        except Exception as exc:  # Optimum raises many types for an unsupported model
            if exporter == "optimum":
                raise ExportError(f"Optimum could not export {config.model_type} "
                                  f"({str(exc).splitlines()[0]})") from None
            reason = f"optimum: {str(exc).splitlines()[0]}"
    out.mkdir(exist_ok=True)
    _export_torch(model, out / PLAIN_NAME)
    return "torch.onnx", reason


def _export_optimum(model_dir: Path, output: Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), str(output), task="feature-extraction",
                library_name="transformers", do_validation=False,
                local_files_only=True)


def _export_torch(model, path: Path) -> None:
    import inspect

    import torch

    accepted = inspect.signature(model.forward).parameters
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state  # (B, T, H)

    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes["last_hidden_state"] = {0: "batch_size", 1: "sequence_length"}
    torch.onnx.export(LastHidden().eval(), example, str(path), input_names=names,
                      output_names=["last_hidden_state"], dynamic_axes=axes,
                      opset_version=_TORCH_OPSET, dynamo=False)


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def _probe_inputs(config, inputs: list[str]) -> dict[str, np.ndarray]:
    """Two sequences, the second right-padded, with random ids and both segment types."""
    rng = np.random.default_rng(0)
    length = min(16, max_positions(config))
    vocab = int(config.vocab_size)
    ids = rng.integers(min(5, vocab - 1), vocab, size=(2, length))  # (B, T)
    mask = np.ones((2, length), dtype=np.int64)
    mask[1, length - 5:] = 0
    ids[1, length - 5:] = getattr(config, "pad_token_id", 0) or 0
    types = np.zeros((2, length), dtype=np.int64)
    if int(getattr(config, "type_vocab_size", 0) or 0) > 1:
        types[:, length // 2:] = 1
    probe = {"input_ids": ids.astype(np.int64), "attention_mask": mask, "token_type_ids": types}
    unknown = set(inputs) - set(probe)
    if unknown:
        raise ExportError(f"the exported graph wants inputs {sorted(unknown)} that export "
                          f"does not know how to feed; this architecture is not supported")
    return {name: probe[name] for name in inputs}


def _reference(model_path: Path, probe: dict, layer: int) -> np.ndarray:
    """hidden_states[K] of the full PyTorch model, real tokens only: (N_real, H)."""
    import torch
    from transformers import AutoModel

    full = AutoModel.from_pretrained(str(model_path)).eval()
    with torch.inference_mode():
        feed = {k: torch.from_numpy(v) for k, v in probe.items()}
        hidden = full(**feed, output_hidden_states=True).hidden_states[layer]  # (B, T, H)
    return hidden.numpy()[probe["attention_mask"].astype(bool)]


def _max_diff(path: Path, probe: dict, reference: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hidden = session.run(None, probe)[0]  # (B, T, H)
    return float(np.abs(hidden[probe["attention_mask"].astype(bool)] - reference).max())


def _optimize(out: Path, config, probe: dict, reference: np.ndarray) -> float | None:
    """Fuse attention and layer norm with onnxruntime's transformer optimiser where it knows the
    graph; keep the result only if it stays within tolerance. Returns its diff or None."""
    model_type = architecture_of(config).ort_model_type
    if model_type is None:
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    target = out / OPTIMIZED_NAME
    try:
        optimized = optimize_model(str(out / PLAIN_NAME), model_type=model_type,
                                   num_heads=_heads(config), hidden_size=hidden_size(config))
        optimized.save_model_to_file(str(target))
        diff = _max_diff(target, probe, reference)
    except Exception:  # an optimiser failure only costs speed: the plain graph stays
        target.unlink(missing_ok=True)
        return None
    if not diff <= TOLERANCE:
        target.unlink()
        return None
    (out / PLAIN_NAME).unlink()  # only the graph the session loads is kept: halves the disk
    return diff
