"""`python -m bench.fidelity`: the paper's accuracy comparison, the linear probe and the K sweep.

    python -m bench.fidelity --model all-MiniLM-L6-v2 --task wnut16 --layer 3 --seeds 0 1 2
    python -m bench.fidelity --model all-mpnet-base-v2 --task bbc-news --layer 6 --max-length 128
    python -m bench.fidelity --task wnut16 --sweep --configs recycled-finetune   # K = 1 .. N-1
    python -m bench.fidelity --task bbc-news --max-train-examples 200 --probe    # small data
    python -m bench.fidelity --summary runs-1e-3.jsonl runs-3e-3.jsonl --pick-by-dev
    python -m bench.fidelity --task wnut16 --work runs/ --resume   # after a crash: go on

Every run goes through `runtime.trainer.train` with the same built-in split, the same seeds and
the same batches in every mode, so the only difference between two rows of a table is the
configuration: where the model starts (full fine-tuning from token ids, frozen below K, or
recycled from the int8 cache at K) and what trains (fine-tuning, LoRA, bottleneck adapters).
Each run is appended to a JSON-lines file (the runs are kept), and the summary prints the mean
and standard deviation over seeds, and each gap to full paired seed by seed with its standard
error, at the same learning rate or (`--pick-by-dev`) at the rate each side's dev score picks
(bench.fidelity_summary reads the records; this module trains and appends them). `--sweep`
repeats the comparison for every K and draws test score and training speedup (full train
seconds per epoch / recycled) against K in one PNG.

Run folders live in a temporary folder, removed afterwards, unless `--work DIR` keeps them
(DIR/<task>-K<k>/<config>-s<seed>). The same command with `--resume` then goes on after a crash
or a kill: a run already recorded in `--out` is skipped, a run with a checkpoint continues from
it, and the rest start; a kept checkpoint of other settings is refused before anything trains.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time

from bench.fidelity_summary import (cache_dtype, cache_shares, format_largest_k,
                                    format_paired_gaps, format_table, largest_k_within,
                                    paired_gaps, plot_sweep, read_runs, reads_stored_states,
                                    report_speedups, select_runs, summarize)

MODES = ("full", "frozen", "recycled")
ADAPTERS = ("finetune", "lora", "bottleneck")
CONFIGS = tuple(f"{m}-{a}" for m in MODES for a in ADAPTERS)


@dataclasses.dataclass(frozen=True)
class FidelityConfig:
    """One comparison: a model, a built-in task, K, the configurations and the seeds."""

    model: str | None = None  # a known name (all-MiniLM-L6-v2, all-mpnet-base-v2) or a folder
    task: str = "wnut16"  # bbc-news | wnut16
    layer: int | None = None  # K; None: N // 2
    configs: tuple = ("full-finetune", "recycled-finetune", "full-lora", "recycled-lora")
    seeds: tuple = (0, 1, 2)
    max_length: int | None = None  # None: the task's own (BBC 256, WNUT-16 128)
    max_train_examples: int | None = None  # a seeded subset of the train split
    epochs: int | None = None  # None: the recipe's default
    overrides: tuple = ()  # ("key=value", ...) applied to every TrainConfig
    device: str = "cpu"
    cache_root: str = "caches"
    # The stored precision recycled runs read. int8 shards are half fp16's, but on MiniLM
    # WNUT-16 LoRA its rounding moved single seeds' F1 by up to 3.9 points where fp16 gave the
    # frozen control's figure (docs/RECIPE.md, "What the rank-16 gap is made of").
    cache_dtype: str = "int8"
    out: str = "fidelity.jsonl"  # runs are appended here
    work: str | None = None  # keeps the run folders; None: a temporary folder, removed after
    resume: bool = False  # with work: skip runs recorded in `out`, continue checkpointed ones


def run_one(config: FidelityConfig, name: str, seed: int, cache: str, labels: str,
            task: str, layer: int, work: str, resume: bool = False) -> dict:
    """Train one configuration with one seed (in `run_folder(work, name, seed)`, continuing
    from its checkpoint if `resume`); returns the JSON record of the run."""
    train_config = _run_train_config(config, name, seed, cache, labels, task, work, resume)
    return _train_and_record(_run_identity(config, name, seed, layer, train_config),
                             train_config)


def _train_and_record(identity: dict, train_config) -> dict:
    """Train `train_config`; its record is `identity` plus metrics, timing and machine."""
    import torch

    from export.cpu import cpu_description
    from runtime.trainer import train

    t0 = time.perf_counter()
    metrics = train(train_config)
    return {**identity, "metrics": metrics,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "learning_rate": train_config.learning_rate,
            "head_learning_rate": train_config.head_learning_rate,
            # seconds are only comparable on one machine, and sessions change machines
            "cpu": cpu_description(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), **_gpu_description(train_config.device)}


def run_folder(work: str, name: str, seed: int) -> str:
    return os.path.join(work, f"{name}-s{seed}")


def _stored_dtype(config: FidelityConfig, name: str) -> str | None:
    """The stored precision configuration `name` reads (None: it reads the cache's splits
    alone)."""
    return config.cache_dtype if reads_stored_states(name) else None


def _folder_name(config: FidelityConfig, name: str) -> str:
    """`name`, or `name-fp16` for a recycled run of another stored precision than int8, so that
    an fp16 comparison in a --work of int8 runs neither trains over nor resumes from them."""
    dtype = _stored_dtype(config, name)
    return name if dtype in (None, "int8") else f"{name}-{dtype}"


def _run_train_config(config: FidelityConfig, name: str, seed: int, cache: str, labels: str,
                      task: str, work: str, resume: bool = False):
    from runtime.trainer import TrainConfig

    mode, adapter = name.split("-", 1)
    fields = dict(cache=cache, labels=labels, task=task, mode=mode, adapter=adapter, seed=seed,
                  out=run_folder(work, _folder_name(config, name), seed), device=config.device,
                  overwrite=True, resume=resume, max_train_examples=config.max_train_examples,
                  model=config.model)
    if config.epochs is not None:
        fields["epochs"] = config.epochs
    fields.update(_parse_overrides(config.overrides))
    return TrainConfig(**fields)


def _run_identity(config: FidelityConfig, name: str, seed: int, layer: int,
                  train_config) -> dict:
    """The fields of a run's record that say which run it is (`_run_key` reads them)."""
    dtype = _stored_dtype(config, name)
    stored = {"cache_dtype": dtype} if dtype else {}
    return {"model": _model_label(config), "task": config.task, "layer": layer, "config": name,
            "seed": seed, "max_length": config.max_length, **stored,
            "max_train_examples": config.max_train_examples,
            "train_config": {k: v for k, v in dataclasses.asdict(train_config).items()
                             if k not in ("cache", "labels", "out", "model")}}


