"""runtime.labels: reading, splitting, joining with the cache, token alignment, bad input."""

import pytest

from runtime.errors import RuntimeConfigError
from runtime.labels import LabelsConfig, assign_splits, load_labelled
from runtime.targets import IGNORE_INDEX, align_word_labels

IDS3 = ([101, 5, 102], None)


def _seq_cache(tiny_cache, n=20):
    return tiny_cache({f"e{i}": IDS3 for i in range(n)})


def _seq_rows(n=20):
    return [{"id": f"e{i}", "label": "pos" if i % 2 else "neg"} for i in range(n)]


def test_assign_splits_is_80_10_10_seeded_and_order_free():
    ids = [f"x{i}" for i in range(100)]
    a = assign_splits(ids, seed=3)
    assert sorted(a.values()).count("train") == 80
    assert list(a.values()).count("dev") == 10 and list(a.values()).count("test") == 10
    assert a == assign_splits(list(reversed(ids)), seed=3)
    assert a != assign_splits(ids, seed=4)
    assert sorted(assign_splits(["a", "b", "c"], 0).values()) == ["dev", "test", "train"]


def test_seq_cls_jsonl_join(tiny_cache, tmp_path, jsonl):
    reader = _seq_cache(tiny_cache)
    path = jsonl(tmp_path / "l.jsonl", _seq_rows())
    data = load_labelled(LabelsConfig(path, "seq-cls"), reader)
    assert data.label_names == ["neg", "pos"]
    assert [e.key for e in data.examples] == reader.keys()
    assert {e.key: e.target for e in data.examples}["e3"] == 1
    assert len(data.split("train")) == 16 and len(data.split("test")) == 2


def test_csv_with_split_column_and_custom_fields(tiny_cache, tmp_path):
    reader = tiny_cache({"a": IDS3, "b": IDS3, "c": IDS3})
    (tmp_path / "l.csv").write_text("doc,topic,split\na,x,train\nb,y,train\nc,x,test\n")
    data = load_labelled(LabelsConfig(str(tmp_path / "l.csv"), "seq-cls", id_field="doc",
                                      label_field="topic"), reader)
    assert [(e.key, e.split, e.target) for e in data.examples] == [
        ("a", "train", 0), ("b", "train", 1), ("c", "test", 0)]


def test_stride_windows_share_their_examples_label_and_split(tiny_cache, tmp_path, jsonl):
    reader = tiny_cache({"a#0": IDS3, "a#1": IDS3, "b": IDS3, "c": IDS3})
    rows = [{"id": "a", "label": "x", "split": "train"}, {"id": "b", "label": "x", "split": "dev"},
            {"id": "c", "label": "x", "split": "test"}]
    data = load_labelled(LabelsConfig(jsonl(tmp_path / "m.jsonl", rows), "seq-cls"), reader)
    windows = [e for e in data.examples if e.example_id == "a"]
    assert [e.key for e in windows] == ["a#0", "a#1"] and {e.split for e in windows} == {"train"}


