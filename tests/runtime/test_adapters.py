"""runtime.adapters: LoRA / bottleneck / fine-tuning on chosen layers, frozen rest, save/load."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from runtime.adapters import (
    AdapterConfig,
    apply_adapters,
    merge_adapters,
    unmerge_adapters,
)
from runtime.adapter_files import load_adapters, save_adapters
from runtime.errors import RuntimeConfigError
from runtime.heads import build_head
from runtime.models import RecycledModel
from runtime.upper import full_from_model, upper_from_model
from tiny_encoders import IDS, batch, make_base

K = 2
KINDS = ["lora", "bottleneck", "finetune", "none"]
SAVE_IDS = ["bert", "deberta-v3", "modernbert"]


def _recycled(name, kind=None, layers=None, seed=0):
    """(model, hidden of layer K, mask) for a tiny encoder of family `name`."""
    base = make_base(name, seed=seed)
    ids, mask = batch(base.config)
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[K]
    upper = upper_from_model(base, K)
    torch.manual_seed(seed + 1)
    model = RecycledModel(upper, build_head("seq-cls", upper, 3)).eval()
    if kind is not None:
        torch.manual_seed(seed + 2)
        apply_adapters(model, AdapterConfig(kind=kind, r=2, bottleneck_size=4, dropout=0.0), layers)
    return model, hidden, mask


def _perturb_adapters(model):
    """Random adapter weights (LoRA B and bottleneck up start at zero, which hides bugs)."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def _is_adapter(name: str) -> bool:
    return "lora_" in name or ".adapter_" in name


@pytest.mark.parametrize("kind", ["lora", "bottleneck"], ids=["lora", "bottleneck"])
@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_adapters_start_equal_and_train_only_themselves(name, kind):
    plain, hidden, mask = _recycled(name)
    model, _, _ = _recycled(name, kind)
    with torch.no_grad():
        assert torch.equal(model(hidden, mask), plain(hidden, mask))  # zero-init: same start
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(_is_adapter(n) or n.startswith("head.") for n in trainable)
    assert any(_is_adapter(n) for n in trainable) and any(n.startswith("head.") for n in trainable)
    assert [n for n, _ in model.trainable_parameters()] == trainable

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for _, p in model.trainable_parameters()], lr=0.5)
    model.loss(model(hidden, mask), torch.tensor([0, 1, 2])).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(trainable)
    assert any(_is_adapter(n) for n in changed)
    with torch.no_grad():
        assert not torch.allclose(model.encoder(hidden, mask), plain.encoder(hidden, mask))


def test_finetune_and_none_choose_what_trains():
    model, _, _ = _recycled("bert", "finetune", layers=[3])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.layers.1.") for n in trainable)  # absolute layer 3
    assert not any(n.startswith("encoder.layers.0.") for n in trainable)
    model, _, _ = _recycled("bert", "none")
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"head"}


def test_lora_goes_only_on_listed_layers_and_projections():
    model, _, _ = _recycled("distilbert", "lora", layers=[3])
    lora = sorted({n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if "lora_" in n})
    assert lora == ["encoder.layers.1.attention.q_lin", "encoder.layers.1.attention.v_lin"]


