"""runtime.trainer: the three modes learn the tiny task, share batches, resume, and DDP works."""

import dataclasses
import json
import re

import pytest
import torch

from runtime.errors import RuntimeConfigError
from runtime import run_folder
from runtime.trainer import TrainConfig, train


def _config(tiny_task, tmp_path, **kw):
    base = dict(cache=tiny_task["cache"], labels=tiny_task["seq_labels"], task="seq-cls",
                out=str(tmp_path / "run"), epochs=3, lr=1e-2, token_budget=256, max_batch_size=8)
    base.update(kw)
    return TrainConfig(**base)


# Keys fixed by ../shared/CONTRACT.md (metrics.json) and by the per-step log (presence only:
# step times are measured in bench/, not asserted here).
SEQ_CLS_METRIC_KEYS = frozenset({"accuracy", "macro_f1", "train_seconds"})
TOKEN_CLS_METRIC_KEYS = frozenset({"f1", "train_seconds"})
STEP_LOG_KEYS = frozenset({"wait_s", "compute_s"})


def test_recycled_seq_cls_learns_and_writes_the_run_folder(tiny_task, tmp_path):
    metrics = train(_config(tiny_task, tmp_path, adapter="lora", epochs=6, patience=6))
    assert metrics["accuracy"] >= 0.75  # topic is the first word: easy when training works
    assert set(metrics) >= SEQ_CLS_METRIC_KEYS
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    config = json.loads((run / "config.json").read_text())
    assert config["label_names"] == ["cat", "red", "sun"] and config["mode"] == "recycled"
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert steps and all(STEP_LOG_KEYS <= set(s) for s in steps)
    weights = torch.load(run / "weights.pt", weights_only=True)
    assert weights and all("lora" in k or k.startswith("head.") for k in weights)


def _batches_of(run):
    """Per-epoch key batches a run trained on, from the keys logged in steps.jsonl."""
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    return [(s["epoch"], s["step"], tuple(s["keys"])) for s in steps]


@pytest.fixture(scope="module")
def recycled_run(tiny_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "run"
    metrics = train(TrainConfig(cache=tiny_task["cache"], labels=tiny_task["seq_labels"],
                                task="seq-cls", out=str(out), epochs=2, patience=5, lr=1e-2,
                                token_budget=256, max_batch_size=8))
    return out, metrics


@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_full_and_frozen_modes_train_on_the_same_batches(tiny_task, tmp_path, recycled_run, mode):
    rec_dir, rec = recycled_run
    other = train(_config(tiny_task, tmp_path, out=str(tmp_path / mode), mode=mode,
                          epochs=2, patience=5))
    assert _batches_of(rec_dir) == _batches_of(tmp_path / mode)
    assert set(other) == set(rec)
    config = json.loads((tmp_path / mode / "config.json").read_text())
    assert config["mode"] == mode
    weights = torch.load(tmp_path / mode / "weights.pt", weights_only=True)
    layers = {int(m.group(1)) for k in weights if (m := re.search(r"layers\.(\d+)\.", k))}
    # LoRA on all 4 layers in full mode; only above K=2 in frozen mode
    assert layers == ({0, 1, 2, 3} if mode == "full" else {2, 3})


def test_token_cls_recycled_learns_entities(tiny_task, tmp_path):
    metrics = train(_config(tiny_task, tmp_path, labels=tiny_task["tok_labels"], task="token-cls",
                            adapter="none", lr=3e-2, epochs=6, patience=6))
    assert set(metrics) >= TOKEN_CLS_METRIC_KEYS
    assert metrics["f1"] > 0.4  # names and places are fixed words: learnable in a few steps


class _Killed(Exception):
    pass


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_resume_continues_from_the_checkpoint_as_if_never_stopped(tiny_task, tmp_path,
                                                                   monkeypatch, device):
    # On a GPU dropout draws from the CUDA generator: the checkpoint must carry its state too.
    straight = train(_config(tiny_task, tmp_path, out=str(tmp_path / "straight"), epochs=2,
                             patience=5, device=device))
    original = run_folder.save_checkpoint

    def save_then_die(*args):
        original(*args)
        raise _Killed  # the process dies right after the first epoch's checkpoint

    monkeypatch.setattr(run_folder, "save_checkpoint", save_then_die)
    config = _config(tiny_task, tmp_path, epochs=2, patience=5, device=device)
    with pytest.raises(_Killed):
        train(config)
    monkeypatch.setattr(run_folder, "save_checkpoint", original)
    resumed = train(dataclasses.replace(config, resume=True))
    assert resumed["epochs_run"] == 2
    assert {e for e, _, _ in _batches_of(tmp_path / "run")} == {0, 1}  # epoch 0 not rerun
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["weights"]
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["weights"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert resumed["accuracy"] == straight["accuracy"]


def test_run_folder_of_another_task_is_refused(tiny_task, tmp_path):
    train(_config(tiny_task, tmp_path, epochs=1))
    with pytest.raises(RuntimeConfigError, match="holds a 'seq-cls' run, not 'token-cls'"):
        train(_config(tiny_task, tmp_path, labels=tiny_task["tok_labels"], task="token-cls"))
    assert (tmp_path / "run" / "metrics.json").is_file()  # nothing lost


def _trained(run) -> dict:
    return torch.load(run / "weights.pt", weights_only=True)


def test_the_input_adapter_learns_at_its_own_rate_and_the_layers_at_theirs(tiny_task, tmp_path):
    # adapter_up starts at exactly 0 (runtime.adapters), so how far it moves is what the rate
    # allowed: AdamW moves a weight at most lr * (1 - b1) / sqrt(1 - b2) = 3.17 lr a step (the
    # schedule's factor is <= 1; the decay scales a weight, and 0 stays 0).
    def run(name, **kw):
        out = tmp_path / name
        train(_config(tiny_task, tmp_path, out=str(out), adapter="bottleneck", input_adapter=True,
                      epochs=1, **kw))
        return _trained(out), len((out / "steps.jsonl").read_text().splitlines())

    slow_rate = 1e-9
    slow, steps = run("slow", input_adapter_lr=slow_rate)
    same, _ = run("same")

    def moved(weights, part):
        return max(w.abs().max().item() for k, w in weights.items()
                   if part in k and "adapter_up" in k)

    bound = steps * slow_rate * 0.1 / 0.001 ** 0.5 * 1.01
    assert moved(slow, "input_adapter") <= bound
    assert moved(same, "input_adapter") > 1e3 * bound  # at the layers' 1e-2 it moves
    assert moved(slow, "attention") > 1e3 * bound  # the layers' adapters keep their rate


def test_max_grad_norm_clips_every_step(tiny_task, tmp_path, monkeypatch):
    norms = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads])).item())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    train(_config(tiny_task, tmp_path, out=str(tmp_path / "free"), epochs=1))
    free, norms[:] = list(norms), []
    limit = 0.1 * min(free)  # far below every unclipped step's norm: each step is clipped
    train(_config(tiny_task, tmp_path, out=str(tmp_path / "clipped"), epochs=1,
                  max_grad_norm=limit))
    assert len(norms) == len(free) > 0
    # clip_grad_norm_ scales by limit / (norm + 1e-6): the norm after it is just under limit
    assert all(n <= limit * (1 + 1e-5) for n in norms)
    assert all(n >= limit * (1 - 1e-3) for n in norms)


