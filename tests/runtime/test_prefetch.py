"""runtime.prefetch: order, bounded queue, stop, exceptions re-raised, wait times recorded."""

import threading
import time

import pytest
import torch

from runtime.prefetch import Prefetcher, PrefetchState


def _load(keys):
    return {"x": torch.tensor([int(k) for k in keys]), "keys": keys}


def test_yields_every_batch_in_order_and_records_waits():
    batches = [[str(i), str(i + 1)] for i in range(0, 20, 2)]
    with Prefetcher(batches, _load, depth=2) as pf:
        got = [b["x"].tolist() for b in pf]
        assert pf.state is PrefetchState.EXHAUSTED
    assert got == [[i, i + 1] for i in range(0, 20, 2)]
    assert len(pf.wait_seconds) == 10 and all(w >= 0 for w in pf.wait_seconds)
    assert pf.state is PrefetchState.STOPPED


def test_worker_exception_is_reraised_in_consumer():
    def load(keys):
        if keys == ["bad"]:
            raise KeyError("record 'bad' is damaged")
        return _load(keys)

    pf = Prefetcher([["1"], ["bad"], ["2"]], load)
    it = iter(pf)
    assert next(it)["x"].tolist() == [1]
    with pytest.raises(KeyError, match="damaged"):
        next(it)
    assert pf.state is PrefetchState.FAILED
    pf.close()


def test_queue_is_bounded_and_close_stops_a_blocked_worker():
    loaded = []

    def load(keys):
        loaded.append(keys)
        return _load(keys)

    pf = Prefetcher([[str(i)] for i in range(100)], load, depth=3).start()
    time.sleep(0.3)
    assert len(loaded) <= 3 + 1  # depth queued plus the one waiting to be put
    pf.close()
    assert pf.state is PrefetchState.STOPPED
    assert not any(t.name == "prefetch" and t.is_alive() for t in threading.enumerate())


def test_steady_state_wait_is_small_when_loading_is_faster_than_compute():
    def load(keys):
        time.sleep(0.002)
        return _load(keys)

    with Prefetcher([[str(i)] for i in range(15)], load, depth=4) as pf:
        for _ in pf:
            time.sleep(0.02)  # "compute"
    assert max(pf.wait_seconds[3:]) < 0.015


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Prefetcher([], _load, depth=0)
