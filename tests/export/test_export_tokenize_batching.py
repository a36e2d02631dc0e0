"""Tokenization (truncation, stride windows, offsets) and length bucketing."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from export.batching import collate, computed_tokens, make_batches, padding_fraction
from export.corpus import Record
from export.defaults import default_corpus_records, default_model_path
from export.errors import ExportError
from export.tokenize import check_lengths, load_tokenizer, tokenize


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(default_model_path())


def test_truncation_keys_and_offsets(tokenizer):
    text = "Recycling embeddings saves compute. " * 20
    (enc,) = tokenize([Record(id="a", text=text)], tokenizer, max_length=16)
    assert enc.key == "a" and len(enc) == 16
    assert enc.input_ids[0] == tokenizer.cls_token_id
    assert enc.input_ids[-1] == tokenizer.sep_token_id
    assert enc.offsets[0].tolist() == [0, 0] and enc.offsets[-1].tolist() == [0, 0]
    assert text[enc.offsets[1][0]:enc.offsets[1][1]] == "Recycling"[:enc.offsets[1][1]]


def test_stride_windows_are_records_id_n(tokenizer):
    words = [f"w{i}" for i in range(30)]
    text = " ".join(words)  # "w0 w1 ...": each word is "w" + "##N" pieces
    encoded = tokenize([Record(id="doc", text=text), Record(id="short", text="tiny")],
                       tokenizer, max_length=16, stride=4)
    keys = [e.key for e in encoded]
    assert keys[-1] == "short#0" and keys[0] == "doc#0"
    windows = [e for e in encoded if e.key.startswith("doc#")]
    assert [e.key for e in windows] == [f"doc#{n}" for n in range(len(windows))]
    assert len(windows) > 3
    # Consecutive windows overlap by `stride` tokens, and offsets index the original text.
    first, second = windows[0], windows[1]
    assert first.input_ids[-5:-1].tolist() == second.input_ids[1:5].tolist()
    covered = "".join(text[s:e] for s, e in second.offsets.tolist() if e > s)
    assert covered.replace(" ", "") in text.replace(" ", "")


def test_word_lists_offsets_index_the_joined_string(tokenizer):
    words = ["New", "York", "is", "big"]
    (enc,) = tokenize([Record(id="w", text=" ".join(words))], tokenizer, max_length=32)
    spans = [tuple(s) for s in enc.offsets.tolist()[1:-1]]
    assert spans == [(0, 3), (4, 8), (9, 11), (12, 15)]


def test_pairs_get_segment_ids_and_per_text_offsets(tokenizer):
    question, context = "who wrote it?", "ada wrote the first program " * 10
    (enc,) = tokenize([Record(id="q", text=question, text_pair=context)], tokenizer,
                      max_length=24)
    assert len(enc) == 24
    sep = np.flatnonzero(enc.input_ids == tokenizer.sep_token_id)
    assert enc.token_type_ids[:sep[0] + 1].max() == 0 and enc.token_type_ids[sep[0] + 1:].min() == 1
    s, e = enc.offsets[sep[0] + 1]
    assert context[s:e] == "ada"  # the question was kept whole; only the context truncated


def test_question_longer_than_max_length_is_a_clear_error(tokenizer):
    records = [Record(id="q", text="why " * 40, text_pair="because")]
    with pytest.raises(ExportError, match=r"tokenizing records 'q'..'q' failed .*the first "
                                          r"text must fit in --max-length"):
        tokenize(records, tokenizer, max_length=16, stride=2)


@pytest.mark.parametrize("max_length, stride, message", [
    (513, 0, "--max-length 513 is out of range for this model; pick 3 <= N <= 512"),
    (2, 0, "--max-length 2 is out of range for this model; pick 3 <= N <= 512"),
    (16, 14, "--stride 14 must be 0 (truncate) or less than --max-length minus 2 special "
             "tokens (14)"),
], ids=["too-long", "too-short", "stride-too-big"])
def test_length_checks(tokenizer, max_length, stride, message):
    with pytest.raises(ExportError) as err:
        check_lengths(tokenizer, max_length=max_length, stride=stride, pairs=False,
                      model_limit=512)
    assert str(err.value) == message


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), min_size=0, max_size=200),
       budget=st.integers(1, 4000))
def test_batches_cover_every_record_once_within_budget(lengths, budget):
    batches = make_batches(lengths, budget)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(len(lengths)))
    for b in batches:
        assert b.length == max(lengths[i] for i in b.indices)
        assert len(b.indices) == 1 or len(b.indices) * b.length <= budget
    assert computed_tokens(batches) >= sum(lengths)


def test_collate_right_pads_and_masks(tokenizer):
    encoded = tokenize([Record(id="a", text="one two three four"), Record(id="b", text="one")],
                       tokenizer, max_length=16)
    (batch,) = make_batches([len(e) for e in encoded], 1000)
    arrays = collate(encoded, batch, pad_id=0)
    assert arrays["input_ids"].shape == (2, len(encoded[0]))
    assert arrays["attention_mask"].sum(axis=1).tolist() == [len(encoded[0]), len(encoded[1])]
    assert arrays["input_ids"][1, len(encoded[1]):].tolist() == [0] * (len(encoded[0]) - 3)


def test_bucketing_padding_at_most_10_percent_on_bbc(tokenizer):
    """The issue's target, at the build's defaults (max length 256, 8192 tokens a batch)."""
    encoded = tokenize(default_corpus_records(), tokenizer, max_length=256)
    lengths = [len(e) for e in encoded]
    batches = make_batches(lengths, 8192)
    assert padding_fraction(batches, lengths) <= 0.10
    assert computed_tokens(batches) < len(lengths) * 256  # below padding every batch to 256
