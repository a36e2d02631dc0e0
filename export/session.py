"""LowerSession: the exported lower stack under onnxruntime, tuned for throughput.

On CPU: full graph optimisation (on top of the fused graph the export saved), one intra-op
thread per core the process may use, sequential execution. With a GPU (onnxruntime-gpu and
`device="cuda"`): the CUDA provider on an fp16 copy of the graph (inputs and outputs kept fp32)
and I/O binding, so that batches are not copied through host buffers twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import ExportError
from .onnx_export import EXPORT_INFO

FP16_NAME = "model.fp16.onnx"
DEVICES = ("auto", "cpu", "cuda")


def available_cores() -> int:
    """Cores this process may run on (respects taskset / cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_available() -> bool:
    """True when onnxruntime here can run on a CUDA GPU."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class LowerSession:
    """Runs the lower K layers exported to `onnx_dir` (see export.onnx_export).

    Args:
        onnx_dir: folder holding export.json and the ONNX files.
        device: "cpu", "cuda", or "auto" (CUDA when onnxruntime offers it).
        threads: intra-op threads on CPU; None means one per available core.
    """

    def __init__(self, onnx_dir: str | Path, *, device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        self.onnx_dir = Path(onnx_dir)
        try:
            self.info = json.loads((self.onnx_dir / EXPORT_INFO).read_text())
        except (OSError, ValueError):
            raise ExportError(f"{self.onnx_dir} holds no finished export ({EXPORT_INFO} missing "
                              f"or unreadable); run python -m export.lower again") from None
        if device not in DEVICES:
            raise ExportError(f"device {device!r} is unknown; use one of {', '.join(DEVICES)}")
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        if device == "cuda" and not cuda_available():
            raise ExportError("--device cuda needs onnxruntime-gpu and a visible GPU; "
                              "use --device cpu")
        self.device = device
        self.inputs = list(self.info["inputs"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if device == "cuda":
            path, providers = self._fp16_model(), ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            options.intra_op_num_threads = threads or available_cores()
            options.inter_op_num_threads = 1
            path, providers = self.onnx_dir / self.info["file"], ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)

    @property
    def hidden_size(self) -> int:
        return int(self.info["hidden_size"])

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Hidden states after layer K: float32 (B, T, H) for int (B, T) inputs."""
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": (np.zeros_like(input_ids) if token_type_ids is None
                                    else token_type_ids)}
        feed = {name: np.ascontiguousarray(given[name], dtype=np.int64) for name in self.inputs}
        if self.device == "cuda":
            return self._run_bound(feed)
        return self.session.run(None, feed)[0]  # (B, T, H)

    def _run_bound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        binding.bind_output(self.session.get_outputs()[0].name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0].astype(np.float32, copy=False)  # (B, T, H)

    def _fp16_model(self) -> Path:
        """An fp16 copy of the graph for the GPU, made once beside the fp32 one."""
        target = self.onnx_dir / FP16_NAME
        if not target.is_file():
            from onnxruntime.transformers.optimizer import optimize_model

            model = optimize_model(str(self.onnx_dir / self.info["file"]), model_type="bert",
                                   num_heads=int(self.info["num_attention_heads"]),
                                   hidden_size=self.hidden_size, use_gpu=True, opt_level=0)
            model.convert_float_to_float16(keep_io_types=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            model.save_model_to_file(str(tmp))
            os.replace(tmp, target)
        return target
