"""runtime.datasets: the built-in tasks read from their packages, with fixed splits."""

import json
import os

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


def _held(lock_path):
    """Hold `lock_path` as another builder would (a separate open file description)."""
    import fcntl
    import os

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _commit_cache(path, keys):
    """A committed cache holding `keys` (one token each), as a build leaves after a commit."""
    import numpy as np

    import cache_format

    with cache_format.create(path, hidden_size=2, dtype="fp32", codec="none", append=True) as w:
        for key in keys:
            if key not in w:
                w.add(key, np.array([1], dtype=np.uint32), np.zeros((1, 2), dtype=np.float32))


def _wnut_ids():
    return [r["id"] for r in read_wnut16()]


def _fake_builds(monkeypatch):
    import export.build

    calls = []

    def build_cache(config):
        calls.append(config.out)
        _commit_cache(config.out, _wnut_ids())

    monkeypatch.setattr(export.build, "build_cache", build_cache)
    return calls


def _prepare_in_thread(root):
    import threading

    from runtime.datasets import prepare_builtin

    result = {}
    thread = threading.Thread(target=lambda: result.update(
        prepared=prepare_builtin("wnut16", layer=2, root=str(root))))
    thread.start()
    return thread, result


def _wait_until(predicate, seconds=30.0):
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_second_preparer_waits_for_the_first_build_instead_of_failing(tmp_path, monkeypatch,
                                                                        capsys):
    from runtime.datasets import builtin_cache_dir

    calls = _fake_builds(monkeypatch)
    cache = builtin_cache_dir("wnut16", layer=2, dtype="int8", root=str(tmp_path))
    fd = _held(os.path.abspath(cache) + ".prepare.lock")  # the first builder, still building
    thread, result = _prepare_in_thread(tmp_path)
    _wait_until(lambda: "waiting for another process" in capsys.readouterr().out)
    assert thread.is_alive() and not calls
    _commit_cache(cache, _wnut_ids())  # the first build finishes
    os.close(fd)
    thread.join(30)
    assert not thread.is_alive() and result["prepared"].cache == cache
    assert calls == []  # the waiter found the cache built and did not build it again


def test_a_waiter_builds_when_the_first_builder_dies_without_a_cache(tmp_path, monkeypatch,
                                                                     capsys):
    from runtime.datasets import builtin_cache_dir

    calls = _fake_builds(monkeypatch)
    cache = builtin_cache_dir("wnut16", layer=2, dtype="int8", root=str(tmp_path))
    fd = _held(os.path.abspath(cache) + ".prepare.lock")
    thread, result = _prepare_in_thread(tmp_path)
    _wait_until(lambda: "waiting for another process" in capsys.readouterr().out)
    os.close(fd)  # dies: the kernel drops the lock, no manifest was written
    thread.join(30)
    assert not thread.is_alive() and calls == [cache]
    assert os.path.isfile(os.path.join(result["prepared"].cache, "manifest.json"))


def test_a_cache_a_build_has_committed_part_of_is_waited_for(tmp_path, monkeypatch, capsys):
    # a build commits its manifest every few seconds: a second job once trained on the third
    # of the records committed so far and stopped on the labels
    from runtime.datasets import builtin_cache_dir

    calls = _fake_builds(monkeypatch)
    cache = builtin_cache_dir("wnut16", layer=2, dtype="int8", root=str(tmp_path))
    fd = _held(os.path.abspath(cache) + ".prepare.lock")
    ids = _wnut_ids()
    _commit_cache(cache, ids[:800])  # the first builder, a third of the way through
    thread, result = _prepare_in_thread(tmp_path)
    _wait_until(lambda: "waiting for another process" in capsys.readouterr().out)
    assert thread.is_alive() and "prepared" not in result
    _commit_cache(cache, ids)
    os.close(fd)
    thread.join(30)
    assert not thread.is_alive() and result["prepared"].cache == cache and calls == []


def test_a_cache_a_killed_build_left_part_of_is_built_on(tmp_path, monkeypatch):
    from runtime.datasets import builtin_cache_dir, prepare_builtin

    calls = _fake_builds(monkeypatch)
    cache = builtin_cache_dir("wnut16", layer=2, dtype="int8", root=str(tmp_path))
    _commit_cache(cache, _wnut_ids()[:800])  # no lock held: its builder is gone
    assert prepare_builtin("wnut16", layer=2, root=str(tmp_path)).cache == cache
    assert calls == [cache]
    assert prepare_builtin("wnut16", layer=2, root=str(tmp_path)).cache == cache
    assert calls == [cache]  # complete now: not built again


def test_a_max_length_of_zero_reaches_export_to_be_refused(tmp_path):
    # `max_length or default` once turned 0 into the task's 128: a run the user did not ask for
    from export.errors import ExportError
    from runtime.datasets import prepare_builtin

    with pytest.raises(ExportError, match="--max-length must be an integer >= 2, got 0"):
        prepare_builtin("wnut16", layer=2, root=str(tmp_path), max_length=0)
    # refused before anything is written: no task folder, no lock file beside a cache
    assert list(tmp_path.iterdir()) == []
