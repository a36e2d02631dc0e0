"""Loading a finished run folder and predicting with it: cached keys, and raw texts.

A recycled run predicts from the cache (layer-K states) through its upper stack; a raw text
not in the cache goes through the ONNX lower stack that export saved in `<cache>/onnx` first,
and `write_back=True` adds its states to the cache so the next prediction reads them. A full or
frozen run runs its whole model on token ids (the cache's token ids for cached keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import torch

from runtime.batches import CacheBatches, token_source
from runtime.config import labels_config
from runtime.errors import RuntimeConfigError
from runtime.evaluation import predict_logits
from runtime.inputs import open_cache
from runtime.labels import WRITE_BACK_PREFIX, load_labelled
from runtime.models import Built, build_model
from runtime.run_folder import check_fingerprint, load_run_config, load_weights_into
from runtime.tasks import task_named


@dataclasses.dataclass
class LoadedRun:
    config: object  # TrainConfig, as the run saved it (its seed drew the split)
    built: Built
    reader: object  # cache_format reader
    label_names: list


def load_run(run: str, *, task: str | None = None, cache: str | None = None,
             device: str = "cpu") -> LoadedRun:
    """Rebuild the model of run folder `run` with its best weights; refuse a mismatch."""
    saved = load_run_config(run)
    if task is not None and saved.train.task != task:
        raise RuntimeConfigError(f"run folder {run!r} holds a {saved.train.task!r} run, not "
                                 f"{task!r}; pick a run of that task or drop --task")
    # the saved seed is kept: with no split column it drew the split that training held out
    config = dataclasses.replace(saved.train, cache=cache or saved.train.cache, device=device)
    reader = open_cache(config.cache)
    check_fingerprint(run, saved.cache_fingerprint, reader.manifest)
    built = build_model(config, reader.manifest, saved.label_names)
    load_weights_into(run, built)
    return LoadedRun(config, built, reader, saved.label_names)


def predict_keys(loaded: LoadedRun, keys: list) -> list:
    """Predictions (dicts, see runtime.tasks' `describe`) for cached keys, in the order given."""
    missing = [k for k in keys if k not in loaded.reader]
    if missing:
        raise RuntimeConfigError(f"key {missing[0]!r} is not in the cache; pass it as text "
                                 "with --text to run the lower stack on it")
    task = task_named(loaded.config.task)
    dummy = {k: task.dummy_target() for k in keys}
    if loaded.config.mode == "recycled":
        source = CacheBatches(loaded.reader, dummy, task.name)
    else:
        source = token_source(loaded.reader, dummy, task.name, loaded.built.model_path)
    logits = predict_logits(loaded.config, loaded.built, source, loaded.reader, keys)
    return [task.describe(k, logits[k], loaded.reader.token_ids(k), loaded.reader.offsets(k),
                          loaded.label_names) for k in keys]


def predict_texts(loaded: LoadedRun, texts: list, *, write_back: bool = False) -> list:
    """Predictions for raw texts; keys are `text-<sha1 of the text>[:12]`.

    Texts already in the cache under that key are read from it. With `write_back`, the states
    of the others (from the ONNX lower stack) are appended to the cache.
    """
    keys = [f"{WRITE_BACK_PREFIX}{hashlib.sha1(t.encode()).hexdigest()[:12]}" for t in texts]
    new = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in loaded.reader]
    if new:
        states = _lower_states(loaded, new)
        if write_back:
            _write_back(loaded, states)
            loaded.reader = open_cache(loaded.config.cache)
        else:
            return _predict_states(loaded, states, keys)
    return predict_keys(loaded, keys)


def _lower_states(loaded: LoadedRun, items: list) -> dict:
    """key -> (Encoded record, float32 [T, H] layer-K states) via export's ONNX session."""
    from export.corpus import Record
    from export.session import LowerSession
    from export.tokenize import load_tokenizer, tokenize

    m = loaded.reader.manifest
    onnx_dir = os.path.join(loaded.config.cache, "onnx")
    if not os.path.isdir(onnx_dir):
        raise RuntimeConfigError(f"cache {loaded.config.cache!r} has no onnx/ lower stack; "
                                 "rebuild it with `python -m export.lower` to predict raw texts")
    encoded = tokenize([Record(id=k, text=t) for k, t in items],
                       load_tokenizer(loaded.built.model_path), max_length=int(m["max_length"]))
    session = LowerSession(onnx_dir, device="cpu")
    out = {}
    for e in encoded:  # one text at a time: raw-text prediction is interactive, not bulk
        ids = e.input_ids[None].astype(np.int64)  # (1, T)
        hidden = session.run(ids, np.ones_like(ids), e.token_type_ids[None])[0]  # (T, H)
        out[e.key] = (e, np.asarray(hidden, dtype=np.float32))
    return out


def _write_back(loaded: LoadedRun, states: dict) -> None:
    import cache_format

    m = loaded.reader.manifest
    with cache_format.create(loaded.config.cache, hidden_size=int(m["hidden_size"]),
                             dtype=m["dtype"], codec=m["codec"], metadata=m.get("metadata"),
                             append=True) as w:
        for key, (e, hidden) in states.items():
            w.add(key, e.input_ids, hidden, offsets=e.offsets)


def _predict_states(loaded: LoadedRun, states: dict, keys: list) -> list:
    cached = [k for k in keys if k not in states]
    by_key = dict(zip(cached, predict_keys(loaded, cached))) if cached else {}
    model, task = loaded.built.model, task_named(loaded.config.task)
    with torch.no_grad():
        for key, (e, hidden) in states.items():
            if loaded.config.mode == "recycled":
                inputs = torch.from_numpy(hidden)[None]  # (1, T, H)
            else:
                inputs = torch.from_numpy(e.input_ids.astype(np.int64))[None]  # (1, T)
            logits = model(inputs.to(loaded.config.device),
                           torch.ones(1, inputs.shape[1], dtype=torch.long))
            by_key[key] = task.describe(key, task.example_logits(logits, 0, inputs.shape[1]),
                                        e.input_ids, e.offsets, loaded.label_names)
    return [by_key[k] for k in keys]


def split_keys(loaded: LoadedRun, split: str) -> list:
    """Cached keys of a labelled split of the run's labels file ("all": every cached key)."""
    if split == "all":
        return loaded.reader.keys()
    data = load_labelled(labels_config(loaded.config), loaded.reader)
    return [e.key for e in data.split(split)]
