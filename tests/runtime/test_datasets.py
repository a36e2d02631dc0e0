"""runtime.datasets: the built-in tasks read from their packages, with fixed splits."""

import json

import pytest

from runtime.errors import RuntimeConfigError
from runtime.datasets import BUILTIN_TASKS, get_task, read_wnut16, write_task


def test_wnut16_is_parsed_into_tweets():
    tweets = read_wnut16()
    assert len(tweets) == 2394
    first = tweets[0]
    assert first["words"][:3] == ["@paulwalk", "It", "'s"]
    assert first["tags"][14:17] == ["B-facility", "I-facility", "I-facility"]
    assert all(len(t["words"]) == len(t["tags"]) for t in tweets)


def test_wnut16_parsing_of_a_small_file(tmp_path):
    (tmp_path / "ner.txt").write_text("Hi\tO\nBob\tB-person\n\t\n \n\nyo\tO\n")
    assert read_wnut16(str(tmp_path / "ner.txt")) == [
        {"id": "wnut-00000", "words": ["Hi", "Bob"], "tags": ["O", "B-person"]},
        {"id": "wnut-00001", "words": ["yo"], "tags": ["O"]}]


@pytest.mark.parametrize("name,count,first_label", [
    ("bbc-news", 2225, "business"), ("wnut16", 2394, None)], ids=["bbc", "wnut"])
def test_write_task_files_with_fixed_splits(tmp_path, name, count, first_label):
    files = write_task(name, str(tmp_path / name))
    corpus = [json.loads(line) for line in open(files.corpus)]
    labels = [json.loads(line) for line in open(files.labels)]
    assert len(corpus) == len(labels) == count
    assert [c["id"] for c in corpus] == [r["id"] for r in labels]
    splits = [r["split"] for r in labels]
    assert splits.count("test") == splits.count("dev") == count // 10
    if first_label:
        assert labels[0]["label"] == first_label
    else:
        assert corpus[0]["text"] == " ".join(labels[0]["words"])
    again = write_task(name, str(tmp_path / "again"))
    assert open(again.labels).read() == open(files.labels).read()  # splits fixed


def test_unknown_task():
    with pytest.raises(RuntimeConfigError, match="unknown built-in task 'imdb'; pick one of"):
        get_task("imdb")
    assert set(BUILTIN_TASKS) == {"bbc-news", "wnut16"}
