"""bf16 against fp32 for the lower stack on this CPU: the error of the layer-K states and the
speed, with int8 storage error beside them for scale.

    python -m bench.precision [--model PATH] [--layer K] [--docs 64] [--max-length 256]

Runs the lower K layers in PyTorch eager (export.throughput.TorchLower) in fp32 and in bf16 on
the same batches of BBC articles, and prints one JSON line: the CPU's bf16 instruction sets
(from /proc/cpuinfo), relative error ||bf16 - fp32|| / ||fp32|| over real tokens and the largest
absolute difference, tokens/s of each (best of 3 passes), and the relative error that int8
storage (cache_format's per-channel smoothing + per-token absmax) adds to the fp32 states.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from export.cpu import cpu_bf16_flags


def relative_error(reference: list, other: list) -> tuple[float, float]:
    """(||other - reference|| / ||reference||, max |other - reference|) over [T, H] arrays."""
    diff = sum(float(np.square(o - r).sum()) for r, o in zip(reference, other))
    norm = sum(float(np.square(r).sum()) for r in reference)
    worst = max(float(np.abs(o - r).max()) for r, o in zip(reference, other))
    return (diff / norm) ** 0.5, worst


def _real_states(runner, encoded, batches, pad_id) -> list:
    from export.throughput import run_batches

    out = [None] * len(encoded)
    for batch, hidden in zip(batches, run_batches(runner, encoded, batches, pad_id)):
        for row, i in enumerate(batch.indices):
            out[i] = hidden[row, :len(encoded[i])]  # (T, H), real tokens only
    return out


def _int8_error(states: list, hidden_size: int) -> float:
    import cache_format

    with tempfile.TemporaryDirectory(prefix="erc-precision-") as tmp:
        with cache_format.create(Path(tmp) / "c", hidden_size=hidden_size, dtype="int8") as w:
            for i, s in enumerate(states):
                w.add(str(i), np.zeros(len(s), np.int64), s)
        r = cache_format.open(Path(tmp) / "c")
        return relative_error(states, [r.get(str(i)) for i in range(len(states))])[0]


def compare(model_path, layer: int, docs: int, max_length: int, threads=None,
            name: str | None = None) -> dict:
    """The figures described in the module docstring, as a dict."""
    from bench.endtoend import sample_articles
    from export.batching import make_batches
    from export.throughput import TorchLower, tokens_per_second
    from export.tokenize import load_tokenizer, tokenize

    tokenizer = load_tokenizer(model_path)
    encoded = tokenize(sample_articles(docs, 0), tokenizer, max_length=max_length)
    batches = make_batches([len(e) for e in encoded], 4096)
    pad_id = tokenizer.pad_token_id or 0
    runners = {c: TorchLower(model_path, layer, threads=threads, compute=c)
               for c in ("fp32", "bf16")}
    states = {c: _real_states(r, encoded, batches, pad_id) for c, r in runners.items()}
    speed = {c: tokens_per_second(r, encoded, batches, pad_id) for c, r in runners.items()}
    rel, worst = relative_error(states["fp32"], states["bf16"])
    return {"model": name or Path(model_path).name, "layer": layer, "articles": len(encoded),
            "tokens": sum(map(len, encoded)), "cpu_bf16_flags": cpu_bf16_flags(),
            "bf16_relative_error": rel, "bf16_max_abs_diff": worst,
            "int8_storage_relative_error": _int8_error(states["fp32"],
                                                       states["fp32"][0].shape[1]),
            "tokens_per_s": speed, "bf16_speedup": speed["bf16"] / speed["fp32"]}


def main(argv=None) -> int:
    from export.defaults import DEFAULT_MODEL_NAME, default_model_path

    from bench.cli import at_least, run_bench_cli
    from cache_format.cli_errors import OneLineParser

    p = OneLineParser(prog="python -m bench.precision", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint folder (default all-MiniLM-L6-v2)")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--docs", type=at_least(1), default=64)
    p.add_argument("--max-length", type=at_least(2), default=256)
    p.add_argument("--threads", type=at_least(1))
    args = p.parse_args(argv)

    def body():
        model = Path(args.model) if args.model else default_model_path()
        name = None if args.model else DEFAULT_MODEL_NAME
        print(json.dumps(compare(model, args.layer, args.docs, args.max_length, args.threads,
                                 name)))

    return run_bench_cli(body)


if __name__ == "__main__":
    sys.exit(main())
