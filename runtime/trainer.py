"""The training loop: recycled (upper layers from the cache), full and frozen (from raw text).

All three modes share one plan of batches (the same keys in the same order, planned from the
cache's token counts), one head initialisation, the seeds and the schedule: AdamW with linear
warm-up and decay, evaluation on the dev split after each epoch, early stopping on the dev
metric, a checkpoint after each epoch (`--resume` continues from it) and the best weights kept.

A run folder holds:
    config.json      the TrainConfig plus the label names and the cache fingerprint
    weights.pt       the trainable parameters (adapters, head, fine-tuned layers) of the best epoch
    checkpoint.pt    the latest epoch's weights, optimizer, schedule and RNG states (for resume)
    steps.jsonl      one line per step: loss, cache wait seconds, compute seconds
    metrics.json     test-split metrics of the best epoch plus train_seconds

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DDP (gloo on CPU, nccl on CUDA) and
each rank loads only its own share of the batches; rank 0 evaluates and writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from runtime import inference
from runtime.errors import RuntimeConfigError
from runtime.labels import LabelledData, LabelsConfig, load_labelled
from runtime.loader import BatchPlan, plan_cache_batches, shard_batches
from runtime.prefetch import Prefetcher

MODES = ("recycled", "full", "frozen")
ADAPTERS = ("lora", "bottleneck", "finetune", "none")
LORA_TARGETS = ("attention", "all")
# The default recipe's numbers, chosen by the runs in docs/RECIPE.md.
HEAD_LR_FACTOR = 10.0  # head learning rate / encoder learning rate
MIN_STEPS = 600  # epochs=None trains at least this many steps ...
MIN_AUTO_EPOCHS, MAX_AUTO_EPOCHS = 3, 20  # ... in this many epochs
CLASS_WEIGHTINGS = ("none", "sqrt")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved as RUN/config.json."""

    cache: str  # cache folder (cache_format.open); its manifest names model, layer, corpus
    labels: str  # labels file (.jsonl / .csv), see runtime.labels
    task: str  # seq-cls | token-cls | qa
    out: str  # run folder
    mode: str = "recycled"  # recycled | full | frozen
    epochs: int | None = None  # None: enough for MIN_STEPS optimizer steps (planned_epochs)
    seed: int = 0  # seeds torch, numpy, python, the batch shuffle and the split (if drawn)
    lr: float | None = None  # None: 1e-3 for adapters, 1e-4 for fine-tuning
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1  # share of all steps spent warming the learning rate up
    patience: int = 3  # epochs without dev improvement before stopping early
    adapter: str = "lora"  # lora | bottleneck | finetune | none (head only)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: str = "all"  # all: every linear of a layer; attention: query and value only
    bottleneck_size: int = 64
    pooling: str = "auto"  # seq-cls: auto | pooler | cls | mean (runtime.heads.resolve_pooling)
    head_lr: float | None = None  # None: the encoder's learning rate (see head_learning_rate)
    class_weighting: str = "sqrt"  # sqrt: cross-entropy weights 1/sqrt(class frequency) | none
    min_epochs: int = 1  # early stopping never stops before this many epochs
    max_train_examples: int | None = None  # a seeded subset of the train split (small-data runs)
    token_budget: int = 4096  # padded tokens per batch
    max_batch_size: int = 32
    shuffle_window: int = 32  # consecutive keys read together (see runtime.loader)
    windows_per_block: int = 16  # windows mixed per block of batches (see runtime.loader)
    prefetch_depth: int = 4  # batches loaded ahead
    id_field: str = "id"
    label_field: str = "label"
    words_field: str = "words"
    corpus: str | None = None  # full/frozen: raw text (default: the manifest's corpus)
    model: str | None = None  # expected model (default: the manifest's); refused if it differs
    layer: int | None = None  # expected K (default: the manifest's); refused if it differs
    allow_unlabelled: bool = False
    resume: bool = False
    overwrite: bool = False  # replace a finished run of the same task in `out`
    device: str = "cpu"

    def __post_init__(self):
        if self.mode not in MODES:
            raise RuntimeConfigError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.adapter not in ADAPTERS:
            raise RuntimeConfigError(f"adapter {self.adapter!r} is not one of {', '.join(ADAPTERS)}")
        if self.epochs is not None and self.epochs < 1:
            raise RuntimeConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.lora_targets not in LORA_TARGETS:
            raise RuntimeConfigError(f"lora_targets {self.lora_targets!r} is not one of "
                                     f"{', '.join(LORA_TARGETS)}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise RuntimeConfigError(f"class_weighting {self.class_weighting!r} is not one of "
                                     f"{', '.join(CLASS_WEIGHTINGS)}")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise RuntimeConfigError(f"max_train_examples must be >= 1, got {self.max_train_examples}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-4 if self.adapter == "finetune" else 1e-3

    @property
    def head_learning_rate(self) -> float:
        """The head starts from random weights: by default it learns 10x faster than the encoder
        (measured on WNUT-16: see docs/RECIPE.md)."""
        return HEAD_LR_FACTOR * self.learning_rate if self.head_lr is None else self.head_lr


def planned_epochs(config: TrainConfig, per_epoch: int) -> int:
    """`config.epochs`, or enough epochs for MIN_STEPS optimizer steps, within [3, 20].

    A fixed epoch count starves small data sets: 200 examples are 7 steps an epoch, and 3 epochs
    leave a random head barely trained. Early stopping on dev ends long runs that stop paying.
    """
    if config.epochs is not None:
        return config.epochs
    return int(min(MAX_AUTO_EPOCHS, max(MIN_AUTO_EPOCHS, -(-MIN_STEPS // max(1, per_epoch)))))


def train(config: TrainConfig) -> dict:
    """Train as `config` says; returns the test metrics (also written to RUN/metrics.json)."""
    rank, world = _distributed_init(config)
    _seed_everything(config.seed)
    reader = inference.open_cache(config.cache, model=config.model, layer=config.layer)
    if rank == 0:
        _prepare_run_folder(config)
    data = subset_train(load_labelled(_labels_config(config), reader), config)
    built = inference.build_model(config, reader.manifest, data.label_names)
    source = inference.batch_source(config, reader, built, data)
    if rank == 0:
        write_run_config(config, inference.run_metadata(reader.manifest, data, built))
    weights = class_weights(config, data)
    loss_options = {} if weights is None else {"class_weights": weights.to(config.device)}
    state = _State()
    per_epoch = len(shard_batches(_plan(config, reader, data.split("train"), 0), 0, world))
    epochs = planned_epochs(config, per_epoch)
    optimizer, schedule = _optimizer(config, built.model, per_epoch * epochs)
    if config.resume:
        state = _load_checkpoint(config, built.model, optimizer, schedule)
    net = _wrap_ddp(built.model, world)
    t0 = time.perf_counter() - state.train_seconds
    for epoch in range(state.epoch, epochs):
        batches = shard_batches(_plan(config, reader, data.split("train"), epoch), rank, world)
        _train_epoch(config, net, built, source, batches, optimizer, schedule, (epoch, epochs),
                     rank, loss_options)
        state.train_seconds = time.perf_counter() - t0
        stop = _end_of_epoch(config, built, source, reader, data, state, epoch, rank)
        _save_checkpoint(config, built.model, optimizer, schedule, state, rank)
        if _agree(stop, world):
            break
    metrics = _finish(config, built, source, reader, data, state, rank, epochs)
    _distributed_done(world)
    return metrics


@dataclasses.dataclass
class _State:
    epoch: int = 0  # next epoch to run
    best: float = -1.0  # best dev score so far
    bad_epochs: int = 0  # epochs since the dev score last improved
    train_seconds: float = 0.0


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
    if config.class_weighting == "none" or config.task not in ("seq-cls", "token-cls"):
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


def _labels_config(config: TrainConfig) -> LabelsConfig:
    return LabelsConfig(path=config.labels, task=config.task, id_field=config.id_field,
                        label_field=config.label_field, words_field=config.words_field,
                        seed=config.seed, allow_unlabelled=config.allow_unlabelled)


def _plan(config: TrainConfig, reader, examples: list, epoch: int, shuffle: bool = True):
    return plan_cache_batches(reader, [e.key for e in examples], batch_plan(config),
                              shuffle=shuffle, seed=config.seed, epoch=epoch)


def batch_plan(config: TrainConfig) -> BatchPlan:
    return BatchPlan(config.token_budget, config.max_batch_size, config.shuffle_window,
                     config.windows_per_block)


def _optimizer(config: TrainConfig, model, total_steps: int):
    head = {id(p) for p in model.head.parameters()}
    groups = []
    for in_head, lr in ((False, config.learning_rate), (True, config.head_learning_rate)):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head) == in_head]
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
    with Prefetcher(batches, source, depth=config.prefetch_depth, device=config.device) as pf:
        for step, batch in enumerate(pf):
            t0 = time.perf_counter()
            logits = net(batch["inputs"], batch["attention_mask"])
            loss = built.head.loss(logits, batch["labels"], **loss_options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
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


def _end_of_epoch(config, built, source, reader, data, state: _State, epoch, rank) -> bool:
    """Evaluate on dev (rank 0), keep the best weights; True when early stopping says stop."""
    state.epoch = epoch + 1
    if rank != 0:
        return False
    dev = data.split("dev") or data.split("train")  # tiny data sets may have no dev split
    scores = inference.evaluate(config, built, source, reader, data, dev)
    score = scores[inference.PRIMARY[config.task]]
    print(f"epoch {epoch + 1}: dev {json.dumps(_rounded(scores))}", flush=True)
    if score > state.best:
        state.best, state.bad_epochs = score, 0
        torch.save(_trainable_state(built.model), os.path.join(config.out, "weights.pt"))
    else:
        state.bad_epochs += 1
    if state.bad_epochs >= config.patience and state.epoch < config.min_epochs:
        print(f"epoch {epoch + 1}: no dev gain for {state.bad_epochs} epochs, going on to "
              f"min_epochs={config.min_epochs}", flush=True)
        return False
    if state.bad_epochs >= config.patience:
        print(f"epoch {epoch + 1}: stopping early, no dev gain for {state.bad_epochs} epochs "
              f"(patience {config.patience}); best dev {state.best:.4f}", flush=True)
        return True
    return False


def _finish(config, built, source, reader, data, state: _State, rank, epochs: int) -> dict:
    if rank != 0:
        return {}
    weights = torch.load(os.path.join(config.out, "weights.pt"), weights_only=True)
    built.model.load_state_dict(weights, strict=False)
    test = data.split("test") or data.split("dev") or data.split("train")
    metrics = inference.evaluate(config, built, source, reader, data, test)
    metrics["dev_best"] = state.best  # the dev score that chose these weights
    metrics["train_seconds"] = round(state.train_seconds, 3)
    metrics["epochs_run"] = state.epoch
    metrics["epochs_planned"] = epochs
    _write_json(os.path.join(config.out, "metrics.json"), metrics)
    return metrics


def _trainable_state(model) -> dict:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {n: t.detach().cpu().clone() for n, t in model.state_dict().items() if n in names}


def _save_checkpoint(config, model, optimizer, schedule, state: _State, rank: int) -> None:
    if rank != 0:
        return
    path = os.path.join(config.out, "checkpoint.pt")
    torch.save({"weights": _trainable_state(model), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "state": dataclasses.asdict(state),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate()}}, path + ".tmp")
    os.replace(path + ".tmp", path)  # a crash mid-save keeps the previous checkpoint


def _load_checkpoint(config, model, optimizer, schedule) -> _State:
    path = os.path.join(config.out, "checkpoint.pt")
    if not os.path.isfile(path):
        raise RuntimeConfigError(f"--resume given but {path!r} does not exist; "
                                 "drop --resume to start a new run")
    ckpt = torch.load(path, weights_only=False)
    model.load_state_dict(ckpt["weights"], strict=False)
    optimizer.load_state_dict(ckpt["optimizer"])
    schedule.load_state_dict(ckpt["schedule"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    np.random.set_state(ckpt["rng"]["numpy"])
    random.setstate(ckpt["rng"]["python"])
    return _State(**ckpt["state"])


def _prepare_run_folder(config: TrainConfig) -> None:
    """Refuse a folder holding another task's run, or a finished run, unless told otherwise."""
    path = os.path.join(config.out, "config.json")
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("task") != config.task:
            raise RuntimeConfigError(
                f"run folder {config.out!r} holds a {old.get('task')!r} run, not {config.task!r}; "
                "pick another --out")
        done = os.path.isfile(os.path.join(config.out, "metrics.json"))
        if done and not (config.resume or config.overwrite):
            raise RuntimeConfigError(f"run folder {config.out!r} already holds a finished run; "
                                     "pick another --out, or pass --overwrite to replace it")
    os.makedirs(config.out, exist_ok=True)
    if not config.resume:
        for name in ("steps.jsonl", "metrics.json"):
            if os.path.exists(os.path.join(config.out, name)):
                os.remove(os.path.join(config.out, name))


def write_run_config(config: TrainConfig, extra: dict) -> None:
    """RUN/config.json: the TrainConfig plus what predict needs to rebuild the model."""
    _write_json(os.path.join(config.out, "config.json"), {**dataclasses.asdict(config), **extra})


def _write_json(path: str, obj: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def _rounded(scores: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed_init(config: TrainConfig):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def _wrap_ddp(model, world: int):
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, find_unused_parameters=False)


def _agree(stop: bool, world: int) -> bool:
    """Rank 0's early-stopping decision, shared so every rank leaves the loop together."""
    if world <= 1:
        return stop
    import torch.distributed as dist

    flag = torch.tensor([1 if stop else 0])
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _distributed_done(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
