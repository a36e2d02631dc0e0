"""A run's configuration: TrainConfig, its checks, and the default recipe's numbers.

Every option of `python -m runtime.train` is a TrainConfig field; the choices and defaults are
declared here once (the CLI builds its argparse choices from them). The recipe's numbers were
chosen by the runs in docs/RECIPE.md.
"""

from __future__ import annotations

import dataclasses

import torch

from runtime.options import (ADAPTER_KINDS as ADAPTERS, ADAPTER_LR, CLASS_WEIGHTINGS, FINETUNE_LR,
                             HEAD_INITS, HEAD_LR_FACTOR, INPUT_ADAPTER_KINDS, LORA_TARGETS,
                             MAX_AUTO_EPOCHS, MIN_AUTO_EPOCHS, MIN_STEPS, MODES,
                             TRAIN_DEFAULTS as D)
from runtime.errors import RuntimeConfigError
from runtime.labels import LabelsConfig
from runtime.loader import (MAX_BATCH_SIZE, SHUFFLE_WINDOW, TOKEN_BUDGET, WINDOWS_PER_BLOCK,
                            BatchPlan)
from runtime.tasks import task_named



@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; saved as RUN/config.json."""

    cache: str  # cache folder (cache_format.open); its manifest names model, layer, corpus
    labels: str  # labels file (.jsonl / .csv), see runtime.labels
    task: str  # seq-cls | token-cls | qa (runtime.tasks)
    out: str  # run folder
    mode: str = D["mode"]  # recycled | full | frozen
    epochs: int | None = None  # None: enough for MIN_STEPS optimizer steps (planned_epochs)
    seed: int = D["seed"]  # seeds torch, numpy, python, the batch shuffle and the split (if drawn)
    lr: float | None = None  # None: ADAPTER_LR for adapters, FINETUNE_LR for fine-tuning
    weight_decay: float = D["weight_decay"]
    warmup_ratio: float = D["warmup_ratio"]  # share of all steps spent warming up
    patience: int = D["patience"]  # epochs without dev improvement before stopping early
    adapter: str = D["adapter"]  # lora | bottleneck | finetune | none (head only)
    lora_r: int = D["lora_r"]
    lora_alpha: int = D["lora_alpha"]
    lora_targets: str = D["lora_targets"]  # all: every linear of a layer; attention: q and v
    bottleneck_size: int = D["bottleneck_size"]
    input_adapter: bool = D["input_adapter"]  # lora/bottleneck: adapt the states entering layer K
    input_adapter_size: int | None = D["input_adapter_size"]  # None: bottleneck_size
    input_adapter_lr: float | None = None  # the input adapter's peak rate; None: learning_rate
    pooling: str = D["pooling"]  # seq-cls: auto | pooler | cls | mean (runtime.pooling)
    head_lr: float | None = None  # None: HEAD_LR_FACTOR x the encoder's (head_learning_rate)
    class_weighting: str = D["class_weighting"]  # sqrt: weights 1/sqrt(class frequency) | none
    min_epochs: int = D["min_epochs"]  # early stopping never stops before this many epochs
    head_init: str = D["head_init"]  # random | probe: fitted on frozen features (runtime.head_init)
    max_grad_norm: float | None = None  # clip the gradients' global norm; None: no clipping
    max_train_examples: int | None = None  # a seeded subset of the train split (small-data runs)
    token_budget: int = TOKEN_BUDGET  # padded tokens per batch
    max_batch_size: int = MAX_BATCH_SIZE
    shuffle_window: int = SHUFFLE_WINDOW  # consecutive keys read together (see runtime.loader)
    windows_per_block: int = WINDOWS_PER_BLOCK  # windows mixed per block (see runtime.loader)
    prefetch_depth: int = 4  # batches loaded ahead
    id_field: str = D["id_field"]
    label_field: str = D["label_field"]
    words_field: str = D["words_field"]
    corpus: str | None = None  # qa: the raw text answers are cut from (default: the manifest's)
    model: str | None = None  # expected model (default: the manifest's); refused if it differs
    layer: int | None = None  # expected K (default: the manifest's); refused if it differs
    allow_unlabelled: bool = False
    resume: bool = False
    overwrite: bool = False  # replace a finished run of the same task in `out`
    device: str = D["device"]

    def __post_init__(self):
        task_named(self.task)  # refuses an unknown task with the known ones
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
        if self.head_init not in HEAD_INITS:
            raise RuntimeConfigError(f"head_init {self.head_init!r} is not one of "
                                     f"{', '.join(HEAD_INITS)}")
        if self.input_adapter and self.adapter not in INPUT_ADAPTER_KINDS:
            raise RuntimeConfigError(f"input_adapter goes with adapter lora or bottleneck, not "
                                     f"{self.adapter!r}")
        if self.input_adapter_size is not None and not self.input_adapter:
            raise RuntimeConfigError("input_adapter_size is the input adapter's width; it needs "
                                     "input_adapter (--input-adapter)")
        if self.input_adapter_lr is not None and not self.input_adapter:
            raise RuntimeConfigError("input_adapter_lr is the input adapter's learning rate; it "
                                     "needs input_adapter (--input-adapter)")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise RuntimeConfigError(f"max_train_examples must be >= 1, got {self.max_train_examples}")
        _check_ranges(self)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return FINETUNE_LR if self.adapter == "finetune" else ADAPTER_LR

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


# field: (lowest, highest, why) for the numeric options; None = unbounded on that side.
_RANGES = {
    "seed": (0, 2**32 - 1, "numpy and torch seeds are unsigned 32-bit"),
    "weight_decay": (0.0, None, "a negative decay grows the weights"),
    "warmup_ratio": (0.0, 1.0, "it is the share of all steps spent warming up"),
    "patience": (1, None, "patience 0 would stop after the first epoch whatever the dev score; "
                          "pass --epochs 1 for one epoch"),
    "min_epochs": (1, None, "epochs before early stopping may stop"),
    "lora_r": (1, None, "the rank of the LoRA update"),
    "lora_alpha": (1, None, "LoRA's scale is alpha / r"),
    "bottleneck_size": (1, None, "the width of the adapter's bottleneck"),
    "input_adapter_size": (1, None, "the width of the input adapter's bottleneck"),
    "token_budget": (1, None, "padded tokens per batch; at least the longest record's length"),
    "max_batch_size": (1, None, "examples per batch"),
    "shuffle_window": (1, None, "keys read together"),
    "windows_per_block": (1, None, "windows mixed per block"),
    "prefetch_depth": (1, None, "batches loaded ahead"),
}


def _check_ranges(config) -> None:
    """Range-check the numeric options, and the learning rate and device, with the fix."""
    for name, (low, high, why) in _RANGES.items():
        value = getattr(config, name)
        if value is None:  # "choose for me" where a field allows it
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise RuntimeConfigError(f"{name} must be {bounds} ({why}), got {value}")
    for name in ("lr", "head_lr", "input_adapter_lr"):
        value = getattr(config, name)
        if value is not None and not 0 < value < 1:
            raise RuntimeConfigError(f"{name} must be > 0 and < 1 (a peak learning rate), got "
                                     f"{value}")
    if config.max_grad_norm is not None and not config.max_grad_norm > 0:
        raise RuntimeConfigError(f"max_grad_norm must be > 0 (the largest gradient norm a "
                                 f"step takes; leave it out for no clipping), got "
                                 f"{config.max_grad_norm}")
    _check_device(config.device)


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise RuntimeConfigError(f"device {device!r} is not a torch device; pass cpu, cuda or "
                                 "cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise RuntimeConfigError(f"device {device!r} is not available here ({count} CUDA "
                                     "device(s) visible); pass --device cpu")
    elif parsed.type != "cpu":
        raise RuntimeConfigError(f"device {device!r} is not supported; pass cpu or cuda[:N]")


def labels_config(config: TrainConfig) -> LabelsConfig:
    """How the run reads its labels file."""
    return LabelsConfig(path=config.labels, task=config.task, id_field=config.id_field,
                        label_field=config.label_field, words_field=config.words_field,
                        seed=config.seed, allow_unlabelled=config.allow_unlabelled)


def batch_plan(config: TrainConfig) -> BatchPlan:
    """The run's batch plan: training shuffles it per epoch, evaluation reads it in order."""
    return BatchPlan(config.token_budget, config.max_batch_size, config.shuffle_window,
                     config.windows_per_block)
