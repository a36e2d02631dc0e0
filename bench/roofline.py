"""How far the build and the training steps are from what this machine's matrix units can do,
and what recycling saves when many task models share one corpus.

FLOPs are counted analytically from the model config (hidden size H, intermediate size I),
per real token of a sequence of mean real length T, for one encoder layer's forward pass:

    8 H^2        the Q, K, V and output projections (4 GEMMs of H x H, 2 FLOPs a multiply-add)
    4 H I        the feed-forward up and down projections
    4 T H        attention scores Q K^T and the weighted sum of V

Embeddings, layer norms, softmax, activations and the task head are left out: they are a few
percent of a layer and run at memory speed, not GEMM speed. Padding is not counted (it is
wasted work), so the shares below are of useful FLOPs. A training step counts the forward pass
and, for the backward pass, the gradient with respect to each layer's input through every layer
it flows through (another 1x the forward FLOPs); with LoRA or bottleneck adapters the weight
gradients are of the small adapter matrices and are left out. Full fine-tuning would add the
weight gradients (a third 1x); the report's default adapter is LoRA.

The achieved rate of a phase is its FLOPs over its measured wall time (cache wait, copies and
optimizer included), and its share is that rate over the measured fp32 GEMM rate of the
model's own shapes (`gemm_gflops`), the faster of torch's matmul and onnxruntime's MatMul on
each shape. bench.endtoend measures that rate right after each timed
phase and keeps the best, since other jobs on a shared machine only ever slow it down; a
share above 1 means the GEMM benchmark never caught the machine as quiet as the phase did.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

TASK_COUNTS = (1, 5, 20)  # the many-models figure: T task models over one corpus
GEMM_TOKENS = 2048  # rows of the timed GEMMs: the report's token budget per batch
GEMM_REPEATS = 5  # best of: other jobs on a shared machine only ever slow a run down
GEMM_MIN_SECONDS = 0.1  # each repeat runs its GEMM at least this long


@dataclass(frozen=True)
class LayerShape:
    """What the FLOP count needs of a model config."""

    hidden: int  # H
    intermediate: int  # I, the feed-forward width
    num_layers: int  # N

    @classmethod
    def from_config(cls, config) -> "LayerShape":
        """From a transformers config (DistilBERT names the fields dim / hidden_dim / n_layers)."""
        hidden = getattr(config, "hidden_size", None) or config.dim
        inter = getattr(config, "intermediate_size", None) or config.hidden_dim
        layers = getattr(config, "num_hidden_layers", None) or config.n_layers
        return cls(int(hidden), int(inter), int(layers))

    def layer_flops_per_token(self, mean_length: float) -> float:
        """Forward FLOPs of one layer per real token, at mean sequence length `mean_length`."""
        h, i = self.hidden, self.intermediate
        return 8 * h * h + 4 * h * i + 4 * mean_length * h


def gemm_shapes(shape: LayerShape, tokens: int = GEMM_TOKENS) -> list[tuple[int, int, int]]:
    """(M, K, N) of a layer's GEMMs over `tokens` rows: projections, FFN up, FFN down."""
    h, i = shape.hidden, shape.intermediate
    return [(tokens, h, h), (tokens, h, i), (tokens, i, h)]


def _best_seconds(run) -> float:
    """Best of GEMM_REPEATS of the mean time of `run()` over at least GEMM_MIN_SECONDS."""
    run()  # warm-up: thread pool and allocator
    best = float("inf")
    for _ in range(GEMM_REPEATS):
        runs, start = 0, time.perf_counter()
        while True:
            run()
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= GEMM_MIN_SECONDS:
                break
        best = min(best, elapsed / runs)
    return best


