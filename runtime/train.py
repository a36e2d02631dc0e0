"""`python -m runtime.train`: train adapters and a head from a layer-K cache (or from raw text).

    python -m runtime.train                      # the default job: MiniLM, K=3, int8 BBC News
    python -m runtime.train --builtin wnut16     # the built-in NER job
    python -m runtime.train --cache DIR --labels FILE --task seq-cls --out RUN [--mode full]

Under torchrun (`torchrun --nproc_per_node 2 -m runtime.train ...`) it trains with DDP.
Bad input: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from cache_format.cli_errors import DefaultsHelpFormatter, OneLineParser, run_cli
from export.build import DTYPES, BuildConfig
from runtime.errors import RuntimeConfigError
from runtime.loader import MAX_BATCH_SIZE, TOKEN_BUDGET
from runtime.options import (ADAPTER_KINDS, ADAPTER_LR, BUILTIN_TASK_NAMES, CLASS_WEIGHTINGS,
                             FINETUNE_LR, HEAD_INITS, HEAD_LR_FACTOR, LORA_TARGETS, MAX_AUTO_EPOCHS,
                             MIN_AUTO_EPOCHS, MIN_STEPS, MODES, POOLINGS, TASK_NAMES,
                             TRAIN_DEFAULTS as D)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m runtime.train", description=__doc__.split("\n")[0],
                      formatter_class=DefaultsHelpFormatter)
    _data_options(p.add_argument_group(
        "data (no --cache: a built-in task, its cache built if missing)"))
    _model_options(p.add_argument_group("model"))
    _training_options(p.add_argument_group("training"))
    return p


def _data_options(data) -> None:
    data.add_argument("--cache", help="cache folder built by `python -m export.lower`")
    data.add_argument("--labels", help="labels file (.jsonl or .csv) joined on the example key")
    data.add_argument("--task", choices=TASK_NAMES, help="task of the labels")
    data.add_argument("--builtin", choices=BUILTIN_TASK_NAMES,
                      help=f"built-in task used when --cache is not given (default "
                           f"{BUILTIN_TASK_NAMES[0]})")
    data.add_argument("--dtype", choices=DTYPES,
                      help=f"built-in task: dtype of the cache to build or reuse (default "
                           f"{BuildConfig.dtype})")
    data.add_argument("--id-field", default=D["id_field"],
                      help="labels column holding the cache key")
    data.add_argument("--label-field", default=D["label_field"],
                      help="labels column holding the label")
    data.add_argument("--words-field", default=D["words_field"],
                      help="token-cls: column with the words")
    data.add_argument("--corpus", help="qa: the raw text answers are cut from (default: the "
                                       "manifest's); full/frozen read the cache's token ids")
    data.add_argument("--allow-unlabelled", action="store_true",
                      help="skip cache keys that have no label instead of refusing")


# Numeric options: (flag, type, default, help); the defaults' one home is runtime.options
# (TRAIN_DEFAULTS) or, for the batch plan, runtime.loader.
_MODEL_NUMBERS = (
    ("--lora-r", int, D["lora_r"], "LoRA rank"),
    ("--lora-alpha", int, D["lora_alpha"], "LoRA scale: the update is scaled by alpha / r"),
    ("--bottleneck-size", int, D["bottleneck_size"], "width of the bottleneck adapters"),
)
_TRAINING_NUMBERS = (
    ("--seed", int, D["seed"], "seeds weights, batch order and a drawn split"),
    ("--min-epochs", int, D["min_epochs"], "early stopping never stops before this epoch"),
    ("--weight-decay", float, D["weight_decay"], "AdamW decay"),
    ("--warmup-ratio", float, D["warmup_ratio"], "share of all steps spent warming the lr up"),
    ("--patience", int, D["patience"], "early stopping, in epochs"),
    ("--token-budget", int, TOKEN_BUDGET, "padded tokens per batch"),
    ("--max-batch-size", int, MAX_BATCH_SIZE, "records per batch at most"),
)


def _add_numbers(group, specs) -> None:
    for flag, kind, default, text in specs:
        group.add_argument(flag, type=kind, default=default, help=text)


def _model_options(model) -> None:
    model.add_argument("--mode", choices=MODES, default=D["mode"],
                       help="recycled: the layers above K on the cache; full: the whole encoder on "
                            "the cache's token ids; frozen: full with embeddings and layers below "
                            "K frozen")
    model.add_argument("--model", help="expected checkpoint (refused if the cache's differs)")
    model.add_argument("--layer", type=int, help="expected K (refused if the cache's differs)")
    model.add_argument("--adapter", choices=ADAPTER_KINDS, default=D["adapter"],
                       help="what trains in the encoder layers (none: the head only)")
    model.add_argument("--lora-targets", choices=LORA_TARGETS, default=D["lora_targets"],
                       help="LoRA on query+value (attention) or on every linear of a layer (all)")
    model.add_argument("--input-adapter", action="store_true",
                       help="lora or bottleneck: also a bottleneck adapter (--bottleneck-size "
                            "wide) on the states entering the lowest trained layer (recycled: "
                            "the cached layer-K states)")
    model.add_argument("--input-adapter-size", type=int, default=D["input_adapter_size"],
                       help="the input adapter's width (default: --bottleneck-size)")
    model.add_argument("--pooling", choices=("auto",) + POOLINGS, default=D["pooling"],
                       help="seq-cls pooling; auto follows a sentence-transformers checkpoint's "
                            "1_Pooling config, else the architecture's pooler head")
    _add_numbers(model, _MODEL_NUMBERS)


def _training_options(opt) -> None:
    opt.add_argument("--out", help="run folder (default: runs/<task>-<mode>)")
    opt.add_argument("--epochs", type=int, default=None,
                     help=f"default: enough epochs for {MIN_STEPS} optimizer steps, "
                          f"{MIN_AUTO_EPOCHS} to {MAX_AUTO_EPOCHS} (the built-in BBC job: 3); "
                          "early stopping on dev ends them sooner")
    opt.add_argument("--lr", type=float, help=f"peak learning rate (default {ADAPTER_LR:g} "
                                              f"adapters, {FINETUNE_LR:g} finetune)")
    opt.add_argument("--head-lr", type=float, help="learning rate of the task head (default: "
                                                    f"{HEAD_LR_FACTOR:g}x --lr, the recipe's)")
    opt.add_argument("--input-adapter-lr", type=float,
                     help="learning rate of the input adapter (default: --lr's)")
    opt.add_argument("--max-grad-norm", type=float,
                     help="clip the gradients' global norm to this before each step (default: no "
                          "clipping, as the recipe's runs were measured)")
    opt.add_argument("--head-init", choices=HEAD_INITS, default=D["head_init"],
                     help="probe: fit the head as a logistic regression on the untrained model's "
                          "features before training (linear probing, then fine-tuning)")
    opt.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS, default=D["class_weighting"],
                     help="cross-entropy weights 1/sqrt(class frequency), or none")
    opt.add_argument("--max-train-examples", type=int,
                     help="train on a seeded subset of this many train examples")
    _add_numbers(opt, _TRAINING_NUMBERS)
    opt.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    opt.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    opt.add_argument("--device", default=D["device"], help="cpu, cuda, cuda:1, ...")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return run_cli(lambda: _run(args), user_errors=user_errors())


def user_errors() -> tuple:
    """Our packages' exception families (with cache_format's, which run_cli adds) are user
    mistakes: one line, exit 2; any other ValueError is a bug and keeps its traceback."""
    from export.errors import ExportError

    return (RuntimeConfigError, ExportError)


def _run(args) -> int:
    from runtime.datasets import get_task, prepare_builtin
    from runtime.trainer import train

    _refuse_unread_options(args)
    cache, labels, task, overwrite = args.cache, args.labels, args.task, args.overwrite
    epochs = args.epochs
    builtin_name = args.builtin or BUILTIN_TASK_NAMES[0]
    if cache is None:
        if labels is not None:
            raise RuntimeConfigError("--labels needs --cache (the cache those keys are in); "
                                     "pass both, or neither for a built-in task")
        # the options are checked before the built-in cache is built (minutes, the first time)
        _train_config(args, cache="", labels="", task=get_task(builtin_name).task,
                      epochs=epochs, out="", overwrite=overwrite)
        builtin = prepare_builtin(builtin_name, dtype=args.dtype or BuildConfig.dtype,
                                  model=args.model)
        cache, labels, task = builtin.cache, builtin.labels, builtin.task
        epochs = builtin.epochs if args.epochs is None else args.epochs  # 0 is refused, not 3
        # the built-in job is re-runnable: it owns its default run folder
        overwrite = overwrite or args.out is None
    elif labels is None or task is None:
        raise RuntimeConfigError("--cache needs --labels FILE and --task seq-cls|token-cls|qa")
    out = args.out or f"runs/{builtin_name if args.cache is None else task}-{args.mode}"
    config = _train_config(args, cache=cache, labels=labels, task=task, epochs=epochs, out=out,
                           overwrite=overwrite)
    metrics = train(config)
    if metrics:  # rank 0 only
        print(json.dumps({"run": out, **metrics}, indent=2, sort_keys=True))
    return 0


# Options one adapter kind reads (the bottleneck width also sizes an input adapter): beside
# another kind TrainConfig keeps them and nothing reads them, and a user who typed --lora-r 16
# with --adapter bottleneck would take the run for a rank-16 one.
_ADAPTER_OPTIONS = {"lora": ("lora_r", "lora_alpha", "lora_targets"),
                    "bottleneck": ("bottleneck_size",)}


def _refuse_unread_options(args) -> None:
    given = parser().given
    for kind, dests in _ADAPTER_OPTIONS.items():
        if args.adapter == kind or (kind == "bottleneck" and args.input_adapter):
            continue
        typed = given(args, dests)
        if typed:
            raise RuntimeConfigError(f"{typed[0]} shapes --adapter {kind} adapters; this run "
                                     f"trains --adapter {args.adapter}")
    typed = given(args, ("builtin", "dtype")) if args.cache is not None else []
    if typed:
        raise RuntimeConfigError(f"{typed[0]} picks a built-in task's cache; --cache names the "
                                 "cache already")


def _train_config(args, *, cache, labels, task, epochs, out, overwrite):
    from runtime.trainer import TrainConfig

    return TrainConfig(
        cache=cache, labels=labels, task=task, out=out, mode=args.mode, epochs=epochs,
        seed=args.seed, lr=args.lr, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, patience=args.patience, adapter=args.adapter,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_targets=args.lora_targets,
        bottleneck_size=args.bottleneck_size, input_adapter=args.input_adapter,
        input_adapter_size=args.input_adapter_size, input_adapter_lr=args.input_adapter_lr,
        pooling=args.pooling, head_lr=args.head_lr, max_grad_norm=args.max_grad_norm,
        class_weighting=args.class_weighting, min_epochs=args.min_epochs,
        head_init=args.head_init,
        max_train_examples=args.max_train_examples,
        token_budget=args.token_budget, max_batch_size=args.max_batch_size,
        id_field=args.id_field, label_field=args.label_field, words_field=args.words_field,
        corpus=args.corpus, model=args.model, layer=args.layer,
        allow_unlabelled=args.allow_unlabelled, resume=args.resume, overwrite=overwrite,
        device=args.device)


if __name__ == "__main__":
    sys.exit(main())
