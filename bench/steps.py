"""Timed training and inference steps, split into phases, for full and recycled models.

One step is: wait for the batch (cache read + decode + padding for recycled, padding of token
ids for full), host-to-device copy, forward, backward, optimizer. Inference steps stop after
forward. The same batches (same keys in the same order) feed every mode, so the ratios compare
like with like. Phases are timed with perf_counter around synchronous CPU work; on CUDA each
phase is closed with torch.cuda.synchronize() so that time is charged to the phase that did it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from runtime.prefetch import Prefetcher

PHASES = ("wait", "h2d", "forward", "backward", "optimizer")


@dataclass
class StepTimes:
    """Seconds summed per phase over the timed steps, and what they covered."""

    steps: int = 0
    examples: int = 0
    tokens: int = 0
    seconds: dict = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def per_example(self) -> dict:
        """Seconds per example of each phase, and `total`."""
        out = {k: v / max(self.examples, 1) for k, v in self.seconds.items()}
        out["total"] = self.total / max(self.examples, 1)
        return out

    @property
    def io_fraction(self) -> float:
        """Share of step time spent waiting on the batch source (the cache, for recycled)."""
        return self.seconds["wait"] / self.total if self.total else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(batches, load, prefetch: bool):
    """Yield (batch, wait seconds): from a background Prefetcher, or loaded inline."""
    if prefetch:
        with Prefetcher(batches, load, depth=4, device="cpu") as source:
            for i, batch in enumerate(source):
                yield batch, source.wait_seconds[i]
        return
    for keys in batches:
        t0 = time.perf_counter()
        batch = load(keys)
        yield batch, time.perf_counter() - t0


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def time_interleaved(runs: dict, batches: list, *, train: bool, device="cpu",
                     warmup: int = 1) -> dict:
    """Time every mode on the same batches, interleaved: batch i goes through each mode in
    turn before batch i+1, so drifting load on a shared machine hits every mode alike.

    Args:
        runs: {mode: (model, optimizer or None, load, prefetch)}; `load(keys)` returns
            {"inputs", "attention_mask", "labels", ...} (runtime.loader's batch sources);
            `prefetch` loads on a background thread (runtime.prefetch) instead of inline.
        batches: list of key lists, the same for every mode.
        train: forward + backward + optimizer when True, forward under inference_mode otherwise.
        warmup: leading steps not counted (allocator and thread-pool warm-up).
    Returns:
        {mode: StepTimes}
    """
    device = torch.device(device)
    times = {mode: StepTimes() for mode in runs}
    sources = {mode: _batches(batches, load, prefetch)
               for mode, (_, _, load, prefetch) in runs.items()}
    for model, _, _, _ in runs.values():
        model.train(train)
    for step in range(len(batches)):
        for mode, (model, optimizer, _, _) in runs.items():
            batch, wait = next(sources[mode])
            marks = _step(model, optimizer, batch, train, device)
            marks["wait"] = wait
            if step >= warmup:
                _add(times[mode], marks, batch)
    for source in sources.values():
        source.close()
    return times


def _step(model, optimizer, batch: dict, train: bool, device) -> dict:
    t0 = time.perf_counter()
    batch = _to_device(batch, device)
    _sync(device)
    t1 = time.perf_counter()
    if not train:
        with torch.inference_mode():
            model(batch["inputs"], batch["attention_mask"])
        _sync(device)
        return {"h2d": t1 - t0, "forward": time.perf_counter() - t1}
    logits = model(batch["inputs"], batch["attention_mask"])
    loss = model.loss(logits, batch["labels"])
    _sync(device)
    t2 = time.perf_counter()
    loss.backward()
    _sync(device)
    t3 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return {"h2d": t1 - t0, "forward": t2 - t1, "backward": t3 - t2,
            "optimizer": time.perf_counter() - t3}


def _add(times: StepTimes, marks: dict, batch: dict) -> None:
    times.steps += 1
    times.examples += int(batch["attention_mask"].shape[0])
    times.tokens += int(batch["attention_mask"].sum())
    for phase, seconds in marks.items():
        times.seconds[phase] += seconds