def _torch_matmul(m: int, k: int, n: int, threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    return lambda: torch.matmul(a, b)


def _onnxruntime_matmul(m: int, k: int, n: int, threads: int | None):
    """One MatMul node with B as an initializer, as the exported lower stack holds its weights."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime builds too
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"a": rng.standard_normal((m, k), dtype=np.float32)}
    return lambda: session.run(None, feed)


GEMM_ENGINES = {"torch": _torch_matmul, "onnxruntime": _onnxruntime_matmul}


def measure_gemm_gflops(shape: LayerShape, threads: int | None = None,
                        engines: tuple[str, ...] = ("torch", "onnxruntime")) -> dict:
    """fp32 GEMM GFLOP/s on the model's GEMM shapes, best of GEMM_REPEATS each, per engine.

    The ceiling is the faster engine on each shape: torch's BLAS (MKL in the CPU wheel) and
    onnxruntime's MLAS take different code paths on different CPUs (on an AMD EPYC MKL ran at
    about half of MLAS), and a share of the slower one overstates how close a phase comes to
    what the machine can do.

    Returns {"gemm_gflops": rate over the layer's mix (FLOPs weighted as one layer runs them)
    with the faster engine per shape, "by_shape": {"MxKxN": GFLOP/s of that engine},
    "by_engine": {engine: rate over the mix}}.
    """
    weights = {(m, k, n): 4 if k == n == shape.hidden else 1  # Q, K, V, output: 4 of them
               for m, k, n in gemm_shapes(shape)}
    seconds = {e: {mkn: _best_seconds(GEMM_ENGINES[e](*mkn, threads)) for mkn in weights}
               for e in engines}

    def mix_rate(per_shape: dict) -> float:
        flops = sum(c * 2.0 * m * k * n for (m, k, n), c in weights.items())
        return flops / sum(c * per_shape[mkn] for mkn, c in weights.items()) / 1e9

    best = {mkn: min(seconds[e][mkn] for e in engines) for mkn in weights}
    return {"gemm_gflops": mix_rate(best),
            "by_shape": {f"{m}x{k}x{n}": 2.0 * m * k * n / best[(m, k, n)] / 1e9
                         for m, k, n in weights},
            "by_engine": {e: mix_rate(seconds[e]) for e in engines}}


def roofline(shape: LayerShape, layer: int, gemm_gflops: float, build_tokens_per_s: dict,
             train_tokens_per_s: dict, mean_length: float) -> dict:
    """Achieved GFLOP/s and share of `gemm_gflops` of the build and the training steps.

    Args:
        shape: the model's sizes; layer: K, the layers the build runs and recycling skips.
        build_tokens_per_s: {"onnxruntime": .., "torch": ..} real tokens/s of the lower stack.
        train_tokens_per_s: {"recycled": .., "full": ..} real tokens/s of training steps.
        mean_length: mean real tokens per sequence (the attention term).
    Returns:
        The contract's {"gemm_gflops", "build", "train_recycled", "train_full"} (build is the
        onnxruntime share; the torch one is in "build_by_engine"), plus "achieved_gflops".
    """
    per_layer = shape.layer_flops_per_token(mean_length)
    achieved = {f"build_{engine}": rate * per_layer * layer / 1e9
                for engine, rate in build_tokens_per_s.items()}
    # forward + input gradients (x2) through the layers that run: N - K recycled, N full
    achieved["train_recycled"] = (train_tokens_per_s["recycled"] * 2 * per_layer
                                  * (shape.num_layers - layer) / 1e9)
    achieved["train_full"] = train_tokens_per_s["full"] * 2 * per_layer * shape.num_layers / 1e9
    share = {k: v / gemm_gflops for k, v in achieved.items()}
    return {
        "gemm_gflops": gemm_gflops,
        "build": share["build_onnxruntime"],
        "build_by_engine": {e: share[f"build_{e}"] for e in build_tokens_per_s},
        "train_recycled": share["train_recycled"],
        "train_full": share["train_full"],
        "achieved_gflops": achieved,
        "flops_per_token_per_layer": per_layer,
        "mean_length": mean_length,
    }


def many_models(build_seconds: float, epoch_seconds: dict, epochs_per_task: int,
                task_counts=TASK_COUNTS) -> dict:
    """Speedup of recycling when T task models train over one corpus, the build paid once.

    Full:     T * epochs_per_task * epoch_seconds["full"]
    Recycled: build_seconds + T * epochs_per_task * epoch_seconds["recycled"]
    (both from the measured per-example step times and the timed build; tokenization for
    full is left out, as everywhere in the report, which favours full.)

    Returns {"1": speedup, "5": .., "20": ..}.
    """
    out = {}
    for t in task_counts:
        full = t * epochs_per_task * epoch_seconds["full"]
        recycled = build_seconds + t * epochs_per_task * epoch_seconds["recycled"]
        out[str(t)] = full / recycled
    return out


def build_shares(model_path, layer: int, docs: int = 16, max_length: int = 256,
                 threads: int | None = None) -> dict:
    """The lower-stack build's GFLOP/s, onnxruntime and torch, against the GEMM rate measured
    after each (best kept), on `docs` BBC articles: the build part of the roofline alone,
    without the training steps of bench.report (minutes instead of tens of minutes)."""
    import tempfile
    from pathlib import Path

    from transformers import AutoConfig

    from bench.endtoend import sample_articles
    from export.batching import make_batches
    from export.onnx_export import export_lower
    from export.session import LowerSession
    from export.throughput import TorchLower, tokens_per_second
    from export.tokenize import load_tokenizer, tokenize

    shape = LayerShape.from_config(AutoConfig.from_pretrained(str(model_path)))
    tokenizer = load_tokenizer(model_path)
    encoded = tokenize(sample_articles(docs, 0), tokenizer, max_length=max_length)
    batches = make_batches([len(e) for e in encoded], 4096)
    pad = tokenizer.pad_token_id or 0
    gemms, rates = [measure_gemm_gflops(shape, threads)], {}
    with tempfile.TemporaryDirectory(prefix="erc-roofline-") as tmp:
        export_lower(model_path, layer, Path(tmp) / "onnx")
        runners = {"onnxruntime": lambda: LowerSession(Path(tmp) / "onnx", device="cpu",
                                                       threads=threads),
                   "torch": lambda: TorchLower(model_path, layer, threads=threads)}
        for engine, make in runners.items():
            rates[engine] = tokens_per_second(make(), encoded, batches, pad, repeats=2)
            gemms.append(measure_gemm_gflops(shape, threads))
    mean = sum(map(len, encoded)) / len(encoded)
    ceiling = max(g["gemm_gflops"] for g in gemms)
    achieved = {e: r * shape.layer_flops_per_token(mean) * layer / 1e9 for e, r in rates.items()}
    return {"layer": layer, "shape": dataclasses.asdict(shape), "mean_length": mean,
            "tokens_per_s": rates, "achieved_gflops": achieved,
            "gemm_gflops": ceiling, "gemm_each_measurement": gemms,
            "share": {e: a / ceiling for e, a in achieved.items()}}


def main(argv=None) -> int:
    """python -m bench.roofline --model PATH --layer K: the build's share of the GEMM rate."""
    import json
    from pathlib import Path

    from bench.cli import at_least, run_bench_cli
    from cache_format.cli_errors import OneLineParser
    from export.defaults import default_model_path

    p = OneLineParser(prog="python -m bench.roofline", description=build_shares.__doc__)
    p.add_argument("--model", help="checkpoint folder (default all-MiniLM-L6-v2)")
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--docs", type=at_least(1), default=16)
    p.add_argument("--threads", type=at_least(1))
    args = p.parse_args(argv)

    def body():
        model = Path(args.model) if args.model else default_model_path()
        print(json.dumps(build_shares(model, args.layer, args.docs, threads=args.threads)))

    return run_bench_cli(body)


if __name__ == "__main__":
    import sys

    sys.exit(main())
