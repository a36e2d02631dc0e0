"""Throughput of the lower stack: the PyTorch eager baseline with the same interface as
LowerSession, and a tokens-per-second measurement over the same batches for both.

The build benchmark (bench/test_build_bench.py) and bench.report use these, so that
onnxruntime and PyTorch are timed on identical batches with the same thread count.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .batching import Batch, collate
from .onnx_export import load_config, truncated_model
from .tokenize import Encoded

COMPUTE_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # TorchLower's compute -> torch dtype


class TorchLower:
    """The lower K layers in PyTorch eager mode: the checkpoint truncated to K layers.

    Args:
        model_path: a Hugging Face checkpoint folder.
        layer: K.
        threads: torch intra-op threads (None leaves torch's default).
        compute: "fp32", or "bf16" (weights and activations in bfloat16; oneDNN uses the
            CPU's avx512_bf16 or AMX instructions where it has them); outputs are float32.
    """

    def __init__(self, model_path: str | Path, layer: int, *, threads: int | None = None,
                 compute: str = "fp32"):
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.model = truncated_model(Path(model_path), load_config(Path(model_path)), layer)
        if compute not in COMPUTE_DTYPES:
            raise ValueError(f"compute {compute!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        self.model.to(getattr(torch, COMPUTE_DTYPES[compute]))
        accepted = inspect.signature(self.model.forward).parameters
        self.inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                       if n in accepted]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Hidden states after layer K: float32 (B, T, H)."""
        import torch

        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids}
        feed = {n: torch.from_numpy(np.asarray(given[n], dtype=np.int64))
                for n in self.inputs if given[n] is not None}
        with torch.inference_mode():
            return self.model(**feed).last_hidden_state.float().numpy()  # (B, T, H)


def run_batches(runner, encoded: Sequence[Encoded], batches: Sequence[Batch],
                pad_id: int) -> list[np.ndarray]:
    """Run every batch through `runner` (LowerSession or TorchLower); outputs per batch."""
    return [runner.run(**collate(encoded, b, pad_id)) for b in batches]


def tokens_per_second(runner, encoded: Sequence[Encoded], batches: Sequence[Batch],
                      pad_id: int, *, repeats: int = 3) -> float:
    """Real (unpadded) tokens per second, best of `repeats` passes after one warm-up pass."""
    real = sum(len(encoded[i]) for b in batches for i in b.indices)
    run_batches(runner, encoded, batches[:1], pad_id)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_batches(runner, encoded, batches, pad_id)
        best = min(best, time.perf_counter() - start)
    return real / best
