"""The exported lower stack equals transformers' hidden_states[K] of the full model, for every
supported architecture, and K, model folders and reuse are checked."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export_testkit import TINY_LAYERS, save_tiny_model
from export.errors import ExportError
from export.onnx_export import EXPORT_INFO, export_lower
from export.session import LowerSession

ARCHITECTURES = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet",
                 "deberta-v2", "modernbert"]
LAYER = 2


def _inputs(model_type: str, length: int = 40):
    """Three rows of different real lengths, right-padded; longer than the export's probe
    and than ModernBERT's local attention window (16)."""
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 99, size=(3, length))  # (B, T)
    mask = np.ones((3, length), dtype=np.int64)
    mask[1, 25:] = 0
    mask[2, 7:] = 0
    pad = 1 if model_type in ("roberta", "xlm-roberta", "mpnet") else 0
    ids[mask == 0] = pad
    return ids.astype(np.int64), mask


def _torch_hidden(model_dir, ids, mask, layer):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    output_hidden_states=True)
    return out.hidden_states[layer].numpy()  # (B, T, H)


@pytest.mark.parametrize("model_type", ARCHITECTURES, ids=ARCHITECTURES)
def test_onnx_matches_hidden_states_k(tmp_path, model_type):
    model_dir = save_tiny_model(tmp_path / "model", model_type)
    info = export_lower(model_dir, LAYER, tmp_path / "onnx")
    assert info["layer"] == LAYER and info["architecture"] == model_type
    ids, mask = _inputs(model_type)
    got = LowerSession(tmp_path / "onnx", device="cpu", threads=1).run(ids, mask)  # (B, T, H)
    want = _torch_hidden(model_dir, ids, mask, LAYER)
    real = mask.astype(bool)
    assert got.shape == want.shape == (3, 40, 32)
    diff = np.abs(got[real] - want[real]).max()
    assert diff <= 1e-4
    # The cached layer is K, not the last one. Random-initialised ModernBERT layers change the
    # states little, so compare with the export's own error rather than a fixed gap.
    last = _torch_hidden(model_dir, ids, mask, TINY_LAYERS)
    assert np.abs(got[real] - last[real]).max() > 100 * max(diff, 1e-6)


def test_torch_onnx_fallback_matches(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model", "bert")
    info = export_lower(model_dir, 3, tmp_path / "onnx", exporter="torch")
    assert info["exporter"] == "torch.onnx"
    ids, mask = _inputs("bert")
    got = LowerSession(tmp_path / "onnx", device="cpu", threads=1).run(ids, mask)
    want = _torch_hidden(model_dir, ids, mask, 3)
    assert np.abs(got[mask == 1] - want[mask == 1]).max() <= 1e-4


def test_export_is_reused_while_model_and_k_match(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model", "bert")
    first = export_lower(model_dir, LAYER, tmp_path / "onnx")
    graph = tmp_path / "onnx" / first["file"]
    stamp = graph.stat().st_mtime_ns
    stale = tmp_path / ".onnx-killed"  # what an export killed mid-way leaves
    (stale / "onnx").mkdir(parents=True)
    (stale / "onnx" / "model.onnx").write_bytes(b"half")
    assert export_lower(model_dir, LAYER, tmp_path / "onnx") == first
    assert not stale.exists()  # removed under the export lock
    assert graph.stat().st_mtime_ns == stamp  # not rewritten
    other = export_lower(model_dir, LAYER + 1, tmp_path / "onnx")  # K changed: re-exported
    assert other["layer"] == LAYER + 1
    assert json.loads((tmp_path / "onnx" / EXPORT_INFO).read_text())["layer"] == LAYER + 1


@pytest.mark.parametrize("layer", [0, -1, TINY_LAYERS, TINY_LAYERS + 3],
                         ids=["zero", "negative", "all-layers", "beyond"])
def test_layer_out_of_range(tmp_path, layer):
    model_dir = save_tiny_model(tmp_path / "model", "bert")
    with pytest.raises(ExportError) as err:
        export_lower(model_dir, layer, tmp_path / "onnx")
    assert str(err.value) == (f"layer K={layer} is out of range for this 4-layer bert model; "
                              "pick an integer 1 <= K <= 3 (at least one layer must stay above "
                              "the cache)")
    assert not (tmp_path / "onnx").exists()


def test_distilbert_layer_count_comes_from_n_layers(tmp_path):
    model_dir = save_tiny_model(tmp_path / "model", "distilbert")
    with pytest.raises(ExportError, match="4-layer distilbert"):
        export_lower(model_dir, 4, tmp_path / "onnx")


def test_unsupported_architecture(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (tmp_path / "model" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ExportError, match=r"^architecture 'gpt2' is not supported; supported: "
                                          r"bert, camembert, deberta-v2, distilbert"):
        export_lower(tmp_path / "model", 1, tmp_path / "onnx")


@pytest.mark.parametrize("remove, message", [
    ("config.json", "has no config.json; pass --model a Hugging Face checkpoint folder"),
    ("model.safetensors", "has no weights (model.safetensors or pytorch_model.bin)"),
], ids=["no-config", "no-weights"])
def test_model_folder_checked(tmp_path, remove, message):
    model_dir = save_tiny_model(tmp_path / "model", "bert")
    (model_dir / remove).unlink()
    with pytest.raises(ExportError) as err:
        export_lower(model_dir, 1, tmp_path / "onnx")
    assert message in str(err.value)


def test_missing_model_folder(tmp_path):
    with pytest.raises(ExportError, match="does not exist; pass --model a folder saved"):
        export_lower(tmp_path / "nope", 1, tmp_path / "onnx")
