"""runtime.heads: task heads that match transformers' AutoModelFor* heads, per architecture.

`build_head(task, config, num_labels)` returns the head that the architecture's
AutoModelForSequenceClassification / TokenClassification / QuestionAnswering puts on top of the
encoder, with the same submodule names, so `head.load_state_dict(head_state_from(hf_model))`
copies a transformers head across and the full-model baseline and the recycled model share code.

    seq-cls    head(last_hidden [B,T,H], mask [B,T]) -> logits [B, C]; loss(logits, labels [B])
    token-cls  -> logits [B, T, C]; loss(logits, labels [B, T]) with -100 ignored
    qa         -> (start [B, T], end [B, T]); loss(logits, (start_positions [B], end_positions [B]))

Sequence pooling follows each architecture: BERT's pooler (dense+tanh over [CLS]) then dropout
and classifier; RoBERTa/XLM-R/CamemBERT/MPNet: the <s> classification head (dense, tanh,
out_proj); ELECTRA the same with gelu; DistilBERT pre_classifier+ReLU; DeBERTa-v2 ContextPooler;
ModernBERT its prediction head over [CLS] or the masked mean (config.classifier_pooling).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from export.architectures import hidden_size
from runtime.architectures import first_set, upper_architecture
from runtime.errors import RuntimeConfigError
from runtime.pooling import check_pooling, masked_mean


def _hf_class(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), name)


class TaskHead(nn.Module):
    """Base of all heads: `task`, `num_labels`, forward(hidden, mask) and loss(logits, labels)."""

    task = ""

    def __init__(self, config, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.arch = upper_architecture(config)


class SequenceClassificationHead(TaskHead):
    """Pools the sequence the architecture's way, then classifies: -> [B, C].

    pooling "pooler" is the architecture's AutoModelForSequenceClassification head (the
    table's `seq_pooler`); "cls" and "mean" are dropout + one linear layer over [CLS] or the mean
    of the real tokens, as sentence-transformers pools.
    """

    task = "seq-cls"

    def __init__(self, config, num_labels: int, pooler_state: dict | None = None,
                 pooling: str = "pooler") -> None:
        super().__init__(config, num_labels)
        cfg = copy.deepcopy(config)
        cfg.num_labels = num_labels
        self.config = cfg
        self.pooling = check_pooling(pooling)
        self.kind = "linear" if pooling != "pooler" else self.arch.seq_pooler
        if self.kind == "hf-head":  # transformers' own head: dense, activation, out_proj
            self.classifier = _hf_class(*self.arch.seq_head)(cfg)
            return
        width = hidden_size(config)
        if self.kind == "bert-pooler":
            self.pooler = _hf_class("bert", "BertPooler")(cfg)
            if pooler_state is not None:
                self.pooler.load_state_dict(pooler_state)  # as BertFor* would load it
        elif self.kind == "pre-classifier":
            self.pre_classifier = nn.Linear(width, width)
        elif self.kind == "context-pooler":
            self.pooler = _hf_class("deberta_v2", "ContextPooler")(cfg)
        elif self.kind == "prediction-head":
            self.head = _hf_class("modernbert", "ModernBertPredictionHead")(cfg)
        self.dropout = nn.Dropout(first_set(cfg, self.arch.seq_dropout or self.arch.token_dropout))
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "hf-head":
            return self.classifier(hidden)  # these heads take [B, T, H] and pool token 0 themselves
        return self.classifier(self.dropout(self._pool(hidden, attention_mask)))  # (B, C)

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, T, H] -> [B, H], before dropout and the classifier."""
        if self.kind == "linear":
            return masked_mean(hidden, attention_mask) if self.pooling == "mean" else hidden[:, 0]
        if self.kind in ("bert-pooler", "context-pooler"):
            return self.pooler(hidden)  # BertPooler (dense + tanh over [CLS]) / ContextPooler
        if self.kind == "pre-classifier":
            return F.relu(self.pre_classifier(hidden[:, 0]))
        mean = self.config.classifier_pooling == "mean"  # prediction-head (ModernBERT)
        return self.head(masked_mean(hidden, attention_mask) if mean else hidden[:, 0])

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy on long labels [B] (optionally class-weighted); mean squared error
        when num_labels == 1."""
        if self.num_labels == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1),
                               weight=class_weights)


class _PerTokenHead(TaskHead):
    """Shared body of token-cls and qa: [ModernBERT head] -> dropout -> linear, per token."""

    out_name = "classifier"

    def __init__(self, config, num_labels: int, dropout: float) -> None:
        super().__init__(config, num_labels)
        if self.arch.prediction_head:
            self.head = _hf_class("modernbert", "ModernBertPredictionHead")(config)
        # HF names the dropout `drop` in ModernBERT; it has no weights, so the name is free.
        self.dropout = nn.Dropout(dropout)
        setattr(self, self.out_name, nn.Linear(hidden_size(config), num_labels))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.arch.prediction_head:
            hidden = self.head(hidden)
        return getattr(self, self.out_name)(self.dropout(hidden))  # (B, T, C)


class TokenClassificationHead(_PerTokenHead):
    """Per-token labels: -> [B, T, C]; loss ignores label -100 (padding, non-first sub-tokens)."""

    task = "token-cls"

    def __init__(self, config, num_labels: int) -> None:
        super().__init__(config, num_labels, first_set(config, upper_architecture(config).token_dropout))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._logits(hidden)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             class_weights: torch.Tensor | None = None) -> torch.Tensor:
        flat = logits.reshape(-1, self.num_labels).float()  # (B*T, C)
        return F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, weight=class_weights)


class QuestionAnsweringHead(_PerTokenHead):
    """Extractive QA: -> (start_logits [B, T], end_logits [B, T])."""

    task = "qa"

    def __init__(self, config, num_labels: int = 2) -> None:
        if num_labels != 2:
            raise RuntimeConfigError(
                f"num_labels={num_labels} for task 'qa'; expected 2 (start and end logits)"
            )
        arch = upper_architecture(config)
        self.out_name = arch.qa_output  # transformers' name for the output layer
        super().__init__(config, num_labels,
                         first_set(config, arch.qa_dropout, arch.qa_dropout_default))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        start, end = self._logits(hidden).split(1, dim=-1)  # 2 x (B, T, 1)
        return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()

    def loss(self, logits, labels) -> torch.Tensor:
        """Mean of start and end cross-entropy; positions outside the sequence are ignored.

        labels: (start_positions [B], end_positions [B]), or one [B, 2] tensor of spans as
        runtime.loader.pad_targets batches them.
        """
        if torch.is_tensor(labels):
            labels = labels.reshape(-1, 2).unbind(-1)  # (B, 2) -> 2 x (B,)
        (start_logits, end_logits), (start_pos, end_pos) = logits, labels
        ignored = start_logits.size(1)  # as transformers: clamp to T, then ignore index T
        start_pos, end_pos = start_pos.view(-1).clamp(0, ignored), end_pos.view(-1).clamp(0, ignored)
        start_loss = F.cross_entropy(start_logits.float(), start_pos, ignore_index=ignored)
        end_loss = F.cross_entropy(end_logits.float(), end_pos, ignore_index=ignored)
        return (start_loss + end_loss) / 2


def build_head(task: str, config, num_labels: int, *, pooler_state: dict | None = None,
               pooling: str = "pooler") -> TaskHead:
    """The architecture's head for `task` in {"seq-cls", "token-cls", "qa"}.

    Args:
        task: which head.
        config: the encoder's transformers config, or a stack from `load_upper`/`load_full`
            (then its config and checkpoint pooler weights are used).
        num_labels: classes (seq-cls, token-cls); 2 for qa.
        pooler_state: BERT pooler weights to start from (default: the stack's, if given one).
        pooling: seq-cls only: "pooler" (the AutoModelForSequenceClassification head), "cls"
            or "mean" (runtime.options.POOLINGS; runtime.pooling.resolve_pooling turns "auto"
            into one of them).
    """
    if hasattr(config, "layers") and hasattr(config, "config"):  # a stack was passed
        pooler_state = pooler_state if pooler_state is not None else config.pooler_state
        config = config.config
    from runtime.tasks import task_named  # the registry imports these heads

    task_kind = task_named(task)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise RuntimeConfigError(
            f"num_labels={num_labels!r}; expected a positive integer (the number of classes)"
        )
    return task_kind.make_head(config, num_labels, pooler_state, pooling)


def head_state_from(hf_model: nn.Module) -> dict:
    """The head weights of a transformers AutoModelFor* model, named as our heads name them.

    Drops the encoder (`<base_model_prefix>.*`) except BERT's pooler, which our BERT seq-cls
    head owns as `pooler.*`.
    """
    prefix = hf_model.base_model_prefix + "."
    state = {}
    for key, value in hf_model.state_dict().items():
        if key.startswith(prefix + "pooler."):
            state[key[len(prefix):]] = value
        elif not key.startswith(prefix):
            state[key] = value
    return state


def best_span(start_logits, end_logits, context_mask, max_answer_len: int):
    """Best answer span per example: argmax of start[i] + end[j], i <= j < i + max_answer_len.

    Args:
        start_logits, end_logits: [B, T] (or [T]).
        context_mask: [B, T] 0/1, 1 where a token may be part of the answer (the context).
        max_answer_len: longest span in tokens.
    Returns:
        (start [B], end [B], score [B]) long, long, float; start = end = -1 where no valid span.
    """
    if max_answer_len < 1:
        raise RuntimeConfigError(f"max_answer_len={max_answer_len}; expected >= 1 token")
    squeeze = start_logits.dim() == 1
    if squeeze:
        start_logits, end_logits, context_mask = start_logits[None], end_logits[None], context_mask[None]
    seq_len = start_logits.shape[1]
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, T_start, T_end)
    idx = torch.arange(seq_len, device=scores.device)
    width = idx[None, :] - idx[:, None]  # (T, T): end - start
    ok = (width >= 0) & (width < max_answer_len)
    ctx = context_mask.bool()
    ok = ok[None] & ctx[:, :, None] & ctx[:, None, :]  # (B, T, T)
    scores = scores.masked_fill(~ok, float("-inf"))
    best, flat = scores.flatten(1).max(dim=1)  # (B,)
    start, end = flat // seq_len, flat % seq_len
    none = torch.isinf(best)
    start, end = start.masked_fill(none, -1), end.masked_fill(none, -1)
    if squeeze:
        return start[0], end[0], best[0]
    return start, end, best
