"""runtime.batches: keys to tensors; full/frozen read the cache's token ids and segment ids."""

import numpy as np

from runtime.batches import (CacheBatches, TokenBatches, collate_hidden, collate_ids,
                             model_inputs, token_source)


def test_collate_pads_to_batch_max_and_builds_mask():
    a, b = np.ones((3, 4), np.float32), np.full((1, 4), 2, np.float32)
    hidden, mask = collate_hidden([a, b])
    assert hidden.shape == (2, 3, 4)
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert hidden[1, 0, 0] == 2 and hidden[1, 1:].abs().sum() == 0
    ids, mask = collate_ids([[5, 6], [7]], pad_id=0)
    assert ids.tolist() == [[5, 6], [7, 0]] and mask.tolist() == [[1, 1], [1, 0]]


def test_cache_and_token_batches_cover_the_same_keys(tiny_task):
    import cache_format

    reader = cache_format.open(tiny_task["cache"])
    keys = reader.keys()[:3]
    targets = {k: 0 for k in keys}
    cached = CacheBatches(reader, targets, "seq-cls")(keys)
    tokens = token_source(reader, targets, "seq-cls", tiny_task["model"])(keys)
    assert cached["attention_mask"].tolist() == tokens["attention_mask"].tolist()
    for i, k in enumerate(keys):  # the token ids the lower stack saw, not a re-tokenization
        n = int(tokens["attention_mask"][i].sum())
        assert tokens["inputs"][i, :n].tolist() == reader.token_ids(k).tolist()
    assert "token_type_ids" not in tokens and len(model_inputs(tokens)) == 2


def test_pairs_get_the_tokenizers_segment_ids(tiny_model, tmp_path):
    """QA pairs in full/frozen mode see segment 1 where the lower stack saw it."""
    import cache_format
    from export.corpus import Record
    from export.tokenize import load_tokenizer, tokenize

    records = [Record(id="q1", text="bob run", text_pair="the cat in paris"),
               Record(id="q2", text="ann", text_pair="moon with sun dog dog")]
    encoded = tokenize(records, load_tokenizer(tiny_model), max_length=32)
    with cache_format.create(tmp_path / "c", hidden_size=4, dtype="fp32", codec="none",
                             metadata={"text_pair_field": "context"}) as w:
        for e in encoded:
            w.add(e.key, e.input_ids, np.zeros((len(e.input_ids), 4), np.float32),
                  offsets=e.offsets)
    reader = cache_format.open(tmp_path / "c")
    batch = token_source(reader, {"q1": (0, 0), "q2": (0, 0)}, "qa", tiny_model)(["q1", "q2"])
    for i, e in enumerate(encoded):
        assert e.token_type_ids.max() == 1  # BERT marks the second text
        n = len(e.input_ids)
        assert batch["token_type_ids"][i, :n].tolist() == e.token_type_ids.tolist()
    assert len(model_inputs(batch)) == 3


def test_token_batches_take_a_dict_of_ids_too():
    batch = TokenBatches({"a": np.array([5, 6]), "b": np.array([7])}, {"a": 1, "b": 0},
                         "seq-cls", pad_id=0)(["a", "b"])
    assert batch["inputs"].tolist() == [[5, 6], [7, 0]] and batch["labels"].tolist() == [1, 0]