@pytest.mark.parametrize(
    "layers, message",
    [([1], "adapter layers [1] are not all distinct layers of [2, 3]"),
     ([2, 2], "adapter layers [2, 2] are not all distinct layers of [2, 3]")],
    ids=["below-K", "repeated"],
)
def test_bad_layers(layers, message):
    model, _, _ = _recycled("bert")
    with pytest.raises(RuntimeConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_adapters(model, AdapterConfig(kind="lora"), layers=layers)


def test_adapters_apply_once():
    model, _, _ = _recycled("bert", "lora")
    with pytest.raises(RuntimeConfigError, match="already has adapters"):
        apply_adapters(model, AdapterConfig(kind="bottleneck"))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"kind": "prefix"},
      "adapter kind 'prefix' is unknown; expected one of ['lora', 'bottleneck', 'finetune', 'none']"),
     ({"r": 0}, "adapter r=0; expected a positive integer"),
     ({"dropout": 1.0}, "adapter dropout=1.0; expected 0 <= dropout < 1"),
     ({"activation": "swish"},
      "adapter activation 'swish' is unknown; expected one of ['gelu', 'relu', 'silu', 'tanh']"),
     ({"kind": "finetune", "input_adapter": True},
      "an input adapter goes with kind 'lora' or 'bottleneck', not 'finetune'"),
     ({"kind": "bottleneck", "input_adapter": 1}, "adapter input_adapter=1; expected true or false"),
     ({"kind": "bottleneck", "input_adapter": True, "input_size": 0},
      "adapter input_size=0; expected a positive integer"),
     ({"kind": "bottleneck", "input_size": 16},
      "adapter input_size is the input adapter's width; it needs input_adapter")],
    ids=["kind", "rank", "dropout", "activation", "input-with-finetune", "input-not-bool",
         "input-size-zero", "input-size-without-input"],
)
def test_adapter_config_is_checked(kwargs, message):
    with pytest.raises(RuntimeConfigError) as err:
        AdapterConfig(**kwargs)
    assert str(err.value) == message


def test_adapter_config_is_frozen_and_round_trips():
    config = AdapterConfig(kind="bottleneck", bottleneck_size=16)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.r = 4
    assert AdapterConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
@pytest.mark.parametrize("name", SAVE_IDS, ids=SAVE_IDS)
def test_save_load_round_trip(tmp_path, name, kind):
    model, hidden, mask = _recycled(name, kind)
    _perturb_adapters(model)
    save_adapters(model, tmp_path)
    fresh, _, _ = _recycled(name)  # same base weights, no adapters yet
    fresh.head.load_state_dict(model.head.state_dict())
    assert load_adapters(fresh, tmp_path) == model.encoder.adapter_config
    with torch.no_grad():
        assert torch.equal(fresh(hidden, mask), model(hidden, mask))
    meta = json.loads((tmp_path / "recycling_adapters.json").read_text())
    assert meta["layers"] == [2, 3] and meta["adapter"]["kind"] == kind
    assert (tmp_path / "adapter_config.json").exists() == (kind == "lora")


@pytest.mark.parametrize("name", ["bert", "distilbert", "mpnet", "modernbert"])
def test_lora_files_load_with_peft_on_the_transformers_model(tmp_path, name):
    """The saved LoRA is peft's format for AutoModel: PeftModel gives the same outputs."""
    from peft import PeftModel

    model, _, _ = _recycled(name, "lora")
    _perturb_adapters(model)
    save_adapters(model, tmp_path)
    base = make_base(name)
    ids, mask = batch(base.config)
    full = full_from_model(copy.deepcopy(base))
    plain = copy.deepcopy(base).eval()
    load_adapters(full, tmp_path)
    peft_model = PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        ref = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = full.eval()(ids, mask)
        unadapted = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - ref)[mask.bool()].abs().max() <= 1e-5
    assert (ours - unadapted)[mask.bool()].abs().max() > 1e-3  # the adapters did something


def test_merge_and_unmerge_are_symmetric():
    model, hidden, mask = _recycled("deberta-v3", "lora")
    _perturb_adapters(model)
    with torch.no_grad():
        before = model(hidden, mask)
        assert merge_adapters(model) == 4  # query and value of layers 2 and 3
        merged = model(hidden, mask)
        assert merge_adapters(model) == 0  # already merged
        assert unmerge_adapters(model) == 4
        after = model(hidden, mask)
    assert (merged - before).abs().max() <= 1e-5 and (after - before).abs().max() <= 1e-5
    plain, _, _ = _recycled("deberta-v3")
    with torch.no_grad():
        assert (plain(hidden, mask) - before).abs().max() > 1e-3  # the merge had work to do


