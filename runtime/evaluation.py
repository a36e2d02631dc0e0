"""Running a model over cached keys and scoring a split: what training's dev and test
evaluations and `runtime.predict` share.

`predict_logits` batches the keys with the run's own batch plan (unshuffled), runs the model in
eval mode and cuts each example's logits as its task says; `evaluate` scores them with the
task's metrics (runtime.tasks).
"""

from __future__ import annotations

import torch

from runtime.batches import model_inputs
from runtime.config import batch_plan
from runtime.inputs import corpus_records
from runtime.loader import plan_cache_batches
from runtime.prefetch import Prefetcher
from runtime.tasks import task_named


def predict_logits(config, built, source, reader, keys: list) -> dict:
    """key -> logits (numpy; per-token ones trimmed to the record's length), in eval mode."""
    task = task_named(config.task)
    batches = plan_cache_batches(reader, keys, batch_plan(config), shuffle=False)
    out = {}
    built.model.eval()
    with torch.no_grad(), Prefetcher(batches, source, device=config.device) as pf:
        for batch in pf:
            logits = built.model(*model_inputs(batch))
            lengths = batch["attention_mask"].sum(1).tolist()
            for i, key in enumerate(batch["keys"]):
                out[key] = task.example_logits(logits, i, lengths[i])
    built.model.train()
    return out


def evaluate(config, built, source, reader, data, examples: list) -> dict:
    """The task's metrics of `examples` (accuracy+macro_f1 / f1 (entities) / exact_match+f1)."""
    logits = predict_logits(config, built, source, reader, [e.key for e in examples])

    def contexts():  # only QA reads the raw corpus
        return AnswerContexts(reader, corpus_records(config, reader.manifest))

    return task_named(config.task).score(examples, logits, data.label_names, contexts)


class AnswerContexts:
    """What QA cuts predicted answers from: a record's offsets, and the raw text they index
    (the second text of a pair, where the corpus has pairs)."""

    def __init__(self, reader, records: dict):
        self.reader, self.records = reader, records

    def offsets(self, key: str):
        return self.reader.offsets(key)

    def context(self, example_id: str) -> str:
        record = self.records[example_id]
        return record.text_pair if record.text_pair is not None else record.text
