"""`--device cuda`: the upper stacks, training and prediction on a GPU.

Skipped where torch sees no GPU (CI has none); run on a GPU machine with
`pytest tests/runtime/test_cuda.py`. The CPU tests prove the arithmetic; these prove that every
tensor reaches the device and that a run trained on a GPU is served on a CPU. Resume on a GPU
is test_trainer's resume test, run on both devices.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from runtime.adapters import AdapterConfig, apply_adapters
from runtime.prediction import load_run, predict_keys
from runtime.trainer import TrainConfig, train
from tiny_encoders import IDS, recycled_and_frozen

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

K = 2
# The CPU tests compare two fp32 evaluation orders of the same function at 1e-4 (test_models'
# TOL); CPU against GPU is the same kind of comparison, with TF32 off (torch's default for
# matmuls) so both sides round at fp32's 2^-24, on logits of order 1 from 2 layers of width 32.
TOL = 1e-4


@pytest.fixture(autouse=True)
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# LoRA alone, and a bottleneck with the input adapter (a submodule run by a forward pre-hook,
# which must move with the layer it sits on)
ADAPTERS = {"lora": dict(kind="lora", r=2),
            "bottleneck+input": dict(kind="bottleneck", bottleneck_size=4, input_adapter=True)}


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_upper_stack_on_cuda_computes_what_it_computes_on_cpu(name, adapter):
    cpu, _, (hidden, _, mask) = recycled_and_frozen(name, K)
    apply_adapters(cpu, AdapterConfig(dropout=0.0, **ADAPTERS[adapter]))
    gpu = copy.deepcopy(cpu).cuda()
    labels = torch.tensor([0, 2, 1])
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        # SGD, not Adam: Adam's first step is lr * sign(grad), which turns a rounding
        # difference in a near-zero gradient into a whole step.
        optimizer = torch.optim.SGD([p for _, p in model.trainable_parameters()], lr=0.5)
        model.loss(model(hidden.to(dev), mask.to(dev)), labels.to(dev)).backward()
        optimizer.step()
    with torch.no_grad():
        a, b = cpu(hidden, mask), gpu(hidden.cuda(), mask.cuda()).cpu()
    assert (a - b).abs().max() <= TOL


def _config(tiny_task, out, **kw):
    base = dict(cache=tiny_task["cache"], labels=tiny_task["seq_labels"], task="seq-cls",
                out=str(out), epochs=6, patience=6, lr=1e-2, token_budget=256,
                max_batch_size=8, adapter="lora", device="cuda")
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("input_adapter", [False, True])
def test_a_run_trained_on_cuda_learns_and_predicts_the_same_on_cpu(tiny_task, tmp_path,
                                                                   input_adapter):
    metrics = train(_config(tiny_task, tmp_path / "run", input_adapter=input_adapter))
    assert metrics["accuracy"] >= 0.75  # the CPU test's bar: the topic is the first word
    keys = [json.loads(line)["id"] for line in open(tiny_task["seq_labels"])][:20]
    on_gpu = predict_keys(load_run(str(tmp_path / "run"), device="cuda"), keys)
    on_cpu = predict_keys(load_run(str(tmp_path / "run"), device="cpu"), keys)
    assert [p["label"] for p in on_gpu] == [p["label"] for p in on_cpu]
    assert max(abs(g["score"] - c["score"]) for g, c in zip(on_gpu, on_cpu)) <= TOL


@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_full_and_frozen_token_cls_run_on_cuda(tiny_task, tmp_path, mode):
    # From token ids on the GPU: the ids, masks, class weights and head must all be moved.
    metrics = train(_config(tiny_task, tmp_path / mode, mode=mode, labels=tiny_task["tok_labels"],
                            task="token-cls", adapter="none", lr=3e-2))
    assert metrics["f1"] > 0.4  # the CPU test's bar for names and places
