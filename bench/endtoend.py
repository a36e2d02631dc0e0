"""The end-to-end comparison behind `python -m bench.report`: full against recycled on the
same batches in one process, the one-time cache build counted.

What is measured, on the default model and real BBC News articles:
- the cache build (ONNX export + onnxruntime over the articles), and lower-stack throughput of
  onnxruntime against PyTorch eager on the same batches;
- per K in {N/4, N/2, 3N/4} (or those of `ReportConfig.layers`, N/2 always among them): one
  training and one inference pass over the same batches for `full` (all N layers from token
  ids, adapters on all N), `frozen` (all N from token ids, only layers >= K train) and
  `recycled` (layers >= K from the int8 cache, prefetching), each split into cache wait,
  host-to-device copy, forward, backward and optimizer;
- the prefetcher on and off; bytes per real token per dtype and codec; break-even epochs.
"""
from __future__ import annotations

import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import cache_format
from bench.roofline import LayerShape, many_models, measure_gemm_gflops, roofline
from bench.sizes import bytes_per_token
from bench.steps import time_interleaved


CORPUS_ARTICLES = 2225  # BBC News: the corpus a user caches once
TRAIN_ARTICLES = 1780  # its 80% train split: what one training epoch runs over
EPOCHS_PER_TASK = 3  # the many-models figure: runtime.train's default --epochs per task model


@dataclass(frozen=True)
class ReportConfig:
    quick: bool = False  # fewer articles and steps: within five minutes on 2 cores
    model: str | None = None  # checkpoint folder; None: all-MiniLM-L6-v2
    docs: int | None = None  # articles timed; None: 48 quick, 256 otherwise
    max_length: int = 256  # tokens per article (BBC articles average ~500)
    token_budget: int = 2048  # padded tokens per batch, the same for every mode
    adapter: str = "lora"  # lora | bottleneck | finetune: the same kind in full and recycled
    work_dir: str | None = None  # where the caches go; None: a temporary folder
    seed: int = 0
    threads: int | None = None  # torch / onnxruntime threads; None: all cores
    accuracy: bool = True  # also train full and recycled to compare test accuracy
    accuracy_docs: int | None = None  # None: 400 articles with --quick, else all 2,225
    accuracy_epochs: int | None = None  # None: 1 with --quick, else 3
    layers: tuple[int, ...] | str | None = None  # K timed; "all": 1..N-1; None: N/4, N/2, 3N/4

    @property
    def num_docs(self) -> int:
        return self.docs or (48 if self.quick else 256)


def main_layer(num_layers: int) -> int:
    """The K the report's headline figures are for: N/2, rounded down (3 of 6, 6 of 12)."""
    return max(1, num_layers // 2)


def layers_to_sweep(num_layers: int) -> list[int]:
    """K = N/4 and 3N/4 rounded, and `main_layer` (N/2 rounded down), kept in 1..N-1 and
    distinct. The middle one is main_layer's own, never a separately rounded N/2: for odd N,
    round(N/2) and N//2 differ, and the report needs its main K in the sweep."""
    ks = [max(1, min(num_layers - 1, round(num_layers * f))) for f in (0.25, 0.75)]
    return sorted(set(ks) | {main_layer(num_layers)})


def layers_to_time(layers: tuple[int, ...] | str | None, num_layers: int) -> list[int]:
    """The K a report times: `layers_to_sweep`'s three where None, every K = 1 .. N-1 for
    "all" (a K sweep's speedup axis at every point), else the K given; `main_layer` always,
    as the headline figures are its. A K the model has no room for is refused before any
    work: K = N would leave nothing above the cache to train."""
    from bench.cli import BenchArgumentError

    if layers is None:
        return layers_to_sweep(num_layers)
    if layers == "all":
        layers = tuple(range(1, num_layers))
    beyond = [k for k in layers if not 1 <= k < num_layers]
    if beyond:
        raise BenchArgumentError(f"--layers {beyond[0]}: K must be 1 .. {num_layers - 1} for a "
                                 f"{num_layers}-layer model")
    return sorted(set(layers) | {main_layer(num_layers)})


def sample_articles(n: int, seed: int) -> list:
    """n BBC articles drawn with a fixed seed (all topics), as export Records."""
    from export.defaults import default_corpus_records

    records = default_corpus_records()
    pick = np.random.default_rng(seed).choice(len(records), size=min(n, len(records)), replace=False)
    return [records[i] for i in sorted(pick)]


def write_corpus(records, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"id": r.id, "text": r.text}) + "\n")


