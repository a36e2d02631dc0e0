"""bench's pieces on tiny inputs: K sweep, interleaved step timing, sizes, table, plot."""
import json

import numpy as np
import pytest
import torch

from bench.endtoend import layers_to_sweep, layers_to_time, main_layer
from bench.sizes import bytes_per_token
from bench.steps import PHASES, time_interleaved


@pytest.mark.parametrize("n,expected", [(6, [2, 3, 4]), (12, [3, 6, 9]), (2, [1]), (3, [1, 2]),
                                        (7, [2, 3, 5]), (11, [3, 5, 8]), (15, [4, 7, 11])],
                         ids=["minilm", "base", "two", "three", "seven", "eleven", "fifteen"])
def test_layers_to_sweep(n, expected):
    assert layers_to_sweep(n) == expected


def test_main_layer_is_always_swept():
    # bench.endtoend.run sets its K = N/2 results inside the sweep loop: for N = 7, 11, 15 a
    # separately rounded N/2 (round(3.5) = 4) missed N // 2 and the report crashed.
    for n in range(2, 49):
        assert main_layer(n) in layers_to_sweep(n), n


def test_layers_to_time_adds_the_headline_k_and_covers_all():
    assert layers_to_time(None, 12) == [3, 6, 9]
    assert layers_to_time("all", 12) == list(range(1, 12))
    assert layers_to_time((1, 2), 6) == [1, 2, 3]  # N/2: the report's headline figures
    assert layers_to_time((3,), 6) == [3]


def test_layers_to_time_refuses_k_without_layers_above():
    from bench.cli import BenchArgumentError

    for bad in [(12,), (3, 13)]:
        with pytest.raises(BenchArgumentError, match=f"--layers {bad[-1]}: K must be 1 .. 11"):
            layers_to_time(bad, 12)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, inputs, attention_mask):
        return self.linear(inputs.mean(1))

    def loss(self, logits, labels):
        return torch.nn.functional.cross_entropy(logits, labels)


def _load(keys):
    return {"inputs": torch.ones(len(keys), 5, 4), "attention_mask": torch.ones(len(keys), 5),
            "labels": torch.zeros(len(keys), dtype=torch.long)}


def test_interleaved_timing_counts_the_same_batches_for_every_mode():
    runs = {}
    for mode, prefetch in (("a", True), ("b", False)):
        model = _Tiny()
        runs[mode] = (model, torch.optim.SGD(model.parameters(), lr=0.1), _load, prefetch)
    before = runs["a"][0].linear.weight.detach().clone()
    batches = [["k1", "k2"], ["k3"], ["k4", "k5", "k6"]]
    times = time_interleaved(runs, batches, train=True, warmup=1)
    for t in times.values():
        assert (t.steps, t.examples, t.tokens) == (2, 4, 20)
        assert set(t.seconds) == set(PHASES)
        assert t.per_example()["total"] == pytest.approx(t.total / 4)
    assert not torch.equal(before, runs["a"][0].linear.weight)  # the optimizer stepped
    trained = runs["b"][0].linear.weight.detach().clone()
    inferred = time_interleaved(runs, batches, train=False, warmup=0)
    assert inferred["b"].steps == 3 and inferred["b"].examples == 6
    assert torch.equal(trained, runs["b"][0].linear.weight)  # inference never steps


def test_bytes_per_token_orders_dtypes():
    rng = np.random.default_rng(0)
    states = [(f"k{i}", np.arange(40), rng.standard_normal((40, 64)).astype(np.float32))
              for i in range(10)]
    sizes = bytes_per_token(states, 64)
    assert sizes["int8"]["lz4"] < sizes["fp16"]["lz4"] < sizes["fp32"]["lz4"]
    assert 64 + 8 <= sizes["int8"]["none"] <= 1.3 * 64  # values, id, scale, index share
    assert sizes["fp32"]["none"] >= 4 * 64 + 4


