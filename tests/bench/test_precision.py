"""bench.precision: the error measure, and a bf16 lower stack that stays near fp32 on a tiny
random BERT (the CPU flag probe it reports is export.cpu's, tested there)."""
import numpy as np
import pytest

from bench.precision import relative_error


def test_relative_error_by_hand():
    ref = [np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]])]
    other = [np.array([[3.0, 4.5]]), np.array([[0.0, 0.0]])]
    rel, worst = relative_error(ref, other)
    assert rel == pytest.approx(0.5 / 5.0) and worst == pytest.approx(0.5)


def test_bf16_lower_stack_is_close_to_fp32(tmp_path):
    import torch
    from transformers import BertConfig, BertModel

    from export.throughput import TorchLower

    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=37)
    model = tmp_path / "m"
    BertModel(config).save_pretrained(model)
    ids = np.array([[2, 5, 7, 9, 3]], np.int64)
    mask = np.ones_like(ids)
    fp32 = TorchLower(model, 2).run(ids, mask)
    bf16 = TorchLower(model, 2, compute="bf16").run(ids, mask)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    rel, _ = relative_error([fp32[0]], [bf16[0]])
    assert 0 < rel < 0.05  # bf16 keeps 8 significant bits: about 0.4% a value
    with pytest.raises(ValueError, match="compute 'int4' is not one of fp32, bf16"):
        TorchLower(model, 2, compute="int4")