def build_timed(config: ReportConfig, model_path, corpus: Path, layer: int, out: Path) -> dict:
    """Export then encode, timed apart: export is paid once per model and K, encoding per article."""
    from export.build import BuildConfig, build_cache
    from export.onnx_export import export_lower

    t0 = time.perf_counter()
    export_lower(model_path, layer, out / "onnx")
    t1 = time.perf_counter()
    build_cache(BuildConfig(layer=layer, model=str(model_path), corpus=str(corpus), out=str(out),
                            max_length=config.max_length, progress=False, threads=config.threads))
    t2 = time.perf_counter()
    return {"export_seconds": t1 - t0, "encode_seconds": t2 - t1}


def lower_throughput(model_path, reader, onnx_dir: Path, layer: int, threads) -> dict:
    """Real tokens/s of the lower stack, onnxruntime against PyTorch eager, same batches."""
    from export.batching import make_batches
    from export.session import LowerSession
    from export.throughput import TorchLower, tokens_per_second
    from export.tokenize import Encoded

    encoded = []
    for key in reader.keys():
        ids = reader.token_ids(key).astype(np.int32)
        encoded.append(Encoded(key, ids, np.zeros_like(ids), np.zeros((len(ids), 2), np.int32)))
    batches = make_batches([len(e) for e in encoded], 4096)
    ort = tokens_per_second(LowerSession(onnx_dir, device="cpu", threads=threads), encoded,
                            batches, 0, repeats=2)
    eager = tokens_per_second(TorchLower(model_path, layer, threads=threads), encoded, batches,
                              0, repeats=2)
    return {"onnxruntime": ort, "torch": eager}


def build_mode_model(kind: str, model_path, layer: int, num_labels: int, adapter: str,
                     seed: int):
    """A seq-cls model for `kind` (full | frozen | recycled) with `adapter`, and its AdamW."""
    from runtime.adapters import AdapterConfig, apply_adapters
    from runtime.heads import build_head
    from runtime.models import FullModel, RecycledModel
    from runtime.upper import load_full, load_upper

    torch.manual_seed(seed)
    if kind == "recycled":
        upper = load_upper(model_path, layer)
        model = RecycledModel(upper, build_head("seq-cls", upper, num_labels))
    else:
        full = load_full(model_path)
        model = FullModel(full, build_head("seq-cls", full, num_labels),
                          frozen_below=layer if kind == "frozen" else None)
    apply_adapters(model, AdapterConfig(kind=adapter))
    lr = 5e-5 if adapter == "finetune" else 1e-3
    optimizer = torch.optim.AdamW([p for _, p in model.trainable_parameters()], lr=lr)
    return model, optimizer


def time_modes(config: ReportConfig, model_path, reader, labels: dict, layer: int,
               batches: list) -> dict:
    """{mode: {"train": StepTimes, "infer": StepTimes}}: every mode on the same batches,
    interleaved step by step; recycled also with the prefetcher off."""
    from runtime.batches import CacheBatches, TokenBatches

    num_labels = len(set(labels.values()))
    cached = CacheBatches(reader, labels, "seq-cls")
    token_ids = {k: reader.token_ids(k).astype(np.int64) for k in reader.keys()}
    text = TokenBatches(token_ids, labels, "seq-cls", pad_id=0)
    runs = {}
    for mode, kind, load, prefetch in (("full", "full", text, True),
                                       ("frozen", "frozen", text, True),
                                       ("recycled", "recycled", cached, True),
                                       ("recycled_no_prefetch", "recycled", cached, False)):
        model, optimizer = build_mode_model(kind, model_path, layer, num_labels,
                                            config.adapter, config.seed)
        runs[mode] = (model, optimizer, load, prefetch)
    trained = time_interleaved(runs, batches, train=True)
    inferred = time_interleaved(runs, batches, train=False)
    return {mode: {"train": trained[mode], "infer": inferred[mode]} for mode in runs}