def _fake_report():
    step = {ph: 0.01 for ph in PHASES}
    step["total"] = 0.05
    entry = {"per_example": step, "io_fraction": 0.01, "examples": 8, "steps": 2,
             "tokens": 800, "tokens_per_s": 1000.0}
    modes = {m: {"train": entry, "infer": entry}
             for m in ("full", "frozen", "recycled", "recycled_no_prefetch")}
    sizes = {d: {c: 100.0 for c in ("none", "lz4", "zstd")} for d in ("fp32", "fp16", "int8")}
    return {
        "train_speedup": 2.0, "infer_speedup": 1.9, "frozen_speedup": 1.3,
        "io_fraction_train": 0.01, "io_fraction_infer": 0.02,
        "bytes_per_token": {d: 100.0 for d in sizes}, "bytes_per_token_by_codec": sizes,
        "build_tokens_per_s": {"onnxruntime": 3000.0, "torch": 2000.0},
        "break_even_epochs": 0.3, "build_seconds_corpus": 10.0, "epoch_saving_seconds": 30.0,
        "model": "m", "layer": 3, "num_layers": 6, "device": "cpu", "date": "2026-11-22",
        "articles_timed": 8, "build": {"3": {"export_seconds": 1.0, "encode_seconds": 2.0}},
        "per_example_seconds": {m: {"train": 0.05, "infer": 0.05} for m in modes},
        "steps": {str(k): modes for k in (2, 3, 4)},
        "accuracy": {"bbc-news": {"full": 0.97, "recycled": 0.965}},
        "roofline": {"gemm_gflops": 100.0, "build": 0.5, "train_recycled": 0.25,
                     "train_full": 0.2, "achieved_gflops": {"build_onnxruntime": 50.0,
                                                            "build_torch": 40.0,
                                                            "train_recycled": 25.0,
                                                            "train_full": 20.0}},
        "many_models": {"1": 1.5, "5": 1.9, "20": 1.98},
        "many_models_details": {"epochs_per_task": 3, "build_seconds": 60.0,
                                "epoch_seconds": {"full": 240.0, "recycled": 120.0}},
    }


