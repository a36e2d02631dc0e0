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
    assert len(pf.wait_seconds) == 10  # one wait recorded per step
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


def test_worker_loads_ahead_while_the_consumer_holds_a_batch():
    # The wait time itself is measured in bench/ (test_step_bench.py, bench.report); here the
    # mechanism: batches 2..depth+1 load while the consumer is still busy with batch 1.
    ahead = threading.Event()
    loaded = []

    def load(keys):
        loaded.append(keys)
        if len(loaded) == 4:
            ahead.set()
        return _load(keys)

    with Prefetcher([[str(i)] for i in range(15)], load, depth=3) as pf:
        it = iter(pf)
        first = next(it)
        assert ahead.wait(timeout=30), "the worker did not load ahead of the consumer"
        rest = [b["x"].tolist() for b in it]
    assert first["x"].tolist() == [0] and rest == [[i] for i in range(1, 15)]


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be >= 1"):
        Prefetcher([], _load, depth=0)