def test_align_word_labels_first_subtoken_only():
    words = ["New", "Yorkers", "rock"]  # text "New Yorkers rock"
    offsets = [[0, 0], [0, 3], [4, 8], [8, 11], [12, 16], [0, 0]]  # CLS New York ##ers rock SEP
    out = align_word_labels(offsets, words, [1, 2, 0])
    assert out.tolist() == [IGNORE_INDEX, 1, 2, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_token_cls_words_and_per_token_labels(tiny_cache, tmp_path, jsonl):
    offsets = [[0, 0], [0, 2], [3, 4], [4, 6], [0, 0]]  # "hi Bob" -> CLS hi B ##ob SEP
    reader = tiny_cache({"t1": ([1, 2, 3, 4, 5], offsets), "t2": ([1, 2, 3, 4, 5], offsets),
                         "t3": ([1, 2, 3, 4, 5], offsets)})
    rows = [{"id": "t1", "words": ["hi", "Bob"], "label": ["O", "B-person"], "split": "train"},
            {"id": "t2", "label": [None, "O", "B-person", "O", None], "split": "dev"},
            {"id": "t3", "words": ["hi", "Bob"], "label": ["O", "O"], "split": "test"}]
    data = load_labelled(LabelsConfig(jsonl(tmp_path / "l.jsonl", rows), "token-cls"), reader)
    assert data.label_names == ["B-person", "O"]
    t = {e.key: e.target.tolist() for e in data.examples}
    assert t["t1"] == [-100, 1, 0, -100, -100]
    assert t["t2"] == [-100, 1, 0, 1, -100]


def test_qa_span_from_character_offsets(tiny_cache, tmp_path, jsonl):
    # "who ? Ada Lovelace wrote" ; answer "Ada Lovelace" at char 6
    offsets = [[0, 0], [0, 3], [4, 5], [0, 0], [6, 9], [10, 18], [19, 24], [0, 0]]
    reader = tiny_cache({"q": (list(range(8)), offsets)})
    rows = [{"id": "q", "label": {"text": ["Ada Lovelace"], "answer_start": [6]}}]
    data = load_labelled(LabelsConfig(jsonl(tmp_path / "l.jsonl", rows), "qa"), reader)
    assert data.examples[0].target == (4, 5)
    assert data.examples[0].answers == ("Ada Lovelace",)


BAD = [
    ("unknown-key", lambda n: _seq_rows(n) + [{"id": "zzz", "label": "pos"}],
     "names 1 keys not in the cache (first: 'zzz'); remove them"),
    ("missing-keys", lambda n: _seq_rows(n)[:-2],
     "is missing 2 of the cache's keys (first: 'e18'); label them, or pass --allow-unlabelled"),
    ("unseen-label", lambda n: [dict(r, split="train") for r in _seq_rows(n)[:-1]]
     + [{"id": f"e{n - 1}", "label": "new", "split": "test"}],
     "label 'new' of key 'e19' (test split) never occurs in the training split"),
    ("no-label-field", lambda n: [{"id": "e0"}] + _seq_rows(n)[1:],
     "row 1 has no 'label' field"),
    ("bad-split", lambda n: [dict(r, split="valid") for r in _seq_rows(n)],
     "key 'e0' has split 'valid'"),
    ("conflicting-duplicate", lambda n: _seq_rows(n) + [{"id": "e3", "label": "zzz"}],
     "gives id 'e3' twice with different labels ("),
]


@pytest.mark.parametrize("name,rows,message", BAD, ids=[b[0] for b in BAD])
def test_bad_labels_are_refused_with_one_clear_line(tiny_cache, tmp_path, jsonl, name, rows, message):
    reader = _seq_cache(tiny_cache)
    path = jsonl(tmp_path / "l.jsonl", rows(20))
    with pytest.raises(RuntimeConfigError) as err:
        load_labelled(LabelsConfig(path, "seq-cls"), reader)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_allow_unlabelled_skips_cache_keys(tiny_cache, tmp_path, jsonl):
    reader = _seq_cache(tiny_cache)
    path = jsonl(tmp_path / "l.jsonl", _seq_rows()[:10])
    data = load_labelled(LabelsConfig(path, "seq-cls", allow_unlabelled=True), reader)
    assert len(data.examples) == 10


def test_exact_duplicate_rows_are_kept_once(tiny_cache, tmp_path, jsonl):
    reader = _seq_cache(tiny_cache)
    rows = _seq_rows()
    data = load_labelled(LabelsConfig(jsonl(tmp_path / "l.jsonl", rows + rows[:3]), "seq-cls"),
                         reader)
    assert len(data.examples) == len(rows)


def test_words_that_are_not_the_cached_text_are_refused(tiny_cache, tmp_path, jsonl):
    offsets = [[0, 0], [0, 2], [3, 4], [4, 6], [0, 0]]  # "hi Bob"
    reader = tiny_cache({k: ([1, 2, 3, 4, 5], offsets) for k in ("a", "b", "c")})
    rows = [{"id": "a", "words": ["hi", "Bob"], "label": ["O", "B"], "split": "train"},
            {"id": "b", "words": ["hello", "there"], "label": ["O", "O"], "split": "dev"},
            {"id": "c", "words": ["h", "i"], "label": ["O", "O"], "split": "test"}]
    with pytest.raises(RuntimeConfigError) as err:
        load_labelled(LabelsConfig(jsonl(tmp_path / "l.jsonl", rows), "token-cls"), reader)
    assert ("the 'words' of 2 of 3 examples do not match the cached text (first: key 'b': "
            "token 3 spans characters 4..6, which is not inside one word of the 2 words given)"
            in str(err.value))


def test_qa_task_on_class_labels_is_refused(tiny_cache, tmp_path, jsonl):
    reader = _seq_cache(tiny_cache)
    with pytest.raises(RuntimeConfigError, match=r"key 'e0': qa labels must be an object .* "
                                                 r"got 'neg'; is --task right"):
        load_labelled(LabelsConfig(jsonl(tmp_path / "l.jsonl", _seq_rows()), "qa"), reader)


def test_word_labels_need_offsets(tiny_cache, tmp_path, jsonl):
    reader = tiny_cache({"t": ([1, 2], None)})
    path = jsonl(tmp_path / "l.jsonl", [{"id": "t", "words": ["a"], "label": ["O"]}])
    with pytest.raises(RuntimeConfigError, match="has no character offsets"):
        load_labelled(LabelsConfig(path, "token-cls"), reader)


def test_unknown_extension(tmp_path):
    (tmp_path / "l.txt").write_text("x")
    with pytest.raises(RuntimeConfigError, match="use .jsonl or .csv"):
        load_labelled(LabelsConfig(str(tmp_path / "l.txt"), "seq-cls"), None)
