"""runtime.models: the recycled model and the full/frozen model agree, before and after training."""

from __future__ import annotations

import copy

import pytest
import torch

from runtime.adapter_files import load_adapters, save_adapters
from runtime.adapters import AdapterConfig, apply_adapters
from runtime.errors import RuntimeConfigError
from runtime.heads import build_head
from runtime.models import FullModel, RecycledModel
from runtime.upper import full_from_model, upper_from_model
from tiny_encoders import IDS, NUM_LAYERS, make_base, recycled_and_frozen

K = 2
TOL = 1e-4


def _adapt_both(recycled, frozen, kind, tmp_path):
    """Same adapters (random, non-zero weights) on layers K..N-1 of both models; kind
    "bottleneck+input" adds the input adapter on layer K's input states."""
    kind, _, extra = kind.partition("+")
    apply_adapters(recycled, AdapterConfig(kind=kind, r=2, bottleneck_size=4, dropout=0.0,
                                           input_adapter=extra == "input"))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, p in recycled.encoder.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    save_adapters(recycled, tmp_path)
    load_adapters(frozen, tmp_path)


def _close(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b))
    return bool((a - b).abs().max() <= TOL)


@pytest.mark.parametrize("kind", ["lora", "bottleneck", "bottleneck+input", "finetune"])
@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_recycled_equals_full_with_adapters(tmp_path, name, kind):
    recycled, frozen, (hidden, ids, mask) = recycled_and_frozen(name, K)
    _adapt_both(recycled, frozen, kind, tmp_path)
    with torch.no_grad():
        assert _close(recycled(hidden, mask), frozen(ids, mask))


@pytest.mark.parametrize("task, num_labels", [("token-cls", 5), ("qa", 2)], ids=["token-cls", "qa"])
def test_recycled_equals_full_for_other_tasks(tmp_path, task, num_labels):
    recycled, frozen, (hidden, ids, mask) = recycled_and_frozen("deberta-v3", K, task, num_labels)
    _adapt_both(recycled, frozen, "lora", tmp_path)
    with torch.no_grad():
        a, b = recycled(hidden, mask), frozen(ids, mask)
    real = mask.bool()
    if task == "qa":
        assert _close((a[0][real], a[1][real]), (b[0][real], b[1][real]))
    else:
        assert _close(a[real], b[real])


@pytest.mark.parametrize("name", ["bert", "mpnet", "modernbert"], ids=["bert", "mpnet", "modernbert"])
def test_one_training_step_is_the_same_in_both_modes(tmp_path, name):
    # Training from the cache is frozen-mode training: same gradients, same update.
    recycled, frozen, (hidden, ids, mask) = recycled_and_frozen(name, K)
    _adapt_both(recycled, frozen, "bottleneck", tmp_path)
    labels = torch.tensor([0, 2, 1])
    for model, inputs in ((recycled, (hidden, mask)), (frozen, (ids, mask))):
        optimizer = torch.optim.SGD([p for _, p in model.trainable_parameters()], lr=0.5)
        model.loss(model(*inputs), labels).backward()
        optimizer.step()
    with torch.no_grad():
        assert _close(recycled(hidden, mask), frozen(ids, mask))
    assert len(recycled.trainable_parameters()) == len(frozen.trainable_parameters())


def test_frozen_below_freezes_embeddings_and_lower_layers():
    _, frozen, _ = recycled_and_frozen("electra-e16", K)
    assert frozen.adapter_layers() == range(K, NUM_LAYERS)
    apply_adapters(frozen, AdapterConfig(kind="finetune"))
    trainable = {n for n, _ in frozen.trainable_parameters()}
    lower = ("encoder.embeddings.", "encoder.layers.0.", "encoder.layers.1.")
    assert not any(n.startswith(lower) for n in trainable)
    assert any(n.startswith("encoder.layers.2.") for n in trainable)
    assert any(n.startswith("head.") for n in trainable)
    with pytest.raises(RuntimeConfigError, match=r"not all distinct layers of \[2, 3\]"):
        apply_adapters(recycled_and_frozen("bert", K)[1], AdapterConfig(kind="lora"), layers=[0, 1])


def test_frozen_layers_stay_in_eval_mode_while_training():
    # The cache is computed without dropout; frozen mode must see the same lower layers.
    _, frozen, (_, ids, mask) = recycled_and_frozen("bert", K)
    frozen.train()
    assert not frozen.encoder.embeddings.training and not frozen.encoder.layers[K - 1].training
    assert frozen.encoder.layers[K].training and frozen.head.training
    torch.manual_seed(0)
    hidden = frozen.encoder.hidden_states_at(ids, mask, K)
    assert torch.equal(hidden, frozen.encoder.hidden_states_at(ids, mask, K))  # no dropout below K


def test_upper_takes_its_own_dtype():
    recycled, _, (hidden, _, mask) = recycled_and_frozen("bert", K)
    recycled.to(torch.bfloat16)
    with torch.no_grad():
        assert recycled(hidden, mask).dtype == torch.bfloat16  # float32 cache, bf16 model


def test_full_mode_puts_adapters_on_all_layers():
    base = make_base("bert")
    model = FullModel(full_from_model(base), build_head("seq-cls", base.config, 2))
    assert model.frozen_below is None and model.adapter_layers() == range(NUM_LAYERS)
    names = apply_adapters(model, AdapterConfig(kind="lora"))
    assert {n.split(".")[2] for n in names if "lora_" in n} == {"0", "1", "2", "3"}
    assert model.task == "seq-cls"


def test_wrong_parts_are_refused():
    base = make_base("bert")
    full = full_from_model(copy.deepcopy(base))
    head = build_head("seq-cls", base.config, 2)
    with pytest.raises(RuntimeConfigError, match="RecycledModel needs an UpperStack .*got FullEncoder"):
        RecycledModel(full, head)
    with pytest.raises(RuntimeConfigError, match="FullModel needs a FullEncoder .*got UpperStack"):
        FullModel(upper_from_model(base, 1), head)
    with pytest.raises(RuntimeConfigError, match=r"layer K=4 is out of range"):
        FullModel(full, head, frozen_below=NUM_LAYERS)