def test_table_and_plot(tmp_path):
    from bench.plot import draw
    from bench.table import format_table

    report = _fake_report()
    text = format_table(report)
    assert "train speedup (full / recycled)      2.00x" in text
    assert "break-even                           0.30 epochs" in text
    assert "(1.50x)" in text and "bbc-news" in text
    assert "build, onnxruntime            50.0 GFLOP/s =  50.0% of GEMM" in text
    assert "T=1: 1.50x   T=5: 1.90x   T=20: 1.98x" in text
    json.dumps(report)  # the report is JSON-serialisable
    draw(report, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _timed(modes: dict, full_ms: float, recycled_ms: float) -> dict:
    """`modes` (one K of a report's `steps`) with full and recycled taking these total ms per
    example in training, and half that in inference."""
    out = json.loads(json.dumps(modes))
    for mode, ms in (("full", full_ms), ("recycled", recycled_ms)):
        out[mode]["train"]["per_example"]["total"] = ms / 1e3
        out[mode]["infer"]["per_example"]["total"] = ms / 2e3
    return out


def test_table_lists_every_k_timed_in_order_after_a_json_round_trip():
    from bench.table import format_table, speedups_by_layer

    report = _fake_report()
    timed = {2: (300.0, 200.0), 3: (300.0, 150.0), 10: (300.0, 20.0)}
    report["steps"] = {str(k): _timed(report["steps"]["3"], *ms) for k, ms in timed.items()}
    report = json.loads(json.dumps(report, sort_keys=True))  # as --json writes it: "10" < "2"
    # ms / 1e3 rounds each side once and the ratio once: at most 3 half-ulps relative
    exact = pytest.approx({2: 1.5, 3: 2.0, 10: 15.0}, rel=3 * 2.0 ** -53, abs=0)
    assert speedups_by_layer(report["steps"], "train") == exact
    lines = format_table(report).splitlines()
    start = lines.index("each K timed (training ms per example; speedup = full / recycled)")
    assert [line.split() for line in lines[start + 2:start + 5]] == [
        ["2", "300.0", "200.0", "1.50x", "1.50x"],
        ["3", "300.0", "150.0", "2.00x", "2.00x", "(the", "K", "above)"],
        ["10", "300.0", "20.0", "15.00x", "15.00x"]]
    assert "  T=1: 1.50x   T=5: 1.90x   T=20: 1.98x" in lines  # not "20" before "5"


def test_median_speedups_divide_by_full_median_over_k_and_the_table_shows_the_spread():
    from bench.table import format_table, speedups_by_layer

    report = _fake_report()
    timed = {2: (300.0, 200.0), 3: (400.0, 100.0), 10: (200.0, 20.0)}
    report["steps"] = {str(k): _timed(report["steps"]["3"], *ms) for k, ms in timed.items()}
    # each side rounds once (ms / 1e3) and the ratio once: at most 3 half-ulps relative
    close = dict(rel=3 * 2.0 ** -53, abs=0)
    assert speedups_by_layer(report["steps"], "train") == pytest.approx(
        {2: 1.5, 3: 4.0, 10: 10.0}, **close)
    assert speedups_by_layer(report["steps"], "train", against="median") == pytest.approx(
        {2: 1.5, 3: 3.0, 10: 15.0}, **close)
    lines = format_table(report).splitlines()
    assert ("  full is the same model at every K; it ran 200.0 to 400.0 ms/example here (2.00x)"
            in lines)
    assert "  training speedup against full's median over K: 1.50x / 3.00x / 15.00x" in lines
    with pytest.raises(ValueError, match="paired or median"):
        speedups_by_layer(report["steps"], "train", against="mean")


def test_table_has_no_per_k_section_for_one_k():
    from bench.table import format_table

    report = _fake_report()
    report["steps"] = {"3": report["steps"]["3"]}
    assert "each K timed" not in format_table(report)


def test_summarise_adds_roofline_and_many_models():
    from bench.endtoend import EPOCHS_PER_TASK, ReportConfig, TRAIN_ARTICLES, summarise
    from bench.roofline import LayerShape
    from bench.steps import StepTimes

    def times(seconds_per_example):
        t = StepTimes(steps=2, examples=10, tokens=1000)
        t.seconds["forward"] = seconds_per_example * 10
        return t

    modes = {"full": 0.2, "frozen": 0.15, "recycled": 0.1, "recycled_no_prefetch": 0.1}
    per_k = {k: {m: {"train": times(s), "infer": times(s / 2)} for m, s in modes.items()}
             for k in (2, 3, 4)}
    builds = {k: {"export_seconds": 1.0, "encode_seconds": 4.0} for k in (2, 3, 4)}
    sizes = {d: {c: 100.0 for c in ("none", "lz4", "zstd")} for d in ("fp32", "fp16", "int8")}
    report = summarise(ReportConfig(), "m", 6, 3, 8, per_k, builds,
                       {"onnxruntime": 3000.0, "torch": 2000.0}, sizes,
                       shape=LayerShape(384, 1536, 6), gemm={"gemm_gflops": 100.0, "by_shape": {}})
    build = 1.0 + 4.0 / 8 * 2225
    full, rec = 0.2 * TRAIN_ARTICLES * EPOCHS_PER_TASK, 0.1 * TRAIN_ARTICLES * EPOCHS_PER_TASK
    assert report["many_models"]["5"] == pytest.approx(5 * full / (build + 5 * rec))
    assert report["roofline"]["mean_length"] == 100
    # recycled: 1000 tokens in 1 s through 3 layers, forward and input gradients
    per_layer = LayerShape(384, 1536, 6).layer_flops_per_token(100)
    assert report["roofline"]["train_recycled"] == pytest.approx(1000 * 2 * 3 * per_layer / 100e9)
    json.dumps(report)


@pytest.mark.parametrize("argv, message", [
    (["--work-dir", "{file}"], "error: --work-dir {file}: is a file; pass a folder"),
    (["--json", "{tmp}/no/such/r.json"], "error: --json {tmp}/no/such/r.json: {tmp}/no/such is "
                                         "not a folder this user can write to"),
    (["--plot", "{tmp}"], "error: --plot {tmp}: is a folder; pass a file name"),
    (["--no-accuracy", "--accuracy-epochs", "3"], "error: --accuracy-epochs sets the accuracy "
                                                  "comparison, which --no-accuracy skips; drop "
                                                  "one of them"),
    (["--accuracy-docs", "100", "--no-accuracy"], "error: --accuracy-docs sets the accuracy "
                                                  "comparison, which --no-accuracy skips; drop "
                                                  "one of them"),
])
def test_report_refuses_bad_options_before_timing_anything(argv, message, tmp_path, capsys,
                                                           monkeypatch):
    import bench.endtoend
    from bench import report

    monkeypatch.setattr(bench.endtoend, "run", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "f").write_text("x")
    fill = {"tmp": str(tmp_path), "file": str(tmp_path / "f")}
    assert report.main([a.format(**fill) for a in argv]) == 2
    assert capsys.readouterr().err == message.format(**fill) + "\n"


def test_report_json_is_written_whole_under_its_name(tmp_path, monkeypatch):
    import bench.endtoend
    import bench.table
    from bench import report

    monkeypatch.setattr(bench.endtoend, "run", lambda *a, **k: {"speedup": 2.0})
    monkeypatch.setattr(bench.table, "format_table", lambda r: "table")
    assert report.main(["--no-accuracy", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == {"speedup": 2.0}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no .tmp left behind
