"""Checking an export against the run: probe inputs, both sides' logits, the tolerance.

Every hand-off format is checked at export against the run's own model (runtime.models, fed
layer-K states computed by the checkpoint in PyTorch) on probe inputs, and refused above
TOLERANCE max abs difference of logits.
"""

from __future__ import annotations

import numpy as np
import torch

from runtime.errors import RuntimeConfigError
from runtime.handoff_run import TrainedRun


TOLERANCE = 1e-4  # max abs difference of logits allowed against the run's own model


PROBE_TEXTS = ("the quick brown fox jumps over the lazy dog near the river bank",
               "a short one", "shares fell as the bank cut its profit forecast for the year")


def load_tokenizer(run: TrainedRun):
    """The checkpoint's tokenizer, truncating at the cache's max_length as the cache build did."""
    from export.tokenize import load_tokenizer as _load

    tokenizer = _load(run.built.model_path)
    max_length = run.run_config.cache_fingerprint.get("max_length")
    if max_length:
        tokenizer.model_max_length = int(max_length)
    return tokenizer


def probe_inputs(run: TrainedRun, texts=PROBE_TEXTS) -> dict:
    """Right-padded int64 tensors {input_ids, attention_mask[, token_type_ids]} of `texts`."""
    tokenizer = load_tokenizer(run)
    enc = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    return {k: v.to(torch.long) for k, v in enc.items()}


def runtime_logits(run: TrainedRun, inputs: dict) -> list:
    """The run's own model on `inputs` (layer-K states from the checkpoint in PyTorch):
    [logits] or [start, end], numpy."""
    from runtime.upper import load_full

    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    types = inputs.get("token_type_ids")
    with torch.no_grad():
        if run.config.mode == "recycled":
            full = load_full(run.built.model_path)
            hidden = full.hidden_states_at(ids, mask, run.stack.layer, types)  # (B, T, H)
            out = run.built.model(hidden, mask)
        else:
            out = run.built.model(ids, mask, types)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def max_diff(run: TrainedRun, reference: list, got: list, mask) -> float:
    """Max abs difference over real tokens (every row where the task has one per example)."""
    mask = np.asarray(mask).astype(bool)
    worst = 0.0
    for a, b in zip(reference, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise RuntimeConfigError(f"exported model gives logits of shape {b.shape}, the run "
                                     f"{a.shape}; the export is wrong")
        if run.task.per_token:
            a, b = a[mask], b[mask]
        worst = max(worst, float(np.abs(a - b).max()))
    return worst


def hf_logits(model, inputs: dict) -> list:
    """[logits] or [start_logits, end_logits] of a transformers task model, numpy."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    feed = {k: v for k, v in inputs.items() if k in accepted or "kwargs" in accepted}
    with torch.no_grad():
        out = model(**feed)
    if hasattr(out, "start_logits"):
        return [out.start_logits.numpy(), out.end_logits.numpy()]
    return [out.logits.numpy()]


def check_parity(run: TrainedRun, what: str, logits_of) -> float:
    """Max abs difference of `logits_of(inputs)` against the run on probes; refused above 1e-4.

    Two probes: a padded batch of three texts, and one text alone (another batch size and
    length, so a graph that fixed either shape is caught).
    """
    diff = 0.0
    for texts in (PROBE_TEXTS, PROBE_TEXTS[:1]):
        inputs = probe_inputs(run, texts)
        diff = max(diff, max_diff(run, runtime_logits(run, inputs), logits_of(inputs),
                                  inputs["attention_mask"]))
    if not diff <= TOLERANCE:
        raise RuntimeConfigError(f"the exported {what} differs from the run's model by {diff:.2e} "
                                 f"(max abs logit difference; at most {TOLERANCE} allowed); "
                                 "nothing was written")
    return diff


# --- the formats -------------------------------------------------------------------------------
