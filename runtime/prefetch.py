"""A background prefetcher: loads batches on a thread while the training loop computes.

The worker thread calls `load(keys)` for each planned batch (cache decode, dequantise and
padding happen there, off the training thread; numpy and the codecs release the GIL for the
heavy parts), pins the tensors when CUDA is used, and puts them on a bounded queue. The
consumer takes them in order, copies them to the device with `non_blocking=True`, and records
how long each step waited on the queue: in steady state that wait should be ~0.

States (`PrefetchState`), and the only transitions:

    CREATED --start()--> RUNNING --all batches queued--> EXHAUSTED
                         RUNNING --load raised--------> FAILED   (re-raised in the consumer)
    CREATED / RUNNING / EXHAUSTED / FAILED --close()--> STOPPED
"""

from __future__ import annotations

import enum
import queue
import threading
import time

import torch


class PrefetchState(enum.Enum):
    CREATED = "created"  # not started; nothing loaded
    RUNNING = "running"  # worker loading batches into the queue
    EXHAUSTED = "exhausted"  # worker queued every batch and exited
    FAILED = "failed"  # worker hit an exception; the consumer re-raises it
    STOPPED = "stopped"  # close() ran; the worker has exited


_END = object()  # queue sentinel: no more batches


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetcher:
    """Iterate over loaded batches, loading up to `depth` ahead on a background thread.

    Args:
        batches: list of key lists (the plan).
        load: callable keys -> dict of tensors (and other values passed through).
        depth: queue bound: batches held ready at most (memory stays bounded).
        device: torch device the tensors go to.
    Use as a context manager, or call close(); `wait_seconds` holds each step's wait.
    """

    def __init__(self, batches: list, load, *, depth: int = 4, device="cpu"):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}; it bounds batches held ahead")
        self.batches, self.load, self.device = list(batches), load, torch.device(device)
        self.pin = self.device.type == "cuda"
        self.state = PrefetchState.CREATED
        self.wait_seconds: list = []
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)

    def start(self) -> "Prefetcher":
        if self.state is PrefetchState.CREATED:
            self.state = PrefetchState.RUNNING
            self._thread.start()
        return self

    def __enter__(self) -> "Prefetcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.start()
        while True:
            t0 = time.perf_counter()
            item = self._queue.get()
            self.wait_seconds.append(time.perf_counter() - t0)
            if item is _END:
                self.wait_seconds.pop()  # not a step
                return
            if isinstance(item, _Failure):
                self.wait_seconds.pop()
                raise item.exc
            yield self._to_device(item)

    def close(self) -> None:
        """Stop the worker and free the queue; safe to call more than once."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # drain so a worker blocked on put() sees the stop event
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.state = PrefetchState.STOPPED

    def _put(self, item) -> bool:
        # put with a timeout so a stop request is noticed even while the queue is full
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for keys in self.batches:
                if self._stop.is_set():
                    return
                batch = self.load(keys)
                if self.pin:
                    batch = {k: v.pin_memory() if torch.is_tensor(v) else v
                             for k, v in batch.items()}
                if not self._put(batch):
                    return
            self.state = PrefetchState.EXHAUSTED
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.state = PrefetchState.FAILED
            self._put(_Failure(exc))

    def _to_device(self, batch: dict) -> dict:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()}
