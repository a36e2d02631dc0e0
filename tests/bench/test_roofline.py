"""bench.roofline: the FLOP count from a config, the shares, the many-models cost model, and
the GEMM benchmark on a tiny shape (its rate is checked for sense, never for speed)."""
import pytest
from types import SimpleNamespace

from bench.roofline import LayerShape, gemm_shapes, many_models, measure_gemm_gflops, roofline


@pytest.mark.parametrize("config, want", [
    (SimpleNamespace(hidden_size=384, intermediate_size=1536, num_hidden_layers=6),
     LayerShape(384, 1536, 6)),
    (SimpleNamespace(dim=768, hidden_dim=3072, n_layers=6), LayerShape(768, 3072, 6)),
], ids=["bert", "distilbert"])
def test_shape_from_config(config, want):
    assert LayerShape.from_config(config) == want


def test_layer_flops_per_token_by_hand():
    # MiniLM: 8 H^2 + 4 H I + 4 T H with H = 384, I = 1536, T = 100
    assert LayerShape(384, 1536, 6).layer_flops_per_token(100) == (
        8 * 384**2 + 4 * 384 * 1536 + 4 * 100 * 384)
    assert gemm_shapes(LayerShape(384, 1536, 6), tokens=10) == [
        (10, 384, 384), (10, 384, 1536), (10, 1536, 384)]


def test_roofline_shares():
    shape = LayerShape(4, 8, 6)
    per_layer = shape.layer_flops_per_token(2)  # 8*16 + 4*32 + 4*2*4 = 288
    assert per_layer == 288
    r = roofline(shape, 3, gemm_gflops=1.0, build_tokens_per_s={"onnxruntime": 1e6, "torch": 5e5},
                 train_tokens_per_s={"recycled": 1e6, "full": 1e6}, mean_length=2)
    assert r["build"] == pytest.approx(1e6 * 288 * 3 / 1e9)
    assert r["build_by_engine"]["torch"] == pytest.approx(r["build"] / 2)
    assert r["train_recycled"] == pytest.approx(1e6 * 2 * 288 * 3 / 1e9)
    assert r["train_full"] == pytest.approx(2 * r["train_recycled"])  # N layers, not N - K
    assert set(r) >= {"gemm_gflops", "build", "train_recycled", "train_full"}


def test_many_models_pays_the_build_once():
    got = many_models(100.0, {"full": 200.0, "recycled": 100.0}, epochs_per_task=1)
    assert got == {"1": pytest.approx(200 / 200), "5": pytest.approx(1000 / 600),
                   "20": pytest.approx(4000 / 2100)}
    # with more tasks the speedup tends to the per-epoch ratio, from below
    assert got["1"] < got["5"] < got["20"] < 2.0


def test_gemm_rate_is_positive_for_every_shape():
    out = measure_gemm_gflops(LayerShape(16, 32, 2), threads=1)
    assert out["gemm_gflops"] > 0 and len(out["by_shape"]) == 3
    assert all(rate > 0 for rate in out["by_shape"].values())


def test_gemm_ceiling_is_the_faster_engine_per_shape():
    out = measure_gemm_gflops(LayerShape(16, 32, 2), threads=1)
    assert set(out["by_engine"]) == {"torch", "onnxruntime"}
    assert all(rate > 0 for rate in out["by_engine"].values())
    # the per-shape best of two engines is at least as fast as either engine over the mix
    assert out["gemm_gflops"] >= max(out["by_engine"].values()) * (1 - 1e-12)
    only_torch = measure_gemm_gflops(LayerShape(16, 32, 2), threads=1, engines=("torch",))
    assert set(only_torch["by_engine"]) == {"torch"}