def test_load_refuses_other_model(tmp_path):
    model, _, _ = _recycled("bert", "lora")
    save_adapters(model, tmp_path)
    other, _, _ = _recycled("roberta")
    with pytest.raises(RuntimeConfigError, match="were trained on a bert with 4 layers, not this roberta"):
        load_adapters(other, tmp_path)
    with pytest.raises(RuntimeConfigError, match="cannot read .*recycling_adapters.json"):
        load_adapters(other, tmp_path / "missing")


INPUT = AdapterConfig(kind="bottleneck", bottleneck_size=4, dropout=0.0, input_adapter=True)


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_input_adapter_adapts_exactly_the_cached_states(name, kind):
    """Recycled: the input adapter maps layer K's input h to h + up(act(down(h))), then the
    upper layers run as they would on that input; it starts as identity and trains."""
    plain, hidden, mask = _recycled(name, kind)
    model, _, _ = _recycled(name)
    torch.manual_seed(2)
    apply_adapters(model, dataclasses.replace(INPUT, kind=kind, r=2))
    with torch.no_grad():
        assert torch.equal(model(hidden, mask), plain(hidden, mask))  # zero-init: same start
    _perturb_adapters(model)
    adapter = model.encoder.layers[0].input_adapter
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"encoder.layers.0.input_adapter.adapter_down.weight",
            "encoder.layers.0.input_adapter.adapter_up.weight"} <= trainable
    without = copy.deepcopy(model)
    without.encoder.layers[0]._forward_pre_hooks.clear()  # the same weights, no input adapter
    with torch.no_grad():
        moved = adapter(hidden)
        assert not torch.allclose(moved, hidden)
        assert torch.equal(model.encoder(hidden, mask), without.encoder(moved, mask))


@pytest.mark.parametrize("kind", ["lora", "bottleneck"])
def test_input_adapter_takes_its_own_width(kind):
    model, _, _ = _recycled("bert")
    apply_adapters(model, dataclasses.replace(INPUT, kind=kind, input_size=12))
    adapter = model.encoder.layers[0].input_adapter
    assert adapter.adapter_down.weight.shape == (12, adapter.adapter_up.weight.shape[0])
    if kind == "bottleneck":  # the layers' adapters keep bottleneck_size
        widths = {m.adapter_down.out_features for n, m in model.named_modules()
                  if hasattr(m, "adapter_down") and "input_adapter" not in n}
        assert widths == {INPUT.bottleneck_size}


def test_input_adapter_sits_on_the_lowest_adapted_layer():
    model, _, _ = _recycled("bert")
    apply_adapters(model, INPUT, layers=[3])  # absolute layer 3 = upper layer 1
    assert hasattr(model.encoder.layers[1], "input_adapter")
    assert not hasattr(model.encoder.layers[0], "input_adapter")
    base = make_base("bert")
    full = full_from_model(base)
    apply_adapters(full, INPUT)  # every layer adapted: the embeddings' output goes through it
    assert [hasattr(layer, "input_adapter") for layer in full.layers] == [True] + [False] * 3


@pytest.mark.parametrize("name", SAVE_IDS, ids=SAVE_IDS)
def test_input_adapter_saves_and_loads(tmp_path, name):
    model, hidden, mask = _recycled(name)
    torch.manual_seed(2)
    config = dataclasses.replace(INPUT, input_size=6)  # its own width comes back too
    apply_adapters(model, config)
    _perturb_adapters(model)
    save_adapters(model, tmp_path)
    fresh, _, _ = _recycled(name)
    fresh.head.load_state_dict(model.head.state_dict())
    assert load_adapters(fresh, tmp_path) == config
    with torch.no_grad():
        assert torch.equal(fresh(hidden, mask), model(hidden, mask))


def test_lora_with_an_input_adapter_is_not_saved_as_a_peft_folder(tmp_path):
    model, _, _ = _recycled("bert")
    apply_adapters(model, dataclasses.replace(INPUT, kind="lora"))
    with pytest.raises(RuntimeConfigError, match="cannot hold the input adapter"):
        save_adapters(model, tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written
