"""Task metrics: accuracy and macro-F1, entity-level F1 (seqeval), SQuAD exact match and F1.

Every function takes plain Python sequences, so the trainer, predict and the tests share them.
Scores are fractions in [0, 1]; the trainer reports them as they are (the README multiplies by 100).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Sequence


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Share of positions where `pred` equals `gold` (0.0 for empty input)."""
    _check_lengths(gold, pred)
    if not gold:
        return 0.0
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def macro_f1(gold: Sequence, pred: Sequence) -> float:
    """Unweighted mean of per-class F1 over every class seen in `gold` or `pred`.

    This matches scikit-learn's `f1_score(average="macro")`: a class predicted but never
    gold counts with F1 0, so spurious predictions are penalised.
    """
    _check_lengths(gold, pred)
    classes = sorted(set(gold) | set(pred), key=str)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        scores.append(_f1(tp, fp, fn))
    return sum(scores) / len(scores)


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 over BIO-tagged sequences, as seqeval computes it (CoNLL rules)."""
    from seqeval.metrics import f1_score  # imported here: only token-cls runs need it

    _check_lengths(gold, pred)
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted; "
                             "predict exactly one tag per labelled word")
    if not any(gold) and not any(pred):
        return 0.0
    return float(f1_score([list(g) for g in gold], [list(p) for p in pred]))


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def qa_scores(gold: Sequence[Sequence[str]], pred: Sequence[str]) -> dict:
    """SQuAD v1 exact match and token F1, each the max over an example's gold answers.

    Args:
        gold: for each example, its list of acceptable answer strings.
        pred: for each example, the predicted answer string.
    Returns:
        {"exact_match": float, "f1": float}, averaged over examples.
    """
    _check_lengths(gold, pred)
    if not gold:
        return {"exact_match": 0.0, "f1": 0.0}
    em = f1 = 0.0
    for answers, p in zip(gold, pred):
        answers = list(answers) or [""]
        em += max(float(normalize_answer(a) == normalize_answer(p)) for a in answers)
        f1 += max(_token_f1(a, p) for a in answers)
    return {"exact_match": em / len(gold), "f1": f1 / len(gold)}


def _token_f1(gold: str, pred: str) -> float:
    g, p = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not g or not p:
        return float(g == p)
    common = sum((collections.Counter(g) & collections.Counter(p)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _f1(tp: int, fp: int, fn: int) -> float:
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def _check_lengths(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold items but {len(pred)} predictions; "
                         "pass one prediction per gold item")