def _steps_summary(times: dict) -> dict:
    return {mode: {phase: {"per_example": t.per_example(), "io_fraction": t.io_fraction,
                           "examples": t.examples, "steps": t.steps, "tokens": t.tokens,
                           "tokens_per_s": t.tokens / t.total if t.total else 0.0}
                   for phase, t in by_phase.items()}
            for mode, by_phase in times.items()}


def run(config: ReportConfig, log=print) -> dict:
    """Measure everything; return the report dict (contract keys at the top level)."""
    from export.defaults import default_model_path
    from runtime.upper import num_layers

    if config.threads:
        torch.set_num_threads(config.threads)
    from export.models import resolve_model

    model_path = resolve_model(config.model) if config.model else default_model_path()
    n_layers = num_layers(model_path)
    main_k = main_layer(n_layers)
    timed = layers_to_time(config.layers, n_layers)
    shape = LayerShape.from_config(_model_config(model_path))
    gemms = []  # measured next to each timed phase: the best is the machine's limit
    records = sample_articles(config.num_docs, config.seed)
    labels = {r.id: sorted({x.label for x in records}).index(r.label) for r in records}
    with tempfile.TemporaryDirectory(prefix="erc-report-") as tmp:
        work = Path(config.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "corpus.jsonl"
        write_corpus(records, corpus)
        per_k, builds = {}, {}
        for k in timed:
            out = _cache_dir(work, k)
            log(f"K={k}: building the int8 cache of {len(records)} articles in {out}")
            builds[k] = build_timed(config, model_path, corpus, k, out)
            reader = cache_format.open(out)
            batches = _batches(reader, config)
            log(f"K={k}: timing full / frozen / recycled on {len(batches)} batches")
            per_k[k] = time_modes(config, model_path, reader, labels, k, batches)
            gemms.append(measure_gemm_gflops(shape, config.threads))
        # main_k is among the K timed (layers_to_time), so its cache is built; measured after the
        # loop so no result depends on the loop having met it.
        log(f"K={main_k}: lower-stack throughput and bytes per token")
        out = _cache_dir(work, main_k)
        reader = cache_format.open(out)
        throughput = lower_throughput(model_path, reader, out / "onnx", main_k, config.threads)
        gemms.append(measure_gemm_gflops(shape, config.threads))
        token_ids = [(key, reader.token_ids(key)) for key in reader.keys()]
        sizes = bytes_per_token(layer_states(model_path, main_k, token_ids), reader.hidden_size)
        gemm = max(gemms, key=lambda g: g["gemm_gflops"])
        gemm["all_gflops"] = [g["gemm_gflops"] for g in gemms]
        accuracy = _accuracy(config, model_path, main_k, work / "accuracy", log)
    report = summarise(config, model_path, n_layers, main_k, len(records), per_k, builds,
                       throughput, sizes, shape=shape, gemm=gemm)
    if accuracy:
        report["accuracy"] = {k: v for k, v in accuracy.items() if k != "details"}
        report["accuracy_details"] = accuracy["details"]
    return report


def _cache_dir(work: Path, layer: int) -> Path:
    """Where the sweep builds the int8 cache of layer K (the main-K phase reopens it)."""
    return work / f"L{layer}-int8"


def _accuracy(config: ReportConfig, model_path, layer: int, work: Path, log):
    if not config.accuracy:
        return None
    from bench.accuracy import bbc_accuracy

    docs = config.accuracy_docs or (400 if config.quick else None)
    epochs = config.accuracy_epochs or (1 if config.quick else 3)
    # Quick mode halves the length: the comparison, not the absolute figure, is the point.
    return bbc_accuracy(work, model_path=model_path, layer=layer, docs=docs, epochs=epochs,
                        max_length=128 if config.quick else config.max_length,
                        adapter=config.adapter, seed=config.seed, log=log)


def _batches(reader, config: ReportConfig) -> list:
    from runtime.loader import BatchPlan, plan_cache_batches

    plan = BatchPlan(token_budget=config.token_budget, max_batch_size=64)
    return plan_cache_batches(reader, reader.keys(), plan, shuffle=True, seed=config.seed)


def layer_states(model_path, layer: int, keyed_ids: list) -> list:
    """[(key, token_ids, float32 [T, H])]: unquantised layer-K states of [(key, token_ids)],
    one record at a time (no padding), through PyTorch eager."""
    from export.throughput import TorchLower

    lower = TorchLower(model_path, layer)
    out = []
    for key, ids in keyed_ids:
        ids64 = ids.astype(np.int64)[None, :]
        out.append((key, ids, lower.run(ids64, np.ones_like(ids64))[0]))
    return out


def _model_config(model_path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_path))


