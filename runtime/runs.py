"""Loading a finished run folder and predicting with it: cached keys, and raw texts.

A recycled run predicts from the cache (layer-K states) through its upper stack; a raw text
not in the cache goes through the ONNX lower stack that export saved in `<cache>/onnx` first,
and `write_back=True` adds its states to the cache so the next prediction reads them. A full or
frozen run runs its whole model on token ids (the cache's token ids for cached keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle

import numpy as np
import torch

from runtime import inference
from runtime.errors import RuntimeConfigError
from runtime.labels import IGNORE_INDEX
from runtime.loader import CacheBatches, TextBatches


@dataclasses.dataclass
class LoadedRun:
    config: object  # TrainConfig
    built: inference.Built
    reader: object  # cache_format reader
    label_names: list


def load_run(run: str, *, task: str | None = None, cache: str | None = None,
             device: str = "cpu") -> LoadedRun:
    """Rebuild the model of run folder `run` with its best weights; refuse a mismatch."""
    saved = _read_run_config(run)
    if task is not None and saved.get("task") != task:
        raise RuntimeConfigError(f"run folder {run!r} holds a {saved.get('task')!r} run, not "
                                 f"{task!r}; pick a run of that task or drop --task")
    try:
        config = saved_train_config(saved)
    except TypeError as exc:
        raise RuntimeConfigError(f"{run}/config.json does not describe a run ({exc}); the run "
                                 "folder is damaged or from another version: train it again") from None
    # the saved seed is kept: with no split column it drew the split that training held out
    config = dataclasses.replace(config, cache=cache or config.cache, device=device)
    reader = inference.open_cache(config.cache)
    _check_fingerprint(run, saved.get("cache_fingerprint", {}), reader.manifest)
    built = inference.build_model(config, reader.manifest, saved["label_names"])
    load_weights_into(run, built)
    return LoadedRun(config, built, reader, list(saved["label_names"]))


def load_weights_into(run: str, built) -> dict:
    """Load RUN/weights.pt into `built.model` (eval mode); refuse weights that miss a trained
    parameter. Returns the loaded state dict."""
    weights = _load_weights(run)
    missing = [n for n, p in built.model.named_parameters() if p.requires_grad and n not in weights]
    if missing:
        raise RuntimeConfigError(f"{run}/weights.pt lacks {missing[0]!r}; the run folder is "
                                 "incomplete or from another version: train it again")
    built.model.load_state_dict(weights, strict=False)
    built.model.eval()
    return weights


# What a run config.json written before a TrainConfig field existed meant by its absence: the
# fields that shape the model, whose new defaults would build another model than was trained.
LEGACY_DEFAULTS = {"pooling": "pooler", "lora_targets": "attention"}


def saved_train_config(saved: dict):
    """The TrainConfig of a run's config.json; keys it lacks mean what they meant then."""
    from runtime.trainer import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {**LEGACY_DEFAULTS, **saved}
    return TrainConfig(**{k: v for k, v in values.items() if k in fields})


def _read_run_config(run: str) -> dict:
    path = os.path.join(run, "config.json")
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run, "weights.pt")):
        raise RuntimeConfigError(f"{run!r} is not a finished run folder (config.json and "
                                 "weights.pt expected); pass the --out of `python -m runtime.train`")
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except ValueError as exc:  # half-written, or not UTF-8
        raise RuntimeConfigError(f"{path} is damaged ({exc}); the run did not finish writing "
                                 "it: train the run again") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("label_names"), list):
        raise RuntimeConfigError(f"{path} is not a run config (no label_names); train the run "
                                 "again")
    return saved


def _load_weights(run: str) -> dict:
    path = os.path.join(run, "weights.pt")
    try:
        weights = torch.load(path, weights_only=True, map_location="cpu")
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise RuntimeConfigError(f"{path} cannot be loaded ({reason}); it is truncated or "
                                 "damaged: train the run again") from None
    if not isinstance(weights, dict):
        raise RuntimeConfigError(f"{path} does not hold a state dict; train the run again")
    return weights


def _check_fingerprint(run: str, saved: dict, manifest: dict) -> None:
    for key in ("weights_sha256", "layer", "tokenizer_sha256"):
        if saved.get(key) is not None and manifest.get(key) != saved[key]:
            raise RuntimeConfigError(
                f"the cache's {key} ({manifest.get(key)}) differs from the one run {run!r} was "
                f"trained on ({saved[key]}); pass --cache with the cache the run was trained on")


