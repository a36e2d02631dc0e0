"""The training loop: recycled (upper layers from the cache), full and frozen (token ids).

All three modes share one plan of batches (the same keys in the same order, planned from the
cache's token counts), one head initialisation, the seeds and the schedule: AdamW with linear
warm-up and decay (gradient clipping when asked), evaluation on the dev split after each epoch,
early stopping on the dev metric, a checkpoint after each epoch (`--resume` continues from it)
and the best weights kept.
What the run folder holds is runtime.run_folder's; the options are runtime.config's.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DDP (gloo on CPU, nccl on CUDA) and
each rank loads only its own share of the batches; rank 0 evaluates and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from runtime import distributed, run_folder
from runtime.adapters import InputAdapter
from runtime.batches import batch_source, model_inputs
from runtime.config import TrainConfig, batch_plan, labels_config, planned_epochs
from runtime.evaluation import evaluate
from runtime.head_init import check_head_init, fit_head
from runtime.inputs import open_cache
from runtime.labels import LabelledData, load_labelled
from runtime.loader import plan_cache_batches, shard_batches
from runtime.models import build_model
from runtime.prefetch import Prefetcher
from runtime.run_folder import RunConfig, TrainingState
from runtime.tasks import task_named

__all__ = ["TrainConfig", "train", "subset_train", "class_weights"]  # TrainConfig: runtime.config


def train(config: TrainConfig) -> dict:
    """Train as `config` says; returns the test metrics (also written to RUN/metrics.json)."""
    config = distributed.on_rank_device(config)
    rank, world = distributed.init(config)
    _seed_everything(config.seed)
    reader = open_cache(config.cache, model=config.model, layer=config.layer)
    data = subset_train(load_labelled(labels_config(config), reader), config)
    built = build_model(config, reader.manifest, data.label_names)
    check_head_init(config, built.head)
    run_config = RunConfig.of_training(config, reader.manifest, data.label_names,
                                       getattr(built.head, "pooling", "pooler"))
    if config.resume:
        run_folder.check_resumable(run_config)
    if rank == 0:  # only now: a run refused for its inputs leaves no folder behind
        run_folder.prepare_run_folder(config)
        run_config.save()
    source = batch_source(config, reader, data, built.model_path)
    weights = class_weights(config, data)
    loss_options = {} if weights is None else {"class_weights": weights.to(config.device)}
    per_epoch = len(shard_batches(_plan(config, reader, data.split("train"), 0), 0, world))
    epochs = planned_epochs(config, per_epoch)
    optimizer, schedule = _optimizer(config, built.model, per_epoch * epochs)
    state = TrainingState()
    if config.resume:
        state = run_folder.load_checkpoint(config, built.model, optimizer, schedule, rank)
    if config.head_init == "probe" and state.epoch == 0 and rank == 0:  # DDP copies rank 0's
        fitted = fit_head(config, built, source, reader, data, weights)
        print(f"head fitted on frozen features: {json.dumps(fitted)}", flush=True)
    net = distributed.wrap(built.model, world)
    t0 = time.perf_counter() - state.train_seconds
    # A resumed run that had already stopped early goes straight to its test evaluation.
    first = epochs if _stops_early(config, state) else state.epoch
    for epoch in range(first, epochs):
        batches = shard_batches(_plan(config, reader, data.split("train"), epoch), rank, world)
        _train_epoch(config, net, built, source, batches, optimizer, schedule, (epoch, epochs),
                     rank, loss_options)
        state.train_seconds = time.perf_counter() - t0
        stop = _end_of_epoch(config, built, source, reader, data, state, (epoch, epochs),
                             rank)
        run_folder.save_checkpoint(config, built.model, optimizer, schedule, state, rank, world)
        if distributed.agree(stop, world, config.device):
            break
    metrics = _finish(config, built, source, reader, data, state, rank, epochs)
    distributed.done(world)
    return metrics


def subset_train(data: LabelledData, config: TrainConfig) -> LabelledData:
    """At most `max_train_examples` train examples, drawn with the run's seed; dev/test kept."""
    train_split = data.split("train")
    if config.max_train_examples is None or len(train_split) <= config.max_train_examples:
        return data
    rng = np.random.default_rng(config.seed)
    keep = {e.key for e in rng.choice(np.array(train_split, dtype=object),
                                      config.max_train_examples, replace=False)}
    examples = [e for e in data.examples if e.split != "train" or e.key in keep]
    return dataclasses.replace(data, examples=examples)