# How a resumed run's record may differ from an uninterrupted one's and still be that run:
# runtime.run_folder.RESUME_MAY_CHANGE less the paths (a record keeps none) and less the device
# (a GPU and a CPU run of one seed are two runs, as bench.fidelity_summary's _RUN_FIELDS says).
_RESUME_FREE = ("resume", "overwrite", "prefetch_depth")


def _run_key(record: dict) -> tuple:
    """Which run a record is: model, task, K, configuration, seed, subset, length, stored
    precision, recipe."""
    recipe = {k: v for k, v in (record.get("train_config") or {}).items()
              if k not in _RESUME_FREE}
    return (record["model"], record["task"], record["layer"], record["config"], record["seed"],
            record.get("max_length"), record.get("max_train_examples"), cache_dtype(record),
            json.dumps(recipe, sort_keys=True))


def _recorded(path: str) -> dict:
    """{run key: record} of the runs already in `path` (none if it does not exist yet)."""
    if not os.path.exists(path):
        return {}
    return {_run_key(r): r for r in read_runs([path])}


@contextlib.contextmanager
def _work_folder(config: FidelityConfig, layer: int):
    """The folder the runs of one K train in: kept under `config.work`, else temporary."""
    if config.work is None:
        with tempfile.TemporaryDirectory(prefix="fidelity-") as work:
            yield work
        return
    work = _kept_folder(config, layer)
    os.makedirs(work, exist_ok=True)
    yield work


def _kept_folder(config: FidelityConfig, layer: int) -> str:
    return os.path.join(config.work, f"{config.task}-K{layer}")