def _die_after_first_checkpoint(monkeypatch):
    original = run_folder.save_checkpoint

    def save_then_die(*args):
        original(*args)
        raise _Killed

    monkeypatch.setattr(run_folder, "save_checkpoint", save_then_die)
    return original


@pytest.mark.parametrize("change", [dict(lr=3e-2), dict(epochs=3), dict(seed=1),
                                    dict(adapter="bottleneck"), dict(max_grad_norm=1.0)],
                         ids=["lr", "epochs", "seed", "adapter", "max_grad_norm"])
def test_resume_refuses_settings_other_than_the_checkpoints(tiny_task, tmp_path, monkeypatch,
                                                              change):
    # A resumed run that silently took new settings would be half one recipe, half another,
    # and its config.json would name only the second.
    config = _config(tiny_task, tmp_path, epochs=2, patience=5)
    original = _die_after_first_checkpoint(monkeypatch)
    with pytest.raises(_Killed):
        train(config)
    monkeypatch.setattr(run_folder, "save_checkpoint", original)
    before = (tmp_path / "run" / "config.json").read_bytes()
    name = next(iter(change))
    with pytest.raises(RuntimeConfigError, match=f"--resume.*{name}"):
        train(dataclasses.replace(config, resume=True, **change))
    assert (tmp_path / "run" / "config.json").read_bytes() == before  # nothing overwritten
    assert train(dataclasses.replace(config, resume=True))["epochs_run"] == 2


def test_resume_of_a_run_that_stopped_early_trains_no_further(tiny_task, tmp_path):
    config = _config(tiny_task, tmp_path, epochs=8, patience=1, lr=1e-6)  # no dev gain: stops
    first = train(config)
    assert first["epochs_run"] < 8
    steps = (tmp_path / "run" / "steps.jsonl").read_text()
    again = train(dataclasses.replace(config, resume=True))
    assert again == {**first, "train_seconds": again["train_seconds"]}
    assert again["train_seconds"] == pytest.approx(first["train_seconds"], abs=1e-3)
    assert (tmp_path / "run" / "steps.jsonl").read_text() == steps  # no step was taken