def class_weights(config: TrainConfig, data: LabelledData) -> torch.Tensor | None:
    """Cross-entropy weights 1/sqrt(train frequency), scaled so an average label weighs 1.

    sqrt, not 1/frequency: on WNUT-16 `O` is about 90% of the labelled tokens, and full inverse
    weights would make every rare-entity guess cheap. None when weighting is off or not a
    classification task.
    """
    if config.class_weighting == "none" or not task_named(config.task).class_weighted:
        return None
    counts = np.zeros(len(data.label_names), dtype=np.float64)
    for e in data.split("train"):
        labels = np.asarray(e.target).reshape(-1)
        labels = labels[labels >= 0]  # token-cls: -100 marks tokens without a label
        np.add.at(counts, labels, 1)
    seen = counts > 0
    weights = np.zeros_like(counts)
    weights[seen] = counts[seen] ** -0.5
    weights *= counts.sum() / (counts * weights).sum()  # mean weight over train labels is 1
    weights[~seen] = 1.0
    return torch.tensor(weights, dtype=torch.float32)


def _plan(config: TrainConfig, reader, examples: list, epoch: int):
    return plan_cache_batches(reader, [e.key for e in examples], batch_plan(config),
                              shuffle=True, seed=config.seed, epoch=epoch)


def _rate_classes(config: TrainConfig, model) -> list:
    """[(peak lr, trained parameters)]: the encoder's adapters or layers, the head, and the
    input adapter when it has a rate of its own (in that order, so a checkpoint's optimizer
    state lines up with the groups of a resumed run)."""
    head = {id(p) for p in model.head.parameters()}
    own_rate = set() if config.input_adapter_lr is None else {
        id(p) for m in model.modules() if isinstance(m, InputAdapter) for p in m.parameters()}
    encoder, head_params, input_params = [], [], []
    for p in model.parameters():  # not trainable_parameters(): any module with a .head
        if not p.requires_grad:
            continue
        if id(p) in head:
            head_params.append(p)
        elif id(p) in own_rate:
            input_params.append(p)
        else:
            encoder.append(p)
    return [(config.learning_rate, encoder), (config.head_learning_rate, head_params),
            (config.input_adapter_lr, input_params)]


