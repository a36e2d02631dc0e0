"""The eager PyTorch baseline (TorchLower) computes what the ONNX export computes: the full
model's hidden_states[K], for every architecture, ModernBERT's final norm dropped included."""
from __future__ import annotations

import numpy as np
import pytest

from export_testkit import save_tiny_model
from export.throughput import TorchLower
from test_export_onnx import ARCHITECTURES, LAYER, _inputs, _torch_hidden


@pytest.mark.parametrize("model_type", ARCHITECTURES, ids=ARCHITECTURES)
def test_torch_lower_matches_hidden_states_k(tmp_path, model_type):
    model_dir = save_tiny_model(tmp_path / "model", model_type)
    ids, mask = _inputs(model_type)
    got = TorchLower(model_dir, LAYER, threads=1).run(ids, mask)  # (B, T, H)
    want = _torch_hidden(model_dir, ids, mask, LAYER)
    real = mask.astype(bool)
    # The same modules in the same order on the same inputs: only the attention kernels'
    # handling of a shorter stack may differ, far below float32 noise at width 32.
    assert np.abs(got[real] - want[real]).max() <= 1e-5
