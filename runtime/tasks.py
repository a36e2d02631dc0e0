"""The task registry: what `--task seq-cls | token-cls | qa` means, owned in one place.

Each Task owns its head, what it makes of a labels-file row, how targets are batched, how a
batch's logits are cut per example, its metrics (and the primary one that early stopping
watches), the prediction format, and the names the hand-off uses (transformers Auto class,
pipeline, peft task type). `task_named(name)` is the one place a task string is looked up;
everything else asks the Task it gets (as peft keeps one mapping from task type to classes).
"""

from __future__ import annotations

import numpy as np
import torch

from runtime import metrics, targets
from runtime.options import TASK_NAMES
from runtime.errors import RuntimeConfigError
from runtime.heads import (QuestionAnsweringHead, SequenceClassificationHead,
                           TokenClassificationHead, best_span)
from runtime.targets import IGNORE_INDEX

MAX_ANSWER_TOKENS = 30  # longest QA answer span considered, as transformers' QA examples


class Task:
    """Base: one task kind. Subclasses fill in the class attributes and the methods."""

    name = ""
    primary_metric = ""  # dev metric early stopping maximises
    auto_class = ""  # transformers AutoModelFor* the hand-off loads with
    remote_class = ""  # runtime.handoff_modeling class where transformers has none
    pipeline = None  # transformers pipeline name for the model card (None: none fits)
    peft_task_type = ""  # peft's TaskType name
    has_label_names = True  # False: the labels are spans, not classes
    per_token = True  # logits per token ([B, T, ...]); False: one row per example
    pools = False  # the head pools the sequence (`--pooling` applies)
    output_names = ("logits",)  # the exported model's outputs, as transformers names them
    class_weighted = True  # class-frequency weights apply to its loss
    # What `--head-init probe` fits the classifier on: "pooled" (one row an example), "tokens"
    # (each labelled token's state), or None (no linear probe of this task).
    probe_features = None

    def make_head(self, config, num_labels: int, pooler_state, pooling: str):
        raise NotImplementedError

    def num_labels(self, label_names: list) -> int:
        return len(label_names)

    def row_labels(self, config, row) -> list:
        """The label names a labels-file row contributes to the label set."""
        raise NotImplementedError

    def check_rows(self, config, rows: dict, reader, pairs: list) -> None:
        """Refuse rows that cannot be placed on the cached records (before any target)."""

    def target(self, config, row, reader, key: str, index: dict) -> tuple:
        """(target, gold answers) of one cached record."""
        raise NotImplementedError

    def pad_targets(self, batch_targets: list, width: int) -> torch.Tensor:
        raise NotImplementedError

    def dummy_target(self):
        """A target for records predicted without labels (never scored)."""
        raise NotImplementedError

    def example_logits(self, logits, i: int, length: int) -> np.ndarray:
        """Example i's logits of a batch, numpy, per-token ones cut to its `length` tokens."""
        return logits[i, :length].float().cpu().numpy()

    def score(self, examples: list, logits: dict, label_names: list, contexts) -> dict:
        """Metrics of `examples` from key -> logits. `contexts()` gives what QA cuts answers
        from (runtime.evaluation.AnswerContexts); only QA calls it, so the others never read
        the raw corpus."""
        raise NotImplementedError

    def describe(self, key: str, logits: np.ndarray, token_ids, offsets, label_names) -> dict:
        """One prediction as `runtime.predict` prints it."""
        raise NotImplementedError


class SequenceClassification(Task):
    name = "seq-cls"
    primary_metric = "accuracy"
    auto_class = "AutoModelForSequenceClassification"
    remote_class = "RecycledForSequenceClassification"
    pipeline = "text-classification"
    peft_task_type = "SEQ_CLS"
    per_token = False
    pools = True
    probe_features = "pooled"

    def make_head(self, config, num_labels, pooler_state, pooling):
        return SequenceClassificationHead(config, num_labels, pooler_state, pooling)

    def row_labels(self, config, row):
        return [str(row[config.label_field])]

    def target(self, config, row, reader, key, index):
        return index[str(row[config.label_field])], ()

    def pad_targets(self, batch_targets, width):
        return torch.tensor(batch_targets, dtype=torch.long)  # (B,)

    def dummy_target(self):
        return 0

    def example_logits(self, logits, i, length):
        return logits[i].float().cpu().numpy()

    def score(self, examples, logits, label_names, contexts):
        gold, pred = seq_predictions(examples, logits)
        return {"accuracy": metrics.accuracy(gold, pred),
                "macro_f1": metrics.macro_f1([label_names[g] for g in gold],
                                             [label_names[p] for p in pred])}

    def describe(self, key, logits, token_ids, offsets, label_names):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {"id": key, "label": label_names[int(p.argmax())], "score": float(p.max())}


