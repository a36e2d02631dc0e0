"""`--device cuda`: the upper stacks, training, resume and prediction on a GPU.

Skipped where torch sees no GPU (CI has none); run on a GPU machine with
`pytest tests/runtime/test_cuda.py`. The CPU tests prove the arithmetic; these prove that every
tensor reaches the device, that a run trained on a GPU is served on a CPU, and that resume on a
GPU continues as if never stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from runtime import run_folder
from runtime.adapters import AdapterConfig, apply_adapters
from runtime.heads import build_head
from runtime.models import RecycledModel
from runtime.prediction import load_run, predict_keys
from runtime.trainer import TrainConfig, train
from runtime.upper import full_from_model, upper_from_model
from tiny_encoders import IDS, batch, make_base

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


def _recycled(name):
    base = make_base(name)
    ids, mask = batch(base.config)
    full = full_from_model(copy.deepcopy(base))
    with torch.no_grad():
        hidden = full.hidden_states_at(ids, mask, K)
    upper = upper_from_model(base, K)
    torch.manual_seed(3)
    model = RecycledModel(upper, build_head("seq-cls", upper, 3))
    apply_adapters(model, AdapterConfig(kind="lora", r=2, dropout=0.0))
    return model.eval(), hidden, mask


@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_upper_stack_on_cuda_computes_what_it_computes_on_cpu(name):
    cpu, hidden, mask = _recycled(name)
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


def test_a_run_trained_on_cuda_learns_and_predicts_the_same_on_cpu(tiny_task, tmp_path):
    metrics = train(_config(tiny_task, tmp_path / "run"))
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


class _Killed(Exception):
    pass


def test_resume_on_cuda_continues_as_if_never_stopped(tiny_task, tmp_path, monkeypatch):
    # Dropout on a GPU draws from the CUDA generator: the checkpoint must carry its state too.
    straight = train(_config(tiny_task, tmp_path / "straight", epochs=2, patience=5))
    original = run_folder.save_checkpoint

    def save_then_die(config, model, optimizer, schedule, state, rank):
        original(config, model, optimizer, schedule, state, rank)
        raise _Killed

    monkeypatch.setattr(run_folder, "save_checkpoint", save_then_die)
    config = _config(tiny_task, tmp_path / "run", epochs=2, patience=5)
    with pytest.raises(_Killed):
        train(config)
    monkeypatch.setattr(run_folder, "save_checkpoint", original)
    resumed = train(dataclasses.replace(config, resume=True))
    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-6, f"resumed weights differ by up to {worst:.3g}"
    assert resumed["accuracy"] == straight["accuracy"]
