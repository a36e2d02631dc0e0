"""A writer killed with SIGKILL loses nothing committed; resumes match an uninterrupted run;
readers in several processes agree; parallel parts merge into one cache."""
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cache_format
from cache_format import CacheFormatError

HERE = Path(__file__).parent
N = 60


def _run_writer(path, kill_after):
    cmd = [sys.executable, str(HERE / "_kill_writer.py"), str(path), str(N), str(kill_after)]
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)


def test_sigkill_then_resume_reads_back_identical(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _run_writer(killed, kill_after=32)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = cache_format.open(killed)
    assert partial.keys() == [f"r{i:04d}" for i in range(30)]  # the last commit was after r0029
    assert any(p.name.endswith(".tmp") for p in killed.iterdir())  # the open shard was left behind
    partial.verify()

    for path in (killed, clean):
        proc = _run_writer(path, kill_after=-1)
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    a, b = cache_format.open(killed), cache_format.open(clean)
    assert a.keys() == b.keys() == [f"r{i:04d}" for i in range(N)]
    for key in a.keys():
        np.testing.assert_array_equal(a.get(key), b.get(key))
        np.testing.assert_array_equal(a.token_ids(key), b.token_ids(key))
    assert not any(p.name.endswith(".tmp") for p in killed.iterdir())


def _checksum(reader, keys):
    return [float(reader.get(k).astype(np.float64).sum()) for k in keys]


def test_many_reader_processes_agree(tmp_path):
    rng = np.random.default_rng(0)
    with cache_format.create(tmp_path, hidden_size=32, dtype="fp16") as w:
        for i in range(40):
            w.add(f"k{i}", np.arange(9), rng.standard_normal((9, 32)).astype(np.float32))
    reader = cache_format.open(tmp_path)
    keys = reader.keys()
    expected = _checksum(reader, keys)
    with mp.get_context("spawn").Pool(3) as pool:
        # The reader pickles as its path and reopens in each worker.
        results = pool.starmap(_checksum, [(reader, keys)] * 3)
    assert results == [expected] * 3


def test_parallel_parts_merge(tmp_path):
    rng = np.random.default_rng(0)
    for rank in range(2):
        with cache_format.create(tmp_path, hidden_size=8, part=f"rank{rank}",
                                 metadata={"model": "m"}) as w:
            for i in range(rank, 10, 2):
                w.add(f"k{i}", [i], rng.standard_normal((1, 8)).astype(np.float32))
    with pytest.raises(CacheFormatError, match="holds 2 part manifest.* merge them first"):
        cache_format.open(tmp_path)
    merged = cache_format.merge(tmp_path)
    assert merged["num_examples"] == 10
    r = cache_format.open(tmp_path)
    assert r.keys() == [f"k{i}" for i in (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)]
    assert cache_format.merge(tmp_path)["shards"] == merged["shards"]  # merging again is a no-op


def test_merge_refuses_overlapping_or_mismatched_parts(tmp_path):
    for rank in range(2):
        with cache_format.create(tmp_path / "dup", hidden_size=8, part=f"r{rank}") as w:
            w.add("same", [1], np.zeros((1, 8), np.float32))
    with pytest.raises(CacheFormatError, match="key 'same' was written by shard r0-00000 and by r1-00000"):
        cache_format.merge(tmp_path / "dup")
    for rank, layer in enumerate((3, 4)):
        cache_format.create(tmp_path / "mix", hidden_size=8, part=f"r{rank}",
                            metadata={"layer": layer}).close()
    with pytest.raises(CacheFormatError, match="manifest.r1.json: differs from the other parts"):
        cache_format.merge(tmp_path / "mix")


def test_second_writer_process_is_refused_until_the_first_dies(tmp_path):
    holder = _run_writer(tmp_path, kill_after=7)  # holds the writer lock, then waits
    assert holder.stdout.readline().strip() == "ready"
    second = _run_writer(tmp_path, kill_after=-1)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1 and "another writer (pid " in err
    assert "is writing manifest.json there" in err
    with pytest.raises(CacheFormatError, match=r"another writer \(pid \d+\) is writing manifest.json"):
        cache_format.create(tmp_path, hidden_size=24, metadata={"model": "t"}, append=True)
    with pytest.raises(CacheFormatError, match="another writer"):
        cache_format.merge(tmp_path)  # a merge writes manifest.json too
    holder.send_signal(signal.SIGKILL)  # the kernel releases the flock of a dead process
    holder.wait()
    proc = _run_writer(tmp_path, kill_after=-1)
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert cache_format.open(tmp_path).keys() == [f"r{i:04d}" for i in range(N)]


def test_parts_lock_separately_and_a_closed_writer_lets_go(tmp_path):
    a = cache_format.create(tmp_path, hidden_size=8, part="a")
    b = cache_format.create(tmp_path, hidden_size=8, part="b")  # another part: no conflict
    with pytest.raises(CacheFormatError, match="is writing manifest.a.json"):
        cache_format.create(tmp_path, hidden_size=8, part="a", append=True)
    a.close()
    b.close()
    cache_format.create(tmp_path, hidden_size=8, part="a", append=True).close()
    assert cache_format.merge(tmp_path)["num_examples"] == 0


def test_refused_writer_leaves_the_first_writers_files_alone(tmp_path):
    w = cache_format.create(tmp_path, hidden_size=8, dtype="fp16")
    w.add("k", [1], np.ones((1, 8), np.float32))  # an open shard-00000.shard.tmp
    with pytest.raises(CacheFormatError, match="another writer"):
        cache_format.create(tmp_path, hidden_size=8, dtype="int8", append=True)
    w.close()  # its temporary shard was not deleted as an orphan by the refused writer
    np.testing.assert_array_equal(cache_format.open(tmp_path).get("k"), np.ones((1, 8)))


def test_active_writer_names_a_live_writer_and_not_a_killed_one(tmp_path):
    assert cache_format.active_writer(tmp_path) is None  # no lock file yet
    holder = _run_writer(tmp_path, kill_after=32)  # commits r0000..r0029, then waits
    assert holder.stdout.readline().strip() == "ready"
    assert cache_format.active_writer(tmp_path) == f"pid {holder.pid}"
    assert len(cache_format.open(tmp_path)) == 30  # what a reader alone would take for a cache
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert cache_format.active_writer(tmp_path) is None  # the kernel dropped its lock
    with cache_format.create(tmp_path, hidden_size=8, part="p"):
        assert cache_format.active_writer(tmp_path) == f"pid {os.getpid()}"  # parts count too
    assert cache_format.active_writer(tmp_path) is None


def test_a_writer_waits_out_a_readers_probe(tmp_path, monkeypatch):
    # active_writer holds a shared lock for a moment; a writer starting then must not take it
    # for another writer's. The retry window is widened so that a slow thread cannot decide.
    import fcntl
    import threading

    from cache_format import locking

    monkeypatch.setattr(locking, "_PROBE_WAIT_S", 60.0)
    fd = os.open(tmp_path / "manifest.json.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a probe, caught in the act
    done = []

    def write():
        with cache_format.create(tmp_path, hidden_size=8) as w:
            w.add("k", [1], np.ones((1, 8), np.float32))
        done.append(True)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive() and not done  # retrying, not refused
    os.close(fd)
    thread.join(60)
    assert done and cache_format.open(tmp_path).keys() == ["k"]
