"""Model building, batch sources and evaluation shared by the trainer and predict.

- `open_cache` opens a cache and refuses an empty one, or one built from another model or
  layer than asked (the manifest's weights fingerprint and layer say so).
- `build_model` makes the mode's model: recycled = upper stack (K..N-1) + adapters + head;
  full = whole encoder + adapters on all N layers + head; frozen = whole encoder with
  embeddings and layers < K frozen + adapters above K + head. The head is initialised from the
  same seed in every mode, so the modes start from the same head.
- `batch_source` gives the prefetcher's loader: cache records, or the raw text re-tokenized
  exactly as the cache build did (same tokenizer, max_length and stride).
- `evaluate` runs a split and scores it with runtime.metrics.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from runtime import metrics
from runtime.errors import RuntimeConfigError
from runtime.labels import IGNORE_INDEX, context_mask
from runtime.loader import BatchPlan, CacheBatches, TextBatches, plan_cache_batches
from runtime.prefetch import Prefetcher

PRIMARY = {"seq-cls": "accuracy", "token-cls": "f1", "qa": "f1"}  # dev metric for early stopping
MAX_ANSWER_TOKENS = 30  # longest QA answer span considered, as transformers' QA examples


@dataclasses.dataclass
class Built:
    """A model ready to train or predict, and what is needed to feed it."""

    model: torch.nn.Module  # RecycledModel or FullModel
    head: torch.nn.Module
    model_path: str
    layer: int


def open_cache(path: str, *, model: str | None = None, layer: int | None = None):
    """Open the cache at `path`; refuse an empty cache or another model's / layer's cache."""
    import cache_format

    reader = cache_format.open(path)
    m = reader.manifest
    if len(reader) == 0:
        raise RuntimeConfigError(f"cache {path!r} holds no records; build it with "
                                 "`python -m export.lower --layer K --out DIR` first")
    if layer is not None and m.get("layer") != layer:
        raise RuntimeConfigError(f"cache {path!r} holds layer {m.get('layer')}, not layer {layer}; "
                                 f"rebuild it with --layer {layer} or pass --layer {m.get('layer')}")
    if model is not None and m.get("weights_sha256"):
        from export.fingerprint import weights_sha256
        from export.models import resolve_model

        if weights_sha256(resolve_model(model)) != m["weights_sha256"]:
            raise RuntimeConfigError(
                f"cache {path!r} was built from other weights ({m.get('model')}) than {model!r} "
                "(weights_sha256 differs); rebuild the cache from this model or drop --model")
    return reader


def model_path_of(config, manifest: dict) -> str:
    path = config.model or manifest.get("model")
    if config.model:
        from export.models import resolve_model  # a known name: its installed folder

        path = resolve_model(config.model)
    if not path or not os.path.isdir(str(path)):
        raise RuntimeConfigError(f"model folder {path!r} (from the cache manifest) does not "
                                 "exist; pass --model with the checkpoint the cache was built from")
    return str(path)


def build_model(config, manifest: dict, label_names: list) -> Built:
    """The mode's model (see module docstring), with adapters applied, in train mode."""
    from runtime.adapters import AdapterConfig, apply_adapters
    from runtime.heads import build_head, resolve_pooling
    from runtime.models import FullModel, RecycledModel
    from runtime.upper import load_full, load_upper

    path, layer = model_path_of(config, manifest), int(manifest["layer"])
    encoder = load_upper(path, layer=layer) if config.mode == "recycled" else load_full(path)
    torch.manual_seed(config.seed)  # same head initialisation in every mode
    num_labels = 2 if config.task == "qa" else len(label_names)
    pooling = resolve_pooling(getattr(config, "pooling", "auto"), path)
    head = build_head(config.task, encoder, num_labels, pooling=pooling)
    if config.mode == "recycled":
        model = RecycledModel(encoder, head)
    else:
        model = FullModel(encoder, head, frozen_below=layer if config.mode == "frozen" else None)
    torch.manual_seed(config.seed + 1)
    apply_adapters(model, _adapter_config(config, AdapterConfig), layers=model.adapter_layers())
    return Built(model.to(config.device).train(), head, path, layer)


def _adapter_config(config, cls):
    if config.adapter == "lora":
        return cls(kind="lora", r=config.lora_r, alpha=config.lora_alpha,
                   targets=getattr(config, "lora_targets", "attention"))
    if config.adapter == "bottleneck":
        return cls(kind="bottleneck", bottleneck_size=config.bottleneck_size)
    return cls(kind=config.adapter)


def run_metadata(manifest: dict, data, built: Built | None = None) -> dict:
    """What RUN/config.json records beyond the TrainConfig: labels, the cache fingerprint and
    the resolved seq-cls pooling (never "auto", so a run reloads with the head it trained)."""
    keep = ("model", "layer", "weights_sha256", "tokenizer_sha256", "dtype", "hidden_size",
            "max_length", "stride", "corpus")
    extra = {} if built is None else {"pooling": getattr(built.head, "pooling", "pooler")}
    return {**extra, "label_names": list(data.label_names),
            "cache_fingerprint": {k: manifest.get(k) for k in keep}}


def corpus_records(config, manifest: dict) -> dict:
    """id -> export Record of the raw text the cache was built from (or --corpus)."""
    from export.corpus import read_corpus
    from export.defaults import BUILTIN_CORPUS, default_corpus_records

    source = config.corpus or manifest.get("corpus")
    if source in (None, BUILTIN_CORPUS):
        records = default_corpus_records() if source else None
    elif not os.path.isfile(str(source)):
        raise RuntimeConfigError(f"corpus {source!r} (named by the cache manifest) does not "
                                 "exist; pass --corpus with the file the cache was built from")
    else:
        records = read_corpus(source, text_field=manifest.get("text_field") or "text",
                              text_pair_field=manifest.get("text_pair_field"),
                              id_field=manifest.get("id_field"))
    if records is None:
        raise RuntimeConfigError("the cache manifest names no corpus; pass --corpus FILE")
    return {r.id: r for r in records}