class TokenClassification(Task):
    name = "token-cls"
    primary_metric = "f1"
    auto_class = "AutoModelForTokenClassification"
    remote_class = "RecycledForTokenClassification"
    pipeline = "token-classification"
    peft_task_type = "TOKEN_CLS"
    probe_features = "tokens"

    def make_head(self, config, num_labels, pooler_state, pooling):
        return TokenClassificationHead(config, num_labels)

    def row_labels(self, config, row):
        return [str(v) for v in targets.as_list(row[config.label_field]) if v is not None]

    def check_rows(self, config, rows, reader, pairs):
        targets.check_words_match(config, rows, reader, pairs)

    def target(self, config, row, reader, key, index):
        return targets.token_target(config, row, reader, key, index), ()

    def pad_targets(self, batch_targets, width):
        out = torch.full((len(batch_targets), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for i, t in enumerate(batch_targets):
            out[i, :len(t)] = torch.as_tensor(t)
        return out

    def dummy_target(self):
        return np.array([IGNORE_INDEX])

    def score(self, examples, logits, label_names, contexts):
        gold, pred = [], []
        for e in examples:
            keep = e.target != IGNORE_INDEX
            gold.append([label_names[i] for i in e.target[keep]])
            pred.append([label_names[i] for i in logits[e.key].argmax(-1)[keep]])
        return {"f1": metrics.entity_f1(gold, pred)}

    def describe(self, key, logits, token_ids, offsets, label_names):
        real = _real_tokens(token_ids, offsets)
        tags = logits.argmax(-1)
        return {"id": key, "offsets": [list(map(int, offsets[t])) for t in real]
                if offsets is not None else None,
                "labels": [label_names[int(tags[t])] for t in real]}


class QuestionAnswering(Task):
    name = "qa"
    primary_metric = "f1"
    auto_class = "AutoModelForQuestionAnswering"
    remote_class = "RecycledForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    has_label_names = False
    class_weighted = False
    output_names = ("start_logits", "end_logits")

    def make_head(self, config, num_labels, pooler_state, pooling):
        return QuestionAnsweringHead(config, num_labels)

    def num_labels(self, label_names):
        return 2  # start and end logits

    def row_labels(self, config, row):
        return []

    def target(self, config, row, reader, key, index):
        return targets.qa_target(config, row[config.label_field], reader, key)

    def pad_targets(self, batch_targets, width):
        return torch.tensor(batch_targets, dtype=torch.long).reshape(-1, 2)  # (B, 2)

    def dummy_target(self):
        return (0, 0)

    def example_logits(self, logits, i, length):
        start, end = logits
        return np.stack([start[i, :length].float().cpu().numpy(),
                         end[i, :length].float().cpu().numpy()])

    def score(self, examples, logits, label_names, contexts):
        answers = qa_predictions(examples, logits, contexts())
        ids = sorted(answers)
        gold = {e.example_id: e.answers for e in examples}
        return metrics.qa_scores([gold[i] for i in ids], [answers[i] for i in ids])

    def describe(self, key, logits, token_ids, offsets, label_names):
        allowed = (np.ones(len(token_ids), np.int64) if offsets is None
                   else targets.context_mask(offsets))
        start, end, _ = best_span(torch.from_numpy(logits[0]), torch.from_numpy(logits[1]),
                                  torch.from_numpy(allowed), MAX_ANSWER_TOKENS)
        span = None if offsets is None or int(start) < 0 else [int(offsets[int(start)][0]),
                                                               int(offsets[int(end)][1])]
        return {"id": key, "start_token": int(start), "end_token": int(end), "char_span": span}


TASKS = {t.name: t for t in (SequenceClassification(), TokenClassification(),
                             QuestionAnswering())}


def task_named(name: str) -> Task:
    """The Task called `name`, or a one-line error listing the known ones."""
    task = TASKS.get(name)
    if task is None:
        raise RuntimeConfigError(f"task {name!r} is not one of {', '.join(TASK_NAMES)}; "
                                 "pick one with --task")
    return task


def seq_predictions(examples: list, logits: dict):
    """Example-level (gold, predicted) class ids; stride windows of one example vote by mean
    logits."""
    summed, gold = {}, {}
    for e in examples:
        summed[e.example_id] = summed.get(e.example_id, 0) + logits[e.key]
        gold[e.example_id] = e.target
    ids = list(gold)
    return [gold[i] for i in ids], [int(np.argmax(summed[i])) for i in ids]


def qa_predictions(examples: list, logits: dict, contexts) -> dict:
    """example id -> predicted answer text: the best span over the example's windows.

    contexts: `.offsets(key)` (the cache's character offsets of a record) and
    `.context(example_id)` (the raw text they index; see runtime.evaluation.AnswerContexts).
    """
    best = {}
    for e in examples:
        offsets = contexts.offsets(e.key)
        start, end = torch.from_numpy(logits[e.key][0]), torch.from_numpy(logits[e.key][1])
        s, t, score = best_span(start, end, torch.from_numpy(targets.context_mask(offsets)),
                                MAX_ANSWER_TOKENS)
        if int(s) < 0 or (e.example_id in best and best[e.example_id][0] >= float(score)):
            continue
        text = contexts.context(e.example_id)
        best[e.example_id] = (float(score), text[offsets[int(s)][0]:offsets[int(t)][1]])
    return {e.example_id: best.get(e.example_id, (0.0, ""))[1] for e in examples}


def _real_tokens(token_ids, offsets) -> list:
    return [t for t in range(len(token_ids)) if offsets is None or offsets[t][1] > offsets[t][0]]
