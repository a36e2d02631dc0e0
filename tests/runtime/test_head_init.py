"""runtime.head_init: `--head-init probe` fits the head on the features it will see (LP-FT)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.probe import features as probe_features, final_states
from runtime.batches import batch_source
from runtime.errors import RuntimeConfigError
from runtime.head_init import _load_unstandardised, features, fit_head, fit_linear
from runtime.inputs import open_cache
from runtime.labels import load_labelled
from runtime.config import labels_config
from runtime.models import build_model
from runtime.trainer import TrainConfig, train
from runtime.upper import load_upper


def _config(tiny_task, tmp_path, **kw):
    base = dict(cache=tiny_task["cache"], labels=tiny_task["seq_labels"], task="seq-cls",
                out=str(tmp_path / "run"), epochs=2, lr=1e-2, token_budget=256,
                max_batch_size=8, pooling="mean", head_init="probe", adapter="none")
    base.update(kw)
    return TrainConfig(**base)


def _built(config):
    reader = open_cache(config.cache)
    data = load_labelled(labels_config(config), reader)
    built = build_model(config, reader.manifest, data.label_names)
    return reader, data, built, batch_source(config, reader, data, built.model_path)


def test_folding_the_standardisation_keeps_the_map():
    # float64 throughout: each logit is a sum of H = 16 products of terms below ~10 in size, so
    # the two evaluation orders differ by at most about 16 * 10 * 2**-52 ~ 4e-14 per logit.
    torch.manual_seed(0)
    x = torch.randn(50, 16, dtype=torch.float64) * 3 + 2
    mean, std = x.mean(0), x.std(0) + 1e-6
    fitted = torch.nn.Linear(16, 3).double()
    raw = torch.nn.Linear(16, 3).double()
    _load_unstandardised(raw, fitted, mean, std)
    with torch.no_grad():
        assert torch.allclose(raw(x), fitted((x - mean) / std), rtol=0, atol=1e-12)


def test_fit_linear_reaches_the_penalised_optimum():
    # At the optimum of the smooth convex objective the gradient vanishes; L-BFGS stops when
    # it is below its tolerance (1e-7 on the largest entry), far under what we check.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 5, generator=gen)
    y = (x[:, 0] + 0.5 * torch.randn(200, generator=gen) > 0).long()
    weights = torch.tensor([0.7, 1.4])
    linear = fit_linear(x, y, 2, l2=1e-2, weights=weights)
    loss = F.cross_entropy(linear(x), y, weight=weights) + 1e-2 * linear.weight.pow(2).sum()
    grads = torch.autograd.grad(loss, list(linear.parameters()))
    assert max(g.abs().max().item() for g in grads) < 1e-4
    assert ((linear(x).argmax(-1) == y).float().mean()) > 0.75  # it learnt the first feature


def test_features_are_what_the_bench_probe_reads(tiny_task, tmp_path):
    # The run's batched, padded path and the bench's record-by-record one must give the same
    # mean-pooled final states: fp32 attention over padding is masked, so they differ only by
    # summation order (~1e-6 on states of size ~1).
    config = _config(tiny_task, tmp_path)
    reader, data, built, source = _built(config)
    train_split = data.split("train")
    x, y = features(config, built, source, reader, train_split)
    upper = load_upper(built.model_path, layer=int(reader.manifest["layer"])).eval()
    states = final_states(reader, upper, [e.key for e in train_split])
    x_bench, y_bench = probe_features("seq-cls", train_split, states)
    assert np.array_equal(y.numpy(), y_bench)
    assert np.allclose(x.numpy(), x_bench, rtol=0, atol=1e-5)


def test_fit_head_writes_a_head_that_beats_the_random_one(tiny_task, tmp_path):
    config = _config(tiny_task, tmp_path)
    reader, data, built, source = _built(config)
    x, y = features(config, built, source, reader, data.split("train"))
    before = F.cross_entropy(built.head.classifier(x), y).item()
    fitted = fit_head(config, built, source, reader, data, None)
    with torch.no_grad():
        logits = built.head.classifier(x)
    assert F.cross_entropy(logits, y).item() < before
    assert (logits.argmax(-1) == y).float().mean().item() >= 0.9  # the topic is the first word
    assert fitted["train_examples"] == len(y) and fitted["l2"] in (1e-4, 1e-3, 1e-2, 1e-1)


def test_probe_init_trains_token_cls(tiny_task, tmp_path, capsys):
    metrics = train(_config(tiny_task, tmp_path, labels=tiny_task["tok_labels"],
                            task="token-cls", lr=3e-2, epochs=1, patience=1))
    assert "head fitted on frozen features" in capsys.readouterr().out
    assert metrics["f1"] > 0.4  # one epoch from a fitted head: names and places are fixed words


def test_a_head_it_cannot_fit_is_refused_before_the_run_folder(tiny_task, tmp_path):
    config = _config(tiny_task, tmp_path, pooling="pooler")  # BERT's dense+tanh pooler head
    with pytest.raises(RuntimeConfigError, match="--pooling mean or cls"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_an_unknown_head_init_is_refused(tiny_task, tmp_path):
    with pytest.raises(RuntimeConfigError, match="head_init 'zero' is not one of random, probe"):
        _config(tiny_task, tmp_path, head_init="zero")
