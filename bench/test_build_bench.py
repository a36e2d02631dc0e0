"""Benchmarks of the cache build (issue 3), run with `pytest --benchmark-only bench`:

- throughput of the lower stack (all-MiniLM-L6-v2, K=3) over the same length-bucketed BBC
  batches at max length 256: onnxruntime (LowerSession) against PyTorch eager (TorchLower),
  same thread count; both outputs are checked against each other;
- computed tokens with length bucketing against padding every batch to max length, on all
  2,225 BBC articles at max length 512.

`make test` runs only the smoke test here (`-k smoke --benchmark-disable`).
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LAYER = 3
BENCH_DOCS = 128  # articles per throughput pass: ~32k real tokens, several seconds on 2 cores


def _lower_stack(tmp_path_factory, docs: int, max_length: int):
    from export.batching import BATCH_TOKENS, make_batches
    from export.defaults import default_corpus_records, default_model_path
    from export.onnx_export import export_lower
    from export.throughput import TorchLower
    from export.tokenize import load_tokenizer, tokenize

    model = default_model_path()
    onnx_dir = tmp_path_factory.mktemp("onnx") / "onnx"
    export_lower(model, LAYER, onnx_dir)
    tokenizer = load_tokenizer(model)
    records = default_corpus_records()[::max(1, 2225 // docs)][:docs]  # every topic
    encoded = tokenize(records, tokenizer, max_length=max_length)
    batches = make_batches([len(e) for e in encoded], BATCH_TOKENS)
    return {"onnx_dir": onnx_dir, "torch_model": TorchLower(model, LAYER), "encoded": encoded,
            "batches": batches, "pad": tokenizer.pad_token_id}


def _runner(stack, name: str, threads: int):
    """LowerSession or TorchLower on `threads` intra-op threads."""
    import torch

    from export.session import LowerSession

    if name == "onnxruntime":
        return LowerSession(stack["onnx_dir"], device="cpu", threads=threads)
    torch.set_num_threads(threads)
    return stack["torch_model"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return _lower_stack(tmp_path_factory, BENCH_DOCS, 256)


def _check_same(stack, outputs_a, outputs_b):
    """Both runners give the same hidden states on real tokens (ORT export tolerance)."""
    for batch, a, b in zip(stack["batches"], outputs_a, outputs_b):
        for row, i in enumerate(batch.indices):
            n = len(stack["encoded"][i])
            assert np.abs(a[row, :n] - b[row, :n]).max() <= 1e-4


def _threads(choice: str) -> int:
    from export.session import available_cores

    return 1 if choice == "1-thread" else available_cores()


@pytest.mark.parametrize("threads", ["1-thread", "all-cores"])
@pytest.mark.parametrize("name", ["onnxruntime", "torch-eager"])
def test_build_throughput(benchmark, stack, name, threads):
    from export.throughput import run_batches

    benchmark.group = f"build-lower-stack-{threads}"  # pairs onnxruntime with torch
    runner = _runner(stack, name, _threads(threads))
    args = (stack["encoded"], stack["batches"], stack["pad"])
    run_batches(runner, args[0], args[1][:1], args[2])  # warm-up
    outputs = benchmark.pedantic(run_batches, args=(runner, *args), rounds=3, iterations=1)
    other = _runner(stack, "torch-eager" if name == "onnxruntime" else "onnxruntime",
                    _threads(threads))
    _check_same(stack, outputs[:1], run_batches(other, args[0], args[1][:1], args[2]))
    if benchmark.stats is not None:  # None under --benchmark-disable
        real = sum(len(e) for e in stack["encoded"])
        benchmark.extra_info.update(
            real_tokens=real, threads=_threads(threads),
            tokens_per_s_best=real / benchmark.stats.stats.min,
            tokens_per_s_mean=real / benchmark.stats.stats.mean)


@pytest.fixture(scope="module")
def bbc_lengths_512():
    from export.defaults import default_corpus_records, default_model_path
    from export.tokenize import load_tokenizer, tokenize

    encoded = tokenize(default_corpus_records(), load_tokenizer(default_model_path()),
                       max_length=512)
    return [len(e) for e in encoded]


@pytest.mark.benchmark(group="build-batching")
def test_bucketing_vs_pad_to_max_bbc_512(benchmark, bbc_lengths_512):
    from export.batching import BATCH_TOKENS, computed_tokens, make_batches, padding_fraction

    lengths = bbc_lengths_512
    batches = benchmark(make_batches, lengths, BATCH_TOKENS)
    bucketed = computed_tokens(batches)
    padded = len(lengths) * 512  # every batch padded to max length
    real = sum(lengths)
    # Unsorted batches of the same sizes, each padded to its own longest: dynamic padding
    # without bucketing, the other usual baseline.
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    sizes, unsorted, start = [len(b.indices) for b in batches], 0, 0
    for size in sizes:
        unsorted += size * max(lengths[i] for i in order[start:start + size])
        start += size
    benchmark.extra_info.update(real_tokens=real, bucketed_computed=bucketed,
                                pad_to_max_computed=padded, unsorted_dynamic_computed=unsorted,
                                ratio_pad_to_max=padded / bucketed,
                                padding_fraction=padding_fraction(batches, lengths))
    assert padding_fraction(batches, lengths) <= 0.10
    # Bucketing reaches at least 95% of the best saving possible (computing real tokens only).
    assert padded / bucketed >= 0.95 * padded / real
    assert bucketed < unsorted


def test_build_smoke(benchmark, tmp_path_factory):
    """A few articles through both runners: the benchmark's code path, outputs equal."""
    from export.throughput import run_batches

    small = _lower_stack(tmp_path_factory, 6, 64)
    args = (small["encoded"], small["batches"], small["pad"])
    outputs = benchmark(run_batches, _runner(small, "onnxruntime", 1), *args)
    _check_same(small, outputs, run_batches(_runner(small, "torch-eager", 1), *args))