def predict_keys(loaded: LoadedRun, keys: list) -> list:
    """Predictions (dicts, see `_describe`) for cached keys, in the order given."""
    missing = [k for k in keys if k not in loaded.reader]
    if missing:
        raise RuntimeConfigError(f"key {missing[0]!r} is not in the cache; pass it as text "
                                 "with --text to run the lower stack on it")
    dummy = {k: _dummy_target(loaded.config.task) for k in keys}
    if loaded.config.mode == "recycled":
        source = CacheBatches(loaded.reader, dummy, loaded.config.task)
    else:
        ids = {k: loaded.reader.token_ids(k).astype(np.int64) for k in keys}
        source = TextBatches(ids, dummy, loaded.config.task, _pad_id(loaded))
    logits = inference.predict_logits(loaded.config, loaded.built, source, loaded.reader, keys)
    return [_describe(loaded, k, logits[k], loaded.reader.token_ids(k),
                      loaded.reader.offsets(k)) for k in keys]


def predict_texts(loaded: LoadedRun, texts: list, *, write_back: bool = False) -> list:
    """Predictions for raw texts; keys are `text-<sha1 of the text>[:12]`.

    Texts already in the cache under that key are read from it. With `write_back`, the states
    of the others (from the ONNX lower stack) are appended to the cache.
    """
    keys = [f"text-{hashlib.sha1(t.encode()).hexdigest()[:12]}" for t in texts]
    new = [(k, t) for k, t in dict(zip(keys, texts)).items() if k not in loaded.reader]
    if new:
        states = _lower_states(loaded, new)
        if write_back:
            _write_back(loaded, states)
            loaded.reader = inference.open_cache(loaded.config.cache)
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
    model, task = loaded.built.model, loaded.config.task
    with torch.no_grad():
        for key, (e, hidden) in states.items():
            if loaded.config.mode == "recycled":
                inputs = torch.from_numpy(hidden)[None]  # (1, T, H)
            else:
                inputs = torch.from_numpy(e.input_ids.astype(np.int64))[None]  # (1, T)
            logits = model(inputs.to(loaded.config.device),
                           torch.ones(1, inputs.shape[1], dtype=torch.long))
            logits = (logits[0] if task != "qa" else torch.stack([logits[0][0], logits[1][0]]))
            by_key[key] = _describe(loaded, key, logits.float().cpu().numpy(), e.input_ids,
                                    e.offsets)
    return [by_key[k] for k in keys]


def _describe(loaded: LoadedRun, key: str, logits: np.ndarray, token_ids, offsets) -> dict:
    """seq-cls: label and probability; token-cls: a label per real token; qa: the token span."""
    task = loaded.config.task
    if task == "seq-cls":
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {"id": key, "label": loaded.label_names[int(p.argmax())], "score": float(p.max())}
    real = [t for t in range(len(token_ids))
            if offsets is None or offsets[t][1] > offsets[t][0]]
    if task == "token-cls":
        tags = logits.argmax(-1)
        return {"id": key, "offsets": [list(map(int, offsets[t])) for t in real]
                if offsets is not None else None,
                "labels": [loaded.label_names[int(tags[t])] for t in real]}
    from runtime.heads import best_span
    from runtime.labels import context_mask

    allowed = np.ones(len(token_ids), np.int64) if offsets is None else context_mask(offsets)
    start, end, _ = best_span(torch.from_numpy(logits[0]), torch.from_numpy(logits[1]),
                              torch.from_numpy(allowed), inference.MAX_ANSWER_TOKENS)
    span = None if offsets is None or int(start) < 0 else [int(offsets[int(start)][0]),
                                                           int(offsets[int(end)][1])]
    return {"id": key, "start_token": int(start), "end_token": int(end), "char_span": span}


def _dummy_target(task: str):
    return 0 if task == "seq-cls" else (0, 0) if task == "qa" else np.array([IGNORE_INDEX])


def _pad_id(loaded: LoadedRun) -> int:
    from export.tokenize import load_tokenizer

    return load_tokenizer(loaded.built.model_path).pad_token_id or 0


def split_keys(loaded: LoadedRun, split: str) -> list:
    """Cached keys of a labelled split of the run's labels file ("all": every cached key)."""
    if split == "all":
        return loaded.reader.keys()
    from runtime.labels import load_labelled
    from runtime.trainer import _labels_config

    data = load_labelled(_labels_config(loaded.config), loaded.reader)
    return [e.key for e in data.split(split)]