def tokenize_for_cache(config, manifest: dict, reader, keys: list) -> tuple:
    """({key: token ids of the raw text, windowed as the cache build did}, pad id).

    The first keys are checked against the cache's token ids, so a wrong corpus or tokenizer
    is refused instead of silently training on other text.
    """
    from export.tokenize import load_tokenizer, tokenize

    records = corpus_records(config, manifest)
    ids = sorted({k if k in records else k.rsplit("#", 1)[0] for k in keys})
    missing = [i for i in ids if i not in records]
    if missing:
        raise RuntimeConfigError(f"corpus lacks {len(missing)} of the cache's examples (first: "
                                 f"{missing[0]!r}); pass --corpus with the file the cache was built from")
    tokenizer = load_tokenizer(model_path_of(config, manifest))
    encoded = tokenize([records[i] for i in ids], tokenizer,
                       max_length=int(manifest["max_length"]), stride=int(manifest.get("stride") or 0))
    out = {e.key: e.input_ids.astype(np.int64) for e in encoded}
    for key in keys[:16]:  # cheap check that the text and tokenizer are the cache's
        if key not in out or not np.array_equal(out[key], reader.token_ids(key)):
            raise RuntimeConfigError(f"the raw text of {key!r} tokenizes differently from the "
                                     "cache; pass --corpus with the file the cache was built from")
    return {k: out[k] for k in keys}, tokenizer.pad_token_id or 0


def batch_source(config, reader, built: Built, data):
    """The prefetcher's `load(keys)` for this mode."""
    targets = {e.key: e.target for e in data.examples}
    if config.mode == "recycled":
        return CacheBatches(reader, targets, config.task)
    token_ids, pad_id = tokenize_for_cache(config, reader.manifest, reader, list(targets))
    return TextBatches(token_ids, targets, config.task, pad_id)


def predict_logits(config, built: Built, source, reader, keys: list) -> dict:
    """key -> logits (numpy; per-token ones trimmed to the record's length), in eval mode."""
    plan = BatchPlan(config.token_budget, config.max_batch_size, config.shuffle_window,
                     config.windows_per_block)
    batches = plan_cache_batches(reader, keys, plan, shuffle=False)
    out = {}
    built.model.eval()
    with torch.no_grad(), Prefetcher(batches, source, device=config.device) as pf:
        for batch in pf:
            logits = built.model(batch["inputs"], batch["attention_mask"])
            lengths = batch["attention_mask"].sum(1).tolist()
            for i, key in enumerate(batch["keys"]):
                if config.task == "seq-cls":
                    out[key] = logits[i].float().cpu().numpy()
                elif config.task == "token-cls":
                    out[key] = logits[i, :lengths[i]].float().cpu().numpy()
                else:
                    out[key] = np.stack([logits[0][i, :lengths[i]].float().cpu().numpy(),
                                         logits[1][i, :lengths[i]].float().cpu().numpy()])
    built.model.train()
    return out


def evaluate(config, built: Built, source, reader, data, examples: list) -> dict:
    """Metrics of `examples`: accuracy+macro_f1 / f1 (entities) / exact_match+f1."""
    logits = predict_logits(config, built, source, reader, [e.key for e in examples])
    if config.task == "seq-cls":
        gold, pred = seq_predictions(examples, logits)
        names = data.label_names
        return {"accuracy": metrics.accuracy(gold, pred),
                "macro_f1": metrics.macro_f1([names[g] for g in gold], [names[p] for p in pred])}
    if config.task == "token-cls":
        gold, pred = [], []
        for e in examples:
            keep = e.target != IGNORE_INDEX
            gold.append([data.label_names[i] for i in e.target[keep]])
            pred.append([data.label_names[i] for i in logits[e.key].argmax(-1)[keep]])
        return {"f1": metrics.entity_f1(gold, pred)}
    answers = qa_predictions(config, reader, examples, logits)
    ids = sorted(answers)
    gold = {e.example_id: e.answers for e in examples}
    return metrics.qa_scores([gold[i] for i in ids], [answers[i] for i in ids])


def seq_predictions(examples: list, logits: dict):
    """Example-level (gold, predicted) class ids; stride windows of one example vote by mean logits."""
    summed, gold = {}, {}
    for e in examples:
        summed[e.example_id] = summed.get(e.example_id, 0) + logits[e.key]
        gold[e.example_id] = e.target
    ids = list(gold)
    return [gold[i] for i in ids], [int(np.argmax(summed[i])) for i in ids]


def qa_predictions(config, reader, examples: list, logits: dict) -> dict:
    """example id -> predicted answer text: the best span over the example's windows."""
    from runtime.heads import best_span

    records = corpus_records(config, reader.manifest)
    best = {}
    for e in examples:
        offsets = reader.offsets(e.key)
        start, end = torch.from_numpy(logits[e.key][0]), torch.from_numpy(logits[e.key][1])
        s, t, score = best_span(start, end, torch.from_numpy(context_mask(offsets)),
                                MAX_ANSWER_TOKENS)
        if int(s) < 0 or (e.example_id in best and best[e.example_id][0] >= float(score)):
            continue
        record = records[e.example_id]
        context = record.text_pair if record.text_pair is not None else record.text
        best[e.example_id] = (float(score), context[offsets[int(s)][0]:offsets[int(t)][1]])
    return {e.example_id: best.get(e.example_id, (0.0, ""))[1] for e in examples}