def check_kept_runs(config: FidelityConfig, plan: list) -> None:
    """Refuse, before anything trains, a --work whose run folders of `plan` ((K, configs)
    pairs) the command would spoil: without --resume any such folder (training anew into it
    would throw its checkpoint away); with --resume a checkpointed one trained with other
    settings than the command's (the trainer would refuse it, but only when its turn came)."""
    from runtime.errors import RuntimeConfigError

    if config.work is None:
        return
    done = _recorded(config.out) if config.resume else {}
    for layer, configs in plan:
        for name in configs:
            for seed in config.seeds:
                folder = run_folder(_kept_folder(config, layer), _folder_name(config, name), seed)
                if not config.resume:
                    if os.path.exists(folder):
                        raise RuntimeConfigError(
                            f"--work: {folder} holds an earlier run; pass --resume to go on "
                            "from it (runs in --out are skipped), or pick another --work")
                    continue
                changed = _changed_kept_run(config, layer, name, seed, folder, done)
                if changed:
                    raise RuntimeConfigError(
                        f"--work: {folder} was trained with {', '.join(changed)}; --resume "
                        "goes on only with the settings it started with: drop the changed "
                        "option, or pick another --work")


# Left to the trainer's own check on resume: bench learns the labels path only when it builds
# a K's cache, and config.json holds the pooling "auto" resolved to.
_UNCHECKED_BEFORE_TRAINING = frozenset({"labels", "pooling"})


def _changed_kept_run(config: FidelityConfig, layer: int, name: str, seed: int, folder: str,
                      done: dict) -> list:
    """The settings the command changes for the kept run in `folder` (of `name` and `seed`),
    if that run would resume from its checkpoint."""
    from runtime import run_folder as kept
    from runtime.datasets import get_task
    from runtime.errors import RuntimeConfigError

    if not os.path.isfile(os.path.join(folder, "checkpoint.pt")):
        return []
    planned = _run_train_config(config, name, seed, "", "", get_task(config.task).task,
                                _kept_folder(config, layer), resume=True)
    if _run_key(_run_identity(config, name, seed, layer, planned)) in done:
        return []  # skipped, not resumed
    remedy = "delete that run folder, or pick another --work"
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise RuntimeConfigError(f"--work: {folder} has a checkpoint but no config.json; {remedy}")
    saved = kept.read_train_config(folder, remedy)
    return kept.changed_settings(dataclasses.asdict(saved), dataclasses.asdict(planned),
                                 _UNCHECKED_BEFORE_TRAINING)


def _gpu_description(device: str) -> dict:
    """{"gpu": name} for a run on a GPU: its seconds and float rounding are that card's."""
    import torch

    if not device.startswith("cuda"):
        return {}
    return {"gpu": torch.cuda.get_device_name(torch.device(device))}


def compare(config: FidelityConfig, layer: int | None = None, log=print) -> list:
    """Every configuration x seed at one K; appends each run to `config.out`; returns them."""
    from runtime.datasets import get_task, prepare_builtin

    k = layer if layer is not None else _layer(config)
    check_kept_runs(config, [(k, config.configs)])
    prepared = prepare_builtin(config.task, layer=k, model=config.model, root=config.cache_root,
                               max_length=config.max_length, dtype=config.cache_dtype)
    task = get_task(config.task).task
    done = _recorded(config.out) if config.resume else {}
    records = []
    with _work_folder(config, k) as work:
        for name in config.configs:
            for seed in config.seeds:
                folder = run_folder(work, _folder_name(config, name), seed)
                resume = config.resume and os.path.isfile(os.path.join(folder, "checkpoint.pt"))
                train_config = _run_train_config(config, name, seed, prepared.cache,
                                                 prepared.labels, task, work, resume)
                identity = _run_identity(config, name, seed, k, train_config)
                key = _run_key(identity)  # leaves `resume` out: a resumed run is the same run
                if key in done:
                    log(f"== {config.task} K={k} {name} seed {seed}: in {config.out}, skipped")
                    records.append(done[key])
                    continue
                log(f"== {config.task} K={k} {name} seed {seed}"
                    + (" (resumed from its checkpoint)" if resume else ""))
                record = _train_and_record(identity, train_config)
                _append(config.out, record)
                records.append(record)
                log(f"   {json.dumps(record['metrics'])}")
    return records


