"""One training step and one inference step, full against recycled, at K = N/4, N/2, 3N/4,
on real BBC text through the default model; and a recycled pass with the prefetcher on and
off. Each benchmark's extra_info splits its time into cache wait, host-to-device copy,
forward, backward and optimizer (bench.steps). `python -m bench.report` gives the ratios of
all modes measured side by side; these suites track each step on its own.
"""
from __future__ import annotations

import numpy as np
import pytest
import cache_format
from bench.endtoend import build_mode_model, layers_to_sweep
from bench.steps import time_interleaved

DOCS = 16
MAX_LENGTH = 128
TOKEN_BUDGET = 1024


def _keys_batches(reader):
    from runtime.loader import BatchPlan, plan_cache_batches

    plan = BatchPlan(token_budget=TOKEN_BUDGET, max_batch_size=16)
    return plan_cache_batches(reader, reader.keys(), plan, shuffle=False)


@pytest.fixture(scope="module")
def step_setup(tmp_path_factory):
    """Per K: an int8 cache of DOCS real articles, its batches and batch sources."""
    from export.build import BuildConfig, build_cache
    from export.defaults import default_model_path
    from runtime.batches import CacheBatches, TokenBatches
    from runtime.upper import num_layers

    from bench.endtoend import write_corpus, sample_articles

    model_path = default_model_path()
    work = tmp_path_factory.mktemp("steps")
    records = sample_articles(DOCS, seed=0)
    write_corpus(records, work / "corpus.jsonl")
    names = sorted({r.label for r in records})
    labels = {r.id: names.index(r.label) for r in records}
    setup = {}
    for k in layers_to_sweep(num_layers(model_path)):
        out = work / f"L{k}"
        build_cache(BuildConfig(layer=k, corpus=str(work / "corpus.jsonl"), out=str(out),
                                max_length=MAX_LENGTH, progress=False))
        reader = cache_format.open(out)
        ids = {key: reader.token_ids(key).astype(np.int64) for key in reader.keys()}
        setup[k] = (model_path, reader, _keys_batches(reader),
                    {"recycled": CacheBatches(reader, labels, "seq-cls"),
                     "full": TokenBatches(ids, labels, "seq-cls", pad_id=0)},
                    len(names))
    return setup


def _record(benchmark, times) -> None:
    benchmark.extra_info.update({f"{phase}_ms_per_example": 1e3 * v
                                 for phase, v in times.per_example().items()})
    benchmark.extra_info["io_fraction"] = times.io_fraction


@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("mode", ["full", "recycled"])
@pytest.mark.parametrize("fraction", ["N/4", "N/2", "3N/4"])
def test_step(benchmark, step_setup, fraction, mode, train):
    k = sorted(step_setup)[min(["N/4", "N/2", "3N/4"].index(fraction), len(step_setup) - 1)]
    model_path, reader, batches, loads, num_labels = step_setup[k]
    model, optimizer = build_mode_model(mode, model_path, k, num_labels, "lora", seed=0)
    runs = {mode: (model, optimizer if train else None, loads[mode], True)}
    times = benchmark.pedantic(
        lambda: time_interleaved(runs, batches, train=train, warmup=0)[mode],
        rounds=3, warmup_rounds=1)
    assert times.examples == DOCS and times.seconds["forward"] > 0
    assert (times.seconds["backward"] > 0) == train
    _record(benchmark, times)


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch-on", "prefetch-off"])
def test_recycled_pass_prefetch(benchmark, step_setup, prefetch):
    k = sorted(step_setup)[len(step_setup) // 2]
    model_path, reader, batches, loads, num_labels = step_setup[k]
    model, optimizer = build_mode_model("recycled", model_path, k, num_labels, "lora", seed=0)
    runs = {"recycled": (model, optimizer, loads["recycled"], prefetch)}
    times = benchmark.pedantic(
        lambda: time_interleaved(runs, batches, train=True, warmup=0)["recycled"],
        rounds=3, warmup_rounds=1)
    assert times.steps == len(batches)
    if not prefetch:
        assert times.seconds["wait"] > 0  # inline loading is charged to the step
    _record(benchmark, times)
