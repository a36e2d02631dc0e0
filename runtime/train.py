"""`python -m runtime.train`: train adapters and a head from a layer-K cache (or from raw text).

    python -m runtime.train                      # the default job: MiniLM, K=3, int8 BBC News
    python -m runtime.train --builtin wnut16     # the built-in NER job
    python -m runtime.train --cache DIR --labels FILE --task seq-cls --out RUN [--mode full]

Under torchrun (`torchrun --nproc_per_node 2 -m runtime.train ...`) it trains with DDP.
Bad input: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cache_format.cli_errors import OneLineParser, run_cli
from runtime.errors import RuntimeConfigError


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m runtime.train", description=__doc__.split("\n")[0],
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data (no --cache: a built-in task, its cache built if missing)")
    data.add_argument("--cache", help="cache folder built by `python -m export.lower`")
    data.add_argument("--labels", help="labels file (.jsonl or .csv) joined on the example key")
    data.add_argument("--task", choices=["seq-cls", "token-cls", "qa"], help="task of the labels")
    data.add_argument("--builtin", choices=["bbc-news", "wnut16"], default="bbc-news",
                      help="built-in task used when --cache is not given")
    data.add_argument("--dtype", choices=["int8", "fp16", "fp32"], default="int8",
                      help="built-in task: dtype of the cache to build or reuse")
    data.add_argument("--id-field", default="id", help="labels column holding the cache key")
    data.add_argument("--label-field", default="label", help="labels column holding the label")
    data.add_argument("--words-field", default="words", help="token-cls: column with the words")
    data.add_argument("--corpus", help="raw text for --mode full/frozen (default: the manifest's)")
    data.add_argument("--allow-unlabelled", action="store_true",
                      help="skip cache keys that have no label instead of refusing")
    model = p.add_argument_group("model")
    model.add_argument("--mode", choices=["recycled", "full", "frozen"], default="recycled")
    model.add_argument("--model", help="expected checkpoint (refused if the cache's differs)")
    model.add_argument("--layer", type=int, help="expected K (refused if the cache's differs)")
    model.add_argument("--adapter", choices=["lora", "bottleneck", "finetune", "none"],
                       default="lora")
    model.add_argument("--lora-r", type=int, default=8)
    model.add_argument("--lora-alpha", type=int, default=16)
    model.add_argument("--lora-targets", choices=["attention", "all"], default=None,
                       help="LoRA on query+value (attention) or on every linear of a layer (all); "
                            "default: the recipe's")
    model.add_argument("--bottleneck-size", type=int, default=64)
    model.add_argument("--pooling", choices=["auto", "pooler", "cls", "mean"], default="auto",
                       help="seq-cls pooling; auto follows a sentence-transformers checkpoint's "
                            "1_Pooling config, else the architecture's pooler head")
    opt = p.add_argument_group("training")
    opt.add_argument("--out", help="run folder (default: runs/<task>-<mode>)")
    opt.add_argument("--epochs", type=int, default=None,
                     help="default: enough epochs for 600 optimizer steps, 3 to 20 (the built-in "
                          "BBC job: 3); early stopping on dev ends them sooner")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 adapters, "
                                              "1e-4 finetune)")
    opt.add_argument("--head-lr", type=float, help="learning rate of the task head "
                                                    "(default: the recipe's)")
    opt.add_argument("--class-weighting", choices=["none", "sqrt"], default=None,
                     help="cross-entropy weights 1/sqrt(class frequency) (default: the recipe's)")
    opt.add_argument("--min-epochs", type=int, default=None,
                     help="early stopping never stops before this epoch (default: the recipe's)")
    opt.add_argument("--max-train-examples", type=int,
                     help="train on a seeded subset of this many train examples")
    opt.add_argument("--weight-decay", type=float, default=0.01)
    opt.add_argument("--warmup-ratio", type=float, default=0.1)
    opt.add_argument("--patience", type=int, default=3, help="early stopping, in epochs")
    opt.add_argument("--token-budget", type=int, default=4096, help="padded tokens per batch")
    opt.add_argument("--max-batch-size", type=int, default=32)
    opt.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    opt.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    opt.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return run_cli(lambda: _run(args), user_errors=user_errors())


def user_errors() -> tuple:
    """Our packages' exception families (with cache_format's, which run_cli adds) are user
    mistakes: one line, exit 2; any other ValueError is a bug and keeps its traceback."""
    from export.errors import ExportError

    return (RuntimeConfigError, ExportError)


def _run(args) -> int:
    from runtime.datasets import prepare_builtin
    from runtime.trainer import TrainConfig, train

    cache, labels, task, overwrite = args.cache, args.labels, args.task, args.overwrite
    epochs = args.epochs
    if cache is None:
        if labels is not None:
            raise RuntimeConfigError("--labels needs --cache (the cache those keys are in); "
                                     "pass both, or neither for a built-in task")
        builtin = prepare_builtin(args.builtin, dtype=args.dtype, model=args.model)
        cache, labels, task = builtin.cache, builtin.labels, builtin.task
        epochs = args.epochs or builtin.epochs
        # the built-in job is re-runnable: it owns its default run folder
        overwrite = overwrite or args.out is None
    elif labels is None or task is None:
        raise RuntimeConfigError("--cache needs --labels FILE and --task seq-cls|token-cls|qa")
    out = args.out or f"runs/{args.builtin if args.cache is None else task}-{args.mode}"
    config = TrainConfig(
        cache=cache, labels=labels, task=task, out=out, mode=args.mode, epochs=epochs,
        seed=args.seed, lr=args.lr, weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio, patience=args.patience, adapter=args.adapter,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, bottleneck_size=args.bottleneck_size,
        pooling=args.pooling, max_train_examples=args.max_train_examples,
        token_budget=args.token_budget, max_batch_size=args.max_batch_size,
        id_field=args.id_field, label_field=args.label_field, words_field=args.words_field,
        corpus=args.corpus, model=args.model, layer=args.layer,
        allow_unlabelled=args.allow_unlabelled, resume=args.resume, overwrite=overwrite,
        device=args.device)
    recipe = {k: v for k, v in (("lora_targets", args.lora_targets), ("head_lr", args.head_lr),
                                 ("class_weighting", args.class_weighting),
                                 ("min_epochs", args.min_epochs)) if v is not None}
    metrics = train(dataclasses.replace(config, **recipe))
    if metrics:  # rank 0 only
        print(json.dumps({"run": out, **metrics}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