def linear_probe(config: FidelityConfig, log=print) -> list:
    """The probe per seed (the seed draws the train subset); appended to `config.out`."""
    from bench.probe import final_states, probe
    from runtime.inputs import open_cache
    from runtime.labels import LabelsConfig, load_labelled
    from runtime.datasets import get_task, prepare_builtin
    from runtime.tasks import task_named
    from runtime.trainer import TrainConfig, subset_train
    from runtime.upper import load_upper

    k = _layer(config)
    done = _recorded(config.out) if config.resume else {}
    keys = {seed: _run_key(_probe_identity(config, seed, k)) for seed in config.seeds}
    if all(key in done for key in keys.values()):
        log(f"== probe: every seed in {config.out}, skipped")
        return [done[key] for key in keys.values()]
    prepared = prepare_builtin(config.task, layer=k, model=config.model, root=config.cache_root,
                               max_length=config.max_length, dtype=config.cache_dtype)
    reader = open_cache(prepared.cache)
    upper = load_upper(_model_path(config, reader), layer=k).to(config.device)
    task = get_task(config.task).task
    data = load_labelled(LabelsConfig(path=prepared.labels, task=task), reader)
    states = final_states(reader, upper, [e.key for e in data.examples], config.device)
    records = []
    for seed in config.seeds:
        if keys[seed] in done:
            records.append(done[keys[seed]])
            continue
        sub = subset_train(data, TrainConfig(cache="", labels="", task=task, out="", seed=seed,
                                             max_train_examples=config.max_train_examples))
        result = probe(task, sub, states, sub.split("train"), sub.split("dev"), sub.split("test"))
        record = {**_probe_identity(config, seed, k),
                  "metrics": {task_named(task).primary_metric: result["test"], "dev": result["dev"],
                              "l2": result["l2"]},
                  "date": time.strftime("%Y-%m-%d")}
        _append(config.out, record)
        records.append(record)
        log(f"== probe seed {seed}: {json.dumps(record['metrics'])}")
    return records


def _probe_identity(config: FidelityConfig, seed: int, layer: int) -> dict:
    return {"model": _model_label(config), "task": config.task, "layer": layer,
            "config": "linear-probe", "seed": seed, "max_length": config.max_length,
            "cache_dtype": _stored_dtype(config, "linear-probe"),
            "max_train_examples": config.max_train_examples}


def sweep(config: FidelityConfig, log=print) -> list:
    """`compare` at every K = 1 .. N-1; full-* configurations (the same at every K) run once."""
    full = tuple(c for c in config.configs if c.startswith("full"))
    rest = tuple(c for c in config.configs if not c.startswith("full"))
    plan = [(k, rest + (full if k == 1 else ())) for k in range(1, _num_layers(config))]
    check_kept_runs(config, plan)  # before K=1 trains, not when K=2 finds its folder
    records = []
    for k, configs in plan:
        records += compare(dataclasses.replace(config, configs=configs), layer=k, log=log)
    return records


# TrainConfig fields a `--set` may not touch: bench.fidelity sets them per run, and a record
# must say what ran (a `--set mode=full` under `recycled-lora` would train full and be filed as
# recycled). Each names the flag that sets it, or None where nothing should.
_OWNED_FIELDS = {"cache": None, "labels": None, "out": None, "overwrite": None,
                 "resume": "--work DIR --resume", "task": "--task",
                 "model": "--model", "layer": "--layer", "mode": "--configs",
                 "adapter": "--configs", "seed": "--seeds", "epochs": "--epochs",
                 "max_train_examples": "--max-train-examples", "device": "--device"}


def _parse_overrides(items) -> dict:
    """`--set key=value` items as TrainConfig fields, each value of the field's declared type."""
    from runtime.config import TrainConfig
    from runtime.errors import RuntimeConfigError

    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__
             for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise RuntimeConfigError(f"--set {item!r}: expected key=value")
        if key in _OWNED_FIELDS:
            flag = _OWNED_FIELDS[key]
            raise RuntimeConfigError(f"--set {item!r}: bench.fidelity sets {key} for each run"
                                     + (f"; pass {flag}" if flag else ""))
        if key not in types:
            known = ", ".join(sorted(k for k in types if k not in _OWNED_FIELDS))
            raise RuntimeConfigError(f"--set {item!r}: {key!r} is not a TrainConfig field; "
                                     f"one of {known}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare string such as lora_targets=all
        out[key] = _of_declared_type(item, parsed, types[key])
    return out


def _of_declared_type(item: str, value, declared: str):
    """`value` as the field's type (an int is a float where a float is declared), or a one-line
    error: TrainConfig checks ranges, not types, since the CLI's argparse types come first."""
    from runtime.errors import RuntimeConfigError

    kinds = {kind.strip() for kind in declared.split("|")}
    if value is None and "None" in kinds:
        return None
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int) and ("int" in kinds or "float" in kinds):
        return value if "int" in kinds else float(value)
    elif isinstance(value, float) and "float" in kinds:
        return value
    elif isinstance(value, str) and "str" in kinds:
        return value
    raise RuntimeConfigError(f"--set {item!r}: {item.partition('=')[0]} takes {declared}")