def summarise(config, model_path, n_layers, main_k, num_docs, per_k, builds, throughput,
              sizes, *, shape: LayerShape | None = None, gemm: dict | None = None) -> dict:
    """The report dict: contract keys first, then the details they come from. `roofline` is
    there when `shape` and `gemm` (measure_gemm_gflops's result) are given."""
    steps = {k: _steps_summary(v) for k, v in per_k.items()}
    main = steps[main_k]
    pe = {mode: {ph: main[mode][ph]["per_example"]["total"] for ph in ("train", "infer")}
          for mode in main}
    build = builds[main_k]
    encode_per_example = build["encode_seconds"] / num_docs
    saved_per_example = pe["full"]["train"] - pe["recycled"]["train"]
    # The whole corpus is cached once (export + every article); an epoch trains on its train
    # split. Break-even: epochs whose savings pay for that build.
    build_cost = build["export_seconds"] + encode_per_example * CORPUS_ARTICLES
    epoch_saving = saved_per_example * TRAIN_ARTICLES
    epoch_seconds = {m: pe[m]["train"] * TRAIN_ARTICLES for m in ("full", "recycled")}
    extra = {}
    if shape is not None and gemm is not None:
        extra["roofline"] = _roofline_summary(shape, main_k, gemm, throughput, main["recycled"],
                                              main["full"])
    return {
        "train_speedup": pe["full"]["train"] / pe["recycled"]["train"],
        "infer_speedup": pe["full"]["infer"] / pe["recycled"]["infer"],
        "frozen_speedup": pe["frozen"]["train"] / pe["recycled"]["train"],
        "io_fraction_train": main["recycled"]["train"]["io_fraction"],
        "io_fraction_infer": main["recycled"]["infer"]["io_fraction"],
        "bytes_per_token": {d: sizes[d]["lz4"] for d in sizes},
        "bytes_per_token_by_codec": sizes,
        "build_tokens_per_s": throughput,
        "break_even_epochs": build_cost / epoch_saving if epoch_saving > 0 else float("inf"),
        "build_seconds_corpus": build_cost,
        "epoch_saving_seconds": epoch_saving,
        "many_models": many_models(build_cost, epoch_seconds, EPOCHS_PER_TASK),
        "many_models_details": {"epochs_per_task": EPOCHS_PER_TASK,
                                "epoch_seconds": epoch_seconds, "build_seconds": build_cost},
        **extra,
        "model": _model_name(config, model_path),
        "layer": main_k,
        "num_layers": n_layers,
        "device": _device_name(),
        "date": time.strftime("%Y-%m-%d"),
        "config": asdict(config),
        "articles_timed": num_docs,
        "build": {str(k): v for k, v in builds.items()},
        "per_example_seconds": pe,
        "steps": {str(k): v for k, v in steps.items()},
    }


def _roofline_summary(shape, main_k, gemm: dict, throughput, recycled: dict, full: dict) -> dict:
    """bench.roofline's shares at main K, with the GEMM measurements they are relative to."""
    train = recycled["train"]
    summary = roofline(
        shape, main_k, gemm["gemm_gflops"], throughput,
        {"recycled": train["tokens_per_s"], "full": full["train"]["tokens_per_s"]},
        mean_length=train["tokens"] / max(train["examples"], 1))
    summary["gemm_by_shape"] = gemm["by_shape"]
    summary["gemm_by_engine"] = gemm.get("by_engine", {})
    summary["gemm_gflops_each_measurement"] = gemm.get("all_gflops", [])
    return summary


def _model_name(config: ReportConfig, model_path) -> str:
    from export.defaults import DEFAULT_MODEL_NAME

    from export.models import model_name

    return DEFAULT_MODEL_NAME if config.model is None else model_name(model_path)


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    from export.cpu import cpu_description

    cpu = cpu_description()["model_name"] or platform.processor() or platform.machine()
    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"
