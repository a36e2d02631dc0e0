"""The report as a plain-text table, and the per-K speedups that the table, the report's figure
and the fidelity sweep's figure all read from it."""
from __future__ import annotations

import statistics

# Illustrative GPU rate for the bandwidth estimate; labelled as an estimate wherever printed.
GPU_TOKENS_PER_S_ESTIMATE = 200_000


def speedups_by_layer(steps: dict, phase: str = "train", against: str = "paired") -> dict:
    """{K: full / recycled time per example} for `phase` ("train" or "infer") at each K a
    report's `steps` timed. `against="paired"` divides by the full run timed beside that K
    (interleaved step by step, so drift hits both alike); `against="median"` by full's median
    over every K: full is the same model at every K, yet one instance can run 30% slower
    than the next on a quiet machine, and the median keeps that out of one K's ratio."""
    full = {int(k): modes["full"][phase]["per_example"]["total"] for k, modes in steps.items()}
    if against == "median":
        full = dict.fromkeys(full, statistics.median(full.values()))
    elif against != "paired":
        raise ValueError(f"against={against!r}: paired or median")
    return {int(k): full[int(k)] / modes["recycled"][phase]["per_example"]["total"]
            for k, modes in steps.items()}


def format_table(r: dict) -> str:
    pe = r["per_example_seconds"]
    main = r["steps"][str(r["layer"])]
    lines = [
        f"{r['model']}, K={r['layer']} of {r['num_layers']}, {r['articles_timed']} BBC articles, "
        f"{r['device']}, {r['date']}",
        "",
        f"{'mode':22s} {'train ms/ex':>12s} {'infer ms/ex':>12s} {'cache wait (train)':>19s}",
    ]
    for mode in ("full", "frozen", "recycled", "recycled_no_prefetch"):
        lines.append(f"{mode:22s} {pe[mode]['train'] * 1e3:12.2f} {pe[mode]['infer'] * 1e3:12.2f} "
                     f"{main[mode]['train']['io_fraction']:18.1%}")
    lines += [
        "",
        f"train speedup (full / recycled)      {r['train_speedup']:.2f}x",
        f"infer speedup (full / recycled)      {r['infer_speedup']:.2f}x",
        f"frozen / recycled (training)         {r['frozen_speedup']:.2f}x",
        f"cache wait share: train {r['io_fraction_train']:.1%}, infer {r['io_fraction_infer']:.1%}",
        f"cache build, whole corpus            {r['build_seconds_corpus']:.1f} s "
        f"(export {r['build'][str(r['layer'])]['export_seconds']:.1f} s once + encoding)",
        f"saved per training epoch             {r['epoch_saving_seconds']:.1f} s",
        f"break-even                           {r['break_even_epochs']:.2f} epochs",
        "lower stack tokens/s                 onnxruntime {onnxruntime:.0f}, torch {torch:.0f} "
        "({ratio:.2f}x)".format(ratio=r["build_tokens_per_s"]["onnxruntime"]
                                / r["build_tokens_per_s"]["torch"], **r["build_tokens_per_s"]),
        "",
        "bytes per real token   " + "  ".join(f"{c:>6s}" for c in ("none", "lz4", "zstd")),
    ]
    for dtype, by_codec in r["bytes_per_token_by_codec"].items():
        lines.append(f"  {dtype:20s} " + "  ".join(f"{by_codec[c]:6.0f}" for c in ("none", "lz4", "zstd")))
    lines.append("  (lz4 barely compresses dense activations: the size win is int8 and no padding)")
    rate = main["recycled"]["train"]["tokens_per_s"]
    b = r["bytes_per_token"]["int8"]
    lines += [
        "",
        f"read bandwidth needed: recycled training here {rate:.0f} tokens/s x {b:.0f} B = "
        f"{rate * b / 1e6:.2f} MB/s (measured)",
        f"  a GPU at {GPU_TOKENS_PER_S_ESTIMATE:,} tokens/s would need "
        f"{GPU_TOKENS_PER_S_ESTIMATE * b / 1e6:.0f} MB/s (estimate, not measured)",
    ]
    lines += _per_layer_lines(r) + _roofline_lines(r) + _many_models_lines(r)
    if r.get("accuracy"):
        d = r.get("accuracy_details", {})
        lines += ["", f"accuracy, test split ({d.get('articles')} articles, {d.get('epochs')} "
                      f"epoch(s), max length {d.get('max_length')}, {d.get('adapter')})",
                  "                         full   recycled"]
        for task, acc in r["accuracy"].items():
            lines.append(f"  {task:20s} {acc['full']:.4f}  {acc['recycled']:.4f}")
    return "\n".join(lines)


def _per_layer_lines(r: dict) -> list:
    """One line per K timed, so a sweep (--layers) reads without opening the JSON, and full's
    spread over K, which bounds how far one K's ratio can be trusted."""
    steps = r["steps"]
    if len(steps) < 2:
        return []
    train, infer = speedups_by_layer(steps, "train"), speedups_by_layer(steps, "infer")
    lines = ["", "each K timed (training ms per example; speedup = full / recycled)",
             f"  {'K':>3s} {'full':>9s} {'recycled':>9s} {'train':>7s} {'infer':>7s}"]
    full = {}
    for k in sorted(train):
        pe = {m: steps[str(k)][m]["train"]["per_example"]["total"] * 1e3
              for m in ("full", "recycled")}
        full[k] = pe["full"]
        mark = "  (the K above)" if k == r["layer"] else ""
        lines.append(f"  {k:3d} {pe['full']:9.1f} {pe['recycled']:9.1f} "
                     f"{train[k]:6.2f}x {infer[k]:6.2f}x{mark}")
    pooled = speedups_by_layer(steps, "train", against="median")
    low, high = min(full.values()), max(full.values())
    lines += [f"  full is the same model at every K; it ran {low:.1f} to {high:.1f} ms/example "
              f"here ({high / low:.2f}x)",
              "  training speedup against full's median over K: "
              + " / ".join(f"{pooled[k]:.2f}x" for k in sorted(pooled))]
    return lines


def _roofline_lines(r: dict) -> list:
    roof = r.get("roofline")
    if not roof:
        return []
    achieved = roof["achieved_gflops"]
    lines = ["", f"roofline: fp32 GEMM on the model's shapes {roof['gemm_gflops']:.1f} GFLOP/s "
                 f"(measured; FLOPs counted from the config, useful tokens only)"]
    for name, label in (("build_onnxruntime", "build, onnxruntime"), ("build_torch", "build, torch"),
                        ("train_recycled", "training step, recycled"),
                        ("train_full", "training step, full")):
        if name in achieved:
            lines.append(f"  {label:26s} {achieved[name]:7.1f} GFLOP/s = "
                         f"{achieved[name] / roof['gemm_gflops']:6.1%} of GEMM")
    return lines


def _many_models_lines(r: dict) -> list:
    many = r.get("many_models")
    if not many:
        return []
    d = r.get("many_models_details", {})
    head = (f"T task models over one corpus, {d.get('epochs_per_task', '?')} epochs each, "
            f"build counted once: full / recycled")
    counts = sorted(many, key=int)  # JSON's sorted string keys put "20" before "5"
    return ["", head, "  " + "   ".join(f"T={t}: {many[t]:.2f}x" for t in counts)]