def check_config(config: FidelityConfig) -> None:
    """Refuse bad input before any cache is built: where runs are appended, K against the
    model's depth, and every configuration's TrainConfig made once per seed with placeholder
    paths, so its range checks run up front."""
    from bench.cli import output_file_problem, output_folder_problem
    from runtime.config import TrainConfig
    from runtime.datasets import get_task
    from runtime.errors import RuntimeConfigError
    from runtime.upper import check_layer

    problem = output_file_problem("--out", config.out)
    if config.work is not None:
        problem = problem or output_folder_problem("--work", config.work)
    elif config.resume:
        problem = "--resume needs --work DIR, the folder that kept the runs to go on from"
    if problem:
        raise RuntimeConfigError(problem)
    if config.layer is not None:
        check_layer(config.layer, _num_layers(config))
    overrides = _parse_overrides(config.overrides)
    task = get_task(config.task).task
    for name in config.configs:
        mode, adapter = name.split("-", 1)
        for seed in config.seeds:
            TrainConfig(cache="", labels="", task=task, out="", mode=mode, adapter=adapter,
                        seed=seed, device=config.device, epochs=config.epochs,
                        max_train_examples=config.max_train_examples, **overrides)


def _append(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _model_path(config: FidelityConfig, reader=None) -> str:
    from export.defaults import default_model_path
    from export.models import resolve_model

    return str(resolve_model(config.model) if config.model else default_model_path())


def _model_label(config: FidelityConfig) -> str:
    from export.models import model_name

    return model_name(_model_path(config))


def _layer(config: FidelityConfig) -> int:
    """K: the one asked for, else the middle layer (the paper's N / 2)."""
    return config.layer if config.layer is not None else _num_layers(config) // 2


def _num_layers(config: FidelityConfig) -> int:
    from runtime.upper import num_layers

    return num_layers(_model_path(config))


def parser() -> argparse.ArgumentParser:
    from cache_format.cli_errors import DefaultsHelpFormatter, OneLineParser
    from export.build import DTYPES

    p = OneLineParser(prog="python -m bench.fidelity", description=__doc__.split("\n")[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", help="all-MiniLM-L6-v2 (default), all-mpnet-base-v2, or a folder")
    p.add_argument("--task", choices=["bbc-news", "wnut16"],
                   help="the task to train (default wnut16); with --summary, the only task "
                        "shown (default every task in the files)")
    p.add_argument("--layer", type=int, help="K (default N // 2); with --summary, the only K "
                   "shown, beside the full runs (pooled over K) it pairs with")
    p.add_argument("--configs", help=f"comma-separated, of {', '.join(CONFIGS)} (default: "
                   f"{','.join(FidelityConfig.configs)}); with --summary, the only ones shown, "
                   "beside the full and frozen runs they pair with (default every one)")
    p.add_argument("--seeds", type=int, nargs="+",
                   help=f"the seeds to train (default {' '.join(map(str, FidelityConfig.seeds))}); "
                        "with --summary, the only seeds shown and paired (default every one)")
    p.add_argument("--max-length", type=int, help="tokens per record (default: the task's)")
    p.add_argument("--max-train-examples", type=int, help="seeded train subset per seed")
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a TrainConfig field for every run, e.g. --set lr=3e-3; not one the "
                        "bench sets per run (mode and adapter come from --configs, seed from "
                        "--seeds, epochs from --epochs)")
    p.add_argument("--probe", action="store_true", help="also run the linear probe")
    p.add_argument("--sweep", action="store_true", help="every K = 1 .. N-1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-root", default="caches")
    p.add_argument("--cache-dtype", choices=DTYPES, default="int8",
                   help="the stored precision recycled runs and the probe read (an fp16 or "
                        "fp32 cache is built beside the int8 one under --cache-root); kept in "
                        "their records, and runs of two precisions never pool")
    p.add_argument("--out", default="fidelity.jsonl", help="JSON-lines file the runs append to")
    p.add_argument("--work", metavar="DIR", help="keep every run folder (weights, checkpoint, "
                   "steps) in DIR/<task>-K<k>/<config>-s<seed> (default: a temporary folder, "
                   "removed after)")
    p.add_argument("--resume", action="store_true", help="with --work: the same command again "
                   "after a crash; skips runs already in --out, continues each run that left a "
                   "checkpoint in DIR, starts the rest")
    _summary_options(p)
    return p


def _summary_options(p) -> None:
    """What reads runs already made: the summary, its pairing and its plot."""
    p.add_argument("--plot", help="PNG of the K sweep: score and training speedup against K, "
                   "and below them each K's gap to full paired over the seeds both ran")
    p.add_argument("--speedups", metavar="REPORT.json", help="with --plot: the training speedup "
                   "per K from this bench.report --json (full's median over the K it timed, "
                   "over recycled at each K) instead of the runs' own seconds per epoch")
    p.add_argument("--summary", nargs="*", metavar="RUNS.jsonl",
                   help="only print the table of the runs already in these files (none named: "
                        "--out); runs at different learning rates or recipes stay apart")
    p.add_argument("--pick-by-dev", action="store_true",
                   help="pair each configuration with its full counterpart each at the "
                        "learning rate and recipe its mean best dev score picks, not at the "
                        "same ones")


def main(argv=None) -> int:
    from bench.cli import run_bench_cli

    args = parser().parse_args(argv)
    return run_bench_cli(lambda: _run(args))


def _run(args) -> int:
    from bench.cli import output_file_problem
    from runtime.errors import RuntimeConfigError

    _refuse_options_without_effect(args)
    named = args.configs is not None
    configs = tuple(c for c in args.configs.split(",") if c) if named else FidelityConfig.configs
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        raise RuntimeConfigError(f"unknown config {bad[0]!r}; expected of {', '.join(CONFIGS)}")
    config = FidelityConfig(model=args.model, task=args.task or FidelityConfig.task,
                            layer=args.layer, configs=configs,
                            seeds=tuple(args.seeds or FidelityConfig.seeds),
                            max_length=args.max_length,
                            max_train_examples=args.max_train_examples, epochs=args.epochs,
                            overrides=tuple(args.overrides), device=args.device,
                            cache_root=args.cache_root, cache_dtype=args.cache_dtype,
                            out=args.out, work=args.work, resume=args.resume)
    problem = args.plot and output_file_problem("--plot", args.plot)
    if problem:
        raise RuntimeConfigError(problem)
    if args.summary is None:
        check_config(config)
        if args.probe:
            linear_probe(config)
        if configs:
            sweep(config) if args.sweep else compare(config)
    records = read_runs(args.summary or [config.out])
    if args.summary is not None:
        records = select_runs(records, task=args.task, configs=configs if named else (),
                              layer=args.layer, seeds=tuple(args.seeds or ()))
    _print_summary(records, args.pick_by_dev)
    if args.plot:
        speedups = report_speedups(args.speedups) if args.speedups else None
        # a --summary's runs are already those of --task where one was named; runs just trained
        # share --out with any others
        shown = records if args.summary is not None else [
            r for r in records if r["task"] == config.task]
        plot_sweep(shown, args.plot, speedups)
    return 0


def _print_summary(records: list, pick_by_dev: bool) -> None:
    """The table, the largest K within a point, the paired gaps and the cache's share."""
    rows = summarize(records)
    print(format_table(rows))
    paired = paired_gaps(records, by_dev=pick_by_dev)
    within = format_largest_k(largest_k_within(paired))
    if within:
        print(within)
    if paired:
        print(format_paired_gaps(paired))
    shares = cache_shares(records)
    if shares:
        print("the cache's share (recycled - frozen, the same K and recipe; frozen runs layers "
              "0..K-1 from the text):")
        print(format_paired_gaps(shares))


# Options that only shape runs to train: a --summary reads runs already made, and one of these
# beside it would be silently ignored (a user asking for `--summary ... --epochs 4` expects a
# narrower table, and would read the whole one as that).
_TRAINING_ONLY = ("model", "max_length", "max_train_examples", "epochs", "overrides", "probe",
                  "sweep", "device", "cache_root", "cache_dtype", "work", "resume")


def _refuse_options_without_effect(args) -> None:
    from runtime.errors import RuntimeConfigError

    if args.speedups and not args.plot:
        raise RuntimeConfigError("--speedups gives --plot its speedup axis; name --plot FILE.png")
    if args.sweep and args.layer is not None:
        raise RuntimeConfigError("--sweep trains every K from 1 to N-1; drop --layer, or drop "
                                 "--sweep to train at that K")
    if args.summary is None:
        return
    given = parser().given
    if args.summary and given(args, ["out"]):
        raise RuntimeConfigError("--out is the runs file a --summary reads only when it names "
                                 "no files; name it among them")
    typed = given(args, _TRAINING_ONLY)
    if typed:
        raise RuntimeConfigError(f"{typed[0]} shapes runs to train and does nothing with "
                                 "--summary, which narrows by --task, --configs, --layer "
                                 "and --seeds only")


if __name__ == "__main__":
    sys.exit(main())
