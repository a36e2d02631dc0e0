"""runtime.metrics: known values, edge cases, and agreement with the reference definitions."""

import pytest

from runtime import metrics


@pytest.mark.parametrize("gold,pred,expected", [
    ([1, 2, 3, 4], [1, 2, 0, 4], 0.75),
    (["a", "b"], ["a", "b"], 1.0),
    ([], [], 0.0),
], ids=["three-of-four", "strings", "empty"])
def test_accuracy(gold, pred, expected):
    assert metrics.accuracy(gold, pred) == pytest.approx(expected)


def test_macro_f1_matches_hand_computation():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    # a: tp1 fp1 fn1 -> 0.5; b: tp2 fp1 fn0 -> 0.8; c: tp0 fn1 -> 0
    assert metrics.macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_penalises_spurious_class():
    assert metrics.macro_f1(["a", "a"], ["a", "z"]) == pytest.approx((2 / 3 + 0.0) / 2)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="2 gold items but 1 predictions"):
        metrics.accuracy([1, 2], [1])


def test_entity_f1_counts_whole_entities():
    gold = [["B-person", "I-person", "O", "B-geo-loc"]]
    pred = [["B-person", "O", "O", "B-geo-loc"]]  # person cut short: wrong entity
    # 1 of 2 predicted correct, 1 of 2 gold found -> F1 0.5
    assert metrics.entity_f1(gold, pred) == pytest.approx(0.5)
    assert metrics.entity_f1(gold, gold) == pytest.approx(1.0)


def test_entity_f1_refuses_ragged_sequences():
    with pytest.raises(ValueError, match="sequence 0: 2 gold tags but 1 predicted"):
        metrics.entity_f1([["O", "O"]], [["O"]])


def test_qa_scores_normalise_and_take_the_best_answer():
    scores = metrics.qa_scores([["The Eiffel Tower", "Eiffel"], ["Paris France"]],
                               ["eiffel tower!", "Paris"])
    assert scores["exact_match"] == pytest.approx(0.5)
    # second: precision 1, recall 0.5 -> F1 2/3
    assert scores["f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_normalize_answer_drops_articles_and_punctuation():
    assert metrics.normalize_answer("  The  cat, a dog! ") == "cat dog"
