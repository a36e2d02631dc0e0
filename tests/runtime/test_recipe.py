"""The recipe's parts: seq-cls pooling (auto / cls / mean), head learning rate, class weights,
LoRA on every linear, min_epochs, and the seeded train subset."""

import json

import numpy as np
import pytest
import torch

from runtime.errors import RuntimeConfigError
from runtime.heads import build_head
from runtime.pooling import masked_mean, resolve_pooling
from runtime.labels import Example, LabelledData
from runtime.trainer import TrainConfig, class_weights, subset_train, train
from tiny_encoders import make_config


def _sentence_transformers_folder(path, pooling_modes):
    (path / "1_Pooling").mkdir(parents=True)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]))
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_modes))
    return path


@pytest.mark.parametrize("modes, expected", [
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
    ({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}, "cls"),
], ids=["mean", "cls"])
def test_auto_pooling_follows_the_sentence_transformers_config(tmp_path, modes, expected):
    assert resolve_pooling("auto", _sentence_transformers_folder(tmp_path, modes)) == expected


def test_auto_pooling_without_sentence_transformers_files_is_the_pooler_head(tmp_path):
    assert resolve_pooling("auto", tmp_path) == "pooler"
    assert resolve_pooling("cls", tmp_path) == "cls"  # an explicit choice wins
    with pytest.raises(RuntimeConfigError, match="pooling 'max' is unknown"):
        resolve_pooling("max", tmp_path)


