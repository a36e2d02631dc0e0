"""runtime.heads: heads equal transformers' AutoModelFor* heads (logits and loss); best_span."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import RuntimeConfigError
from runtime.heads import build_head, best_span, head_state_from
from tiny_encoders import IDS, batch, make_config, real_positions

TOL = 1e-4
TASKS = {  # task -> (AutoModelFor* class name, num_labels)
    "seq-cls": ("AutoModelForSequenceClassification", 3),
    "token-cls": ("AutoModelForTokenClassification", 5),
    "qa": ("AutoModelForQuestionAnswering", 2),
}
HEAD_IDS = IDS + ["modernbert-mean"]


def _config(name):
    if name == "modernbert-mean":
        config = make_config("modernbert")
        config.classifier_pooling = "mean"
        return config
    return make_config(name)


def _labels(task, mask, num_labels):
    gen = torch.Generator().manual_seed(7)
    batch_size, width = mask.shape
    if task == "seq-cls":
        return torch.randint(num_labels, (batch_size,), generator=gen)
    if task == "token-cls":
        labels = torch.randint(num_labels, (batch_size, width), generator=gen)
        return labels.masked_fill(~mask.bool(), -100)  # padding ignored, as the loader labels it
    # qa: the last example's answer lies beyond the sequence, which transformers ignores
    return (torch.tensor([1, 0, width + 3]), torch.tensor([4, 2, width + 5]))


@pytest.mark.parametrize("task", list(TASKS), ids=list(TASKS))
@pytest.mark.parametrize("name", HEAD_IDS, ids=HEAD_IDS)
def test_head_matches_transformers(name, task):
    import transformers

    cls_name, num_labels = TASKS[task]
    config = _config(name)
    config.num_labels = num_labels
    torch.manual_seed(0)
    hf = getattr(transformers, cls_name).from_config(config).eval()
    ids, mask = batch(config)
    labels = _labels(task, mask, num_labels)
    kw = dict(start_positions=labels[0], end_positions=labels[1]) if task == "qa" else dict(labels=labels)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, **kw)
        hidden = getattr(hf, hf.base_model_prefix)(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(1)  # a different init, so equality comes from the copied weights
    head = build_head(task, config, num_labels)
    head.load_state_dict(head_state_from(hf))
    head.eval()
    with torch.no_grad():
        logits = head(hidden, mask)
        loss = head.loss(logits, labels)
    if task == "qa":
        assert (logits[0] - ref.start_logits).abs().max() <= TOL
        assert (logits[1] - ref.end_logits).abs().max() <= TOL
    elif task == "token-cls":
        assert logits.shape == (*mask.shape, num_labels)
        assert (real_positions(logits, mask) - real_positions(ref.logits, mask)).abs().max() <= TOL
    else:
        assert logits.shape == (mask.shape[0], num_labels)
        assert (logits - ref.logits).abs().max() <= TOL
    assert abs(loss.item() - ref.loss.item()) <= TOL
    assert head.task == task


def test_bert_pooler_starts_from_the_checkpoint(tmp_path):
    from transformers import BertForSequenceClassification

    from runtime import load_upper
    from tiny_encoders import save_tiny

    path = save_tiny("bert", tmp_path)
    upper = load_upper(path, layer=2)
    head = build_head("seq-cls", upper, 4)  # a stack passes its config and pooler weights
    hf = BertForSequenceClassification.from_pretrained(path, num_labels=4)
    assert torch.equal(head.pooler.dense.weight, hf.bert.pooler.dense.weight)
    assert torch.equal(head.pooler.dense.bias, hf.bert.pooler.dense.bias)


def test_regression_head_uses_mse():
    head = build_head("seq-cls", make_config("roberta"), 1)
    logits = torch.tensor([[0.5], [2.0]])
    assert head.loss(logits, torch.tensor([1.0, 0.0])).item() == pytest.approx((0.25 + 4.0) / 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (("ner", 3), "task 'ner' is not one of seq-cls, token-cls, qa; pick one with --task"),
        (("seq-cls", 0), "num_labels=0; expected a positive integer (the number of classes)"),
        (("qa", 3), "num_labels=3 for task 'qa'; expected 2 (start and end logits)"),
    ],
    ids=["task", "num-labels", "qa-labels"],
)
def test_bad_head_arguments(args, message):
    with pytest.raises(RuntimeConfigError) as err:
        build_head(args[0], make_config("bert"), args[1])
    assert str(err.value) == message


def test_best_span_respects_context_and_length():
    start = torch.tensor([[9.0, 1.0, 0.0, 5.0, 0.0, 0.0]])
    end = torch.tensor([[9.0, 0.0, 0.0, 0.0, 0.0, 6.0]])
    context = torch.tensor([[0, 1, 1, 1, 1, 1]])  # token 0 is the question: never an answer
    s, e, score = best_span(start, end, context, max_answer_len=3)
    assert (s.item(), e.item()) == (3, 5) and score.item() == 11.0
    s, e, score = best_span(start, end, context, max_answer_len=2)  # 3..5 is too long now
    assert (s.item(), e.item()) == (4, 5) and score.item() == 6.0
    s, e, _ = best_span(start[0], end[0], torch.zeros(6), max_answer_len=2)  # no context at all
    assert (s.item(), e.item()) == (-1, -1)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_best_span_equals_brute_force(seq_len, max_len, seed):
    gen = torch.Generator().manual_seed(seed)
    start, end = torch.randn(seq_len, generator=gen), torch.randn(seq_len, generator=gen)
    context = (torch.rand(seq_len, generator=gen) > 0.3).long()
    spans = [(start[i] + end[j], i, j) for i in range(seq_len) for j in range(i, min(seq_len, i + max_len))
             if context[i] and context[j]]
    s, e, score = best_span(start, end, context, max_len)
    if not spans:
        assert (s.item(), e.item()) == (-1, -1)
    else:
        best = max(spans)
        assert (s.item(), e.item()) == (best[1], best[2])
        assert score.item() == pytest.approx(best[0].item())


def test_qa_loss_takes_the_loaders_span_tensor():
    """runtime.loader.pad_targets batches qa spans as one [B, 2] tensor; the loss must take it."""
    head = build_head("qa", make_config("bert"), 2)
    torch.manual_seed(0)
    logits = (torch.randn(3, 5), torch.randn(3, 5))
    spans = torch.tensor([[0, 1], [2, 4], [5, 5]])  # the last one is outside: ignored
    assert torch.equal(head.loss(logits, spans), head.loss(logits, (spans[:, 0], spans[:, 1])))