def _optimizer(config: TrainConfig, model, total_steps: int):
    groups = []
    for lr, params in _rate_classes(config, model):
        # no weight decay on biases and LayerNorms
        groups += [{"params": [p for p in params if p.ndim >= 2], "lr": lr,
                    "weight_decay": config.weight_decay},
                   {"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate)
    total = max(1, total_steps)
    warmup = int(total * config.warmup_ratio)

    def factor(step: int) -> float:  # linear warm-up to the peak, then linear decay to 0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_epoch(config, net, built, source, batches, optimizer, schedule, epochs: tuple,
                 rank, loss_options: dict):
    epoch, total_epochs = epochs
    net.train()
    log = _step_log(config, rank)
    bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{total_epochs}",
               disable=rank != 0, leave=False)
    clipped = (None if config.max_grad_norm is None else
               [p for g in optimizer.param_groups for p in g["params"]])
    with Prefetcher(batches, source, depth=config.prefetch_depth, device=config.device) as pf:
        for step, batch in enumerate(pf):
            t0 = time.perf_counter()
            logits = net(*model_inputs(batch))
            loss = built.head.loss(logits, batch["labels"], **loss_options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clipped is not None:  # after DDP's all-reduce: every rank clips alike
                torch.nn.utils.clip_grad_norm_(clipped, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            compute = time.perf_counter() - t0
            if log is not None:
                log.write(json.dumps({"epoch": epoch, "step": step, "loss": round(loss.item(), 5),
                                      "wait_s": round(pf.wait_seconds[-1], 6),
                                      "compute_s": round(compute, 6),
                                      "keys": batch["keys"]}) + "\n")
            bar.set_postfix(loss=f"{loss.item():.3f}", wait=f"{pf.wait_seconds[-1]:.3f}s")
            bar.update()
    bar.close()
    if log is not None:
        log.close()


def _step_log(config: TrainConfig, rank: int):
    return open(os.path.join(config.out, "steps.jsonl"), "a", buffering=1) if rank == 0 else None


def _end_of_epoch(config, built, source, reader, data, state: TrainingState, at: tuple,
                  rank) -> bool:
    """Evaluate on dev (rank 0), keep the best weights; True when early stopping says stop."""
    epoch, epochs = at
    state.epoch = epoch + 1
    if rank != 0:
        return False
    dev = data.split("dev") or data.split("train")  # tiny data sets may have no dev split
    scores = evaluate(config, built, source, reader, data, dev)
    score = scores[task_named(config.task).primary_metric]
    print(f"epoch {epoch + 1}: dev {json.dumps(_rounded(scores))}", flush=True)
    if score > state.best:
        state.best, state.bad_epochs = score, 0
        torch.save(run_folder.trainable_state(built.model), os.path.join(config.out, "weights.pt"))
    else:
        state.bad_epochs += 1
    if _stops_early(config, state):
        print(f"epoch {epoch + 1}: stopping early, no dev gain for {state.bad_epochs} epochs "
              f"(patience {config.patience}); best dev {state.best:.4f}", flush=True)
        decayed = half_decayed_epoch(epochs, config.warmup_ratio)
        if state.epoch < decayed:
            # Measured (docs/FIDELITY.md and RECIPE, bottleneck whole-schedule reruns): at
            # raised rates dev F1 dips for epochs after the warm-up and recovers as the rate
            # decays; stopping in the dip cost 5.7-8.8 points on four MiniLM runs and 17.9 on
            # one MPNet run.
            print(f"epoch {epoch + 1}: the learning rate is still above half its peak, where "
                  f"dev scores can dip and recover; --min-epochs {decayed} trains on until it "
                  "has decayed", flush=True)
        return True
    if state.bad_epochs >= config.patience:
        print(f"epoch {epoch + 1}: no dev gain for {state.bad_epochs} epochs, going on to "
              f"min_epochs={config.min_epochs}", flush=True)
    return False


def _stops_early(config: TrainConfig, state: TrainingState) -> bool:
    """Early stopping's verdict on the epochs run so far: `patience` epochs without a dev gain,
    and at least `min_epochs` run."""
    return state.bad_epochs >= config.patience and state.epoch >= config.min_epochs


def half_decayed_epoch(epochs: int, warmup_ratio: float) -> int:
    """The first epoch that ends with the learning rate at or below half its peak, under the
    linear warm-up and decay of `_optimizer`: step (total + warm-up) / 2, in epochs."""
    return max(1, math.ceil(epochs * (1 + warmup_ratio) / 2))


def _finish(config, built, source, reader, data, state: TrainingState, rank,
            epochs: int) -> dict:
    if rank != 0:
        return {}
    weights = torch.load(os.path.join(config.out, "weights.pt"), weights_only=True)
    built.model.load_state_dict(weights, strict=False)
    test = data.split("test") or data.split("dev") or data.split("train")
    metrics = evaluate(config, built, source, reader, data, test)
    metrics["dev_best"] = state.best  # the dev score that chose these weights
    metrics["train_seconds"] = round(state.train_seconds, 3)
    metrics["epochs_run"] = state.epoch
    metrics["epochs_planned"] = epochs
    run_folder.write_json(os.path.join(config.out, "metrics.json"), metrics)
    return metrics


def _rounded(scores: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