def test_the_real_default_model_resolves_to_mean_pooling():
    from export.defaults import default_model_path

    assert resolve_pooling("auto", default_model_path()) == "mean"


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_cls_and_mean_heads_are_dropout_and_one_linear_layer(pooling):
    config = make_config("bert")
    head = build_head("seq-cls", config, 3, pooling=pooling).eval()
    assert sorted(head.state_dict()) == ["classifier.bias", "classifier.weight"]
    hidden = torch.randn(2, 5, config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    pooled = hidden[:, 0] if pooling == "cls" else torch.stack(
        [hidden[0].mean(0), hidden[1, :2].mean(0)])
    assert torch.allclose(head(hidden, mask), head.classifier(pooled), atol=1e-6)


def test_mean_pooling_ignores_padding():
    hidden = torch.randn(1, 4, 6)
    padded = torch.cat([hidden, torch.randn(1, 3, 6) * 100], dim=1)  # (1, 7, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
    assert torch.allclose(masked_mean(padded, mask), hidden.mean(1), atol=1e-6)


def _data(targets, split="train"):
    examples = [Example(f"k{i}", f"k{i}", split, t) for i, t in enumerate(targets)]
    return LabelledData("seq-cls", ["a", "b", "c"], examples)


def test_sqrt_class_weights_favour_rare_classes_and_average_one():
    config = TrainConfig(cache="", labels="", task="seq-cls", out="", class_weighting="sqrt")
    data = _data([0] * 16 + [1] * 4)  # class 2 never seen
    w = class_weights(config, data)
    assert w[1] / w[0] == pytest.approx(2.0)  # sqrt(16 / 4)
    assert (16 * w[0] + 4 * w[1]) / 20 == pytest.approx(1.0)  # an average train label weighs 1
    assert w[2] == 1.0
    assert class_weights(TrainConfig(cache="", labels="", task="seq-cls", out="",
                                     class_weighting="none"), data) is None


def test_token_class_weights_skip_ignored_tokens():
    config = TrainConfig(cache="", labels="", task="token-cls", out="", class_weighting="sqrt")
    data = LabelledData("token-cls", ["O", "B-x"], [
        Example("k", "k", "train", np.array([-100, 0, 0, 0, 0, 1, -100]))])
    w = class_weights(config, data)
    assert w[1] / w[0] == pytest.approx(2.0)


def test_train_subset_is_seeded_and_keeps_dev_and_test():
    data = LabelledData("seq-cls", ["a"], [Example(f"k{i}", f"k{i}", s, 0) for i, s in
                                           enumerate(["train"] * 50 + ["dev"] * 5 + ["test"] * 5)])
    config = TrainConfig(cache="", labels="", task="seq-cls", out="", max_train_examples=10)
    a, b = subset_train(data, config), subset_train(data, config)
    assert len(a.split("train")) == 10 and [e.key for e in a.examples] == [e.key for e in b.examples]
    assert len(a.split("dev")) == 5 and len(a.split("test")) == 5
    other = subset_train(data, TrainConfig(cache="", labels="", task="seq-cls", out="",
                                           max_train_examples=10, seed=1))
    assert {e.key for e in other.split("train")} != {e.key for e in a.split("train")}


@pytest.mark.parametrize("field, value, message", [
    ("lora_targets", "ffn", "lora_targets 'ffn' is not one of"),
    ("class_weighting", "inverse", "class_weighting 'inverse' is not one of"),
    ("max_train_examples", 0, "max_train_examples must be >= 1"),
], ids=["lora-targets", "class-weighting", "subset"])
def test_bad_recipe_values_are_refused(field, value, message):
    with pytest.raises(RuntimeConfigError, match=message):
        TrainConfig(cache="", labels="", task="seq-cls", out="", **{field: value})


def _run(tiny_task, tmp_path, **kw):
    base = dict(cache=tiny_task["cache"], labels=tiny_task["seq_labels"], task="seq-cls",
                out=str(tmp_path / "run"), epochs=2, lr=1e-2, token_budget=256, max_batch_size=8)
    return TrainConfig(**{**base, **kw})


def test_mean_pooling_run_records_its_pooling_and_reloads(tiny_task, tmp_path):
    from runtime.prediction import load_run

    metrics = train(_run(tiny_task, tmp_path, pooling="mean", adapter="none", epochs=4,
                         patience=4, lr=3e-2))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pooling"] == "mean"
    weights = torch.load(tmp_path / "run" / "weights.pt", weights_only=True)
    assert sorted(k for k in weights if k.startswith("head.")) == [
        "head.classifier.bias", "head.classifier.weight"]
    loaded = load_run(str(tmp_path / "run"))
    assert loaded.built.head.pooling == "mean"
    assert "dev_best" in metrics


def test_head_learning_rate_is_its_own_optimizer_group(tiny_task, tmp_path):
    from runtime.inputs import open_cache
    from runtime.models import build_model
    from runtime.trainer import _optimizer

    config = _run(tiny_task, tmp_path, lr=1e-3, head_lr=1e-2)
    reader = open_cache(config.cache)
    from runtime.labels import load_labelled
    from runtime.config import labels_config

    data = load_labelled(labels_config(config), reader)
    built = build_model(config, reader.manifest, data.label_names)
    optimizer, _ = _optimizer(config, built.model, 10)
    head = {id(p) for p in built.head.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in head for p in group["params"]}
        assert len(in_head) == 1  # no group mixes head and encoder parameters
        assert group["initial_lr"] == (1e-2 if in_head.pop() else 1e-3)  # before warm-up scaling


def test_lora_on_all_linears_adapts_attention_and_ffn(tiny_task, tmp_path):
    from runtime.inputs import open_cache
    from runtime.models import build_model
    from runtime.labels import load_labelled
    from runtime.config import labels_config

    config = _run(tiny_task, tmp_path, lora_targets="all")
    reader = open_cache(config.cache)
    data = load_labelled(labels_config(config), reader)
    built = build_model(config, reader.manifest, data.label_names)
    adapted = {n.split(".lora_A")[0].split(".")[-1] for n, _ in built.model.named_parameters()
               if ".lora_A" in n}
    assert adapted == {"query", "key", "value", "dense"}  # dense: attention output, FFN in and out
    attention_only = build_model(_run(tiny_task, tmp_path, lora_targets="attention"),
                                           reader.manifest,
                                           data.label_names)
    assert {n.split(".lora_A")[0].split(".")[-1] for n, _ in
            attention_only.model.named_parameters() if ".lora_A" in n} == {"query", "value"}


def test_epochs_default_to_enough_steps_within_bounds():
    from runtime.config import planned_epochs
    from runtime.options import MAX_AUTO_EPOCHS, MIN_AUTO_EPOCHS, MIN_STEPS

    config = TrainConfig(cache="", labels="", task="seq-cls", out="")
    assert planned_epochs(config, MIN_STEPS) == MIN_AUTO_EPOCHS  # big data: at least 3
    assert planned_epochs(config, MIN_STEPS // 10) == 10
    assert planned_epochs(config, MIN_STEPS // 10 + 1) == 10  # rounds up to reach MIN_STEPS
    assert planned_epochs(config, 1) == MAX_AUTO_EPOCHS
    import dataclasses

    assert planned_epochs(dataclasses.replace(config, epochs=2), 1) == 2  # asked for: kept


def test_min_epochs_keeps_training_past_patience(tiny_task, tmp_path, capsys):
    metrics = train(_run(tiny_task, tmp_path, epochs=3, patience=1, min_epochs=3, lr=1e-9))
    assert metrics["epochs_run"] == 3  # lr 1e-9: no dev gain after epoch 1, yet 3 epochs ran
    stopped = train(_run(tiny_task, tmp_path, out=str(tmp_path / "b"), epochs=3, patience=1,
                         lr=1e-9))
    assert stopped["epochs_run"] == 2
    out = capsys.readouterr().out
    assert "stopping early, no dev gain for 1 epochs" in out
    assert "--min-epochs" not in out  # 3 epochs: epoch 2 ends with the rate below half its peak
    early = train(_run(tiny_task, tmp_path, out=str(tmp_path / "c"), epochs=6, patience=1,
                       lr=1e-9))
    assert early["epochs_run"] == 2
    assert ("epoch 2: the learning rate is still above half its peak, where dev scores can dip "
            "and recover; --min-epochs 4 trains on until it has decayed") in (
        capsys.readouterr().out)


@pytest.mark.parametrize("epochs, per_epoch, warmup_ratio, decayed",
                         [(10, 60, 0.1, 6), (20, 7, 0.1, 11), (3, 100, 0.1, 2), (4, 50, 0.0, 2),
                          (1, 5, 0.1, 1)])
def test_half_decayed_epoch_is_where_the_schedule_falls_to_half_its_peak(
        epochs, per_epoch, warmup_ratio, decayed):
    import torch

    from runtime.trainer import _optimizer, half_decayed_epoch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    config = TrainConfig(cache="", labels="", task="seq-cls", out="", lr=0.5,
                         warmup_ratio=warmup_ratio)
    optimizer, schedule = _optimizer(config, Model(), per_epoch * epochs)
    factors = []  # the rate the step after each epoch's last runs at, over the peak
    for _ in range(epochs):
        for _ in range(per_epoch):
            optimizer.step()
            schedule.step()
        factors.append(schedule.get_last_lr()[0] / 0.5)
    assert half_decayed_epoch(epochs, warmup_ratio) == decayed
    assert factors[decayed - 1] <= 0.5
    assert decayed == 1 or factors[decayed - 2] > 0.5


def test_two_processes_writing_a_builtin_task_at_once_both_succeed(tmp_path):
    import multiprocessing

    from runtime.datasets import write_task

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=write_task, args=("wnut16", str(tmp_path))) for _ in range(4)]
    for p in procs:
        p.start()
    # Each spawned process imports the package afresh. At nice 19 beside two trainings on 2
    # cores this test took 100-200 s, and failed once with a 120 s join; on a quiet machine it
    # takes under 10 s. The wait bounds a hang, not the speed.
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["corpus.jsonl", "labels.jsonl"]
    assert len((tmp_path / "labels.jsonl").read_text().splitlines()) == 2394
