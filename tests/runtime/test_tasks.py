"""runtime.tasks: one registry owns what each task means; nothing else compares task names."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.errors import RuntimeConfigError
from runtime.options import TASK_NAMES
from runtime.tasks import TASKS, task_named

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def test_registry_names_match_their_heads():
    assert tuple(TASKS) == TASK_NAMES == ("seq-cls", "token-cls", "qa")
    for name, task in TASKS.items():
        head_class = type(task).make_head.__code__.co_names  # the head class it builds
        assert task.name == name and any(n.endswith("Head") for n in head_class)


def test_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(RuntimeConfigError, match="'ner' is not one of seq-cls, token-cls, qa"):
        task_named("ner")


def test_pad_targets_per_task():
    assert task_named("seq-cls").pad_targets([1, 0], 5).tolist() == [1, 0]
    tok = task_named("token-cls").pad_targets([np.array([1, -100]), np.array([2])], 3)
    assert tok.tolist() == [[1, -100, -100], [2, -100, -100]]
    qa = task_named("qa").pad_targets([(1, 2)], 4)
    assert qa.dtype == torch.long and qa.tolist() == [[1, 2]]


def test_example_logits_cut_per_token_tasks_to_the_record():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    assert task_named("token-cls").example_logits(logits, 1, 2).shape == (2, 3)
    assert task_named("seq-cls").example_logits(logits[:, 0], 1, 2).shape == (3,)
    start, end = logits[..., 0], logits[..., 1]
    qa = task_named("qa").example_logits((start, end), 0, 3)
    assert qa.shape == (2, 3) and qa[1].tolist() == end[0, :3].tolist()


def test_describe_gives_each_task_its_prediction_format():
    seq = task_named("seq-cls").describe("k", np.array([0.0, 2.0]), [1, 2], None, ["a", "b"])
    assert seq["label"] == "b" and seq["score"] == pytest.approx(np.exp(2) / (1 + np.exp(2)))
    offsets = np.array([[0, 0], [0, 3], [4, 7], [0, 0]])
    tok = task_named("token-cls").describe("k", np.eye(2)[[0, 1, 0, 1]], [1, 5, 6, 2],
                                           offsets, ["O", "B-x"])
    assert tok["labels"] == ["B-x", "O"] and tok["offsets"] == [[0, 3], [4, 7]]
    pair = np.array([[0, 0], [0, 3], [0, 0], [0, 4], [5, 8], [0, 0]])  # [CLS] q [SEP] c c [SEP]
    span = np.full((2, 6), -5.0)
    span[0, 1], span[0, 3], span[1, 4] = 9.0, 3.0, 3.0  # the question's token is never an answer
    qa = task_named("qa").describe("k", span, [1, 5, 2, 6, 7, 2], pair, [])
    assert (qa["start_token"], qa["end_token"], qa["char_span"]) == (3, 4, [0, 8])


def test_only_qa_has_no_label_names_and_no_class_weights():
    assert [t.has_label_names for t in TASKS.values()] == [True, True, False]
    assert [t.class_weighted for t in TASKS.values()] == [True, True, False]
    assert task_named("qa").num_labels(["ignored"]) == 2


def _task_name_comparisons(path: Path, names=TASK_NAMES) -> list:
    """Lines of `path` that compare something with one of `names` (task names unless told),
    or key a dict by one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.Dict):
            parts = [k for k in node.keys if k is not None]
        else:
            continue
        for part in parts:
            values = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
            if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_of_runtime_compares_task_names():
    """The task string is looked up in one place (task_named); everything else asks its Task."""
    found = [hit for p in sorted(RUNTIME.glob("*.py")) for hit in _task_name_comparisons(p)]
    assert found == []
