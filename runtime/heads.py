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

from runtime.errors import RuntimeConfigError

# seq-cls pooling: "pooler" is the architecture's AutoModelForSequenceClassification head;
# "cls" and "mean" are dropout + one linear layer over [CLS] or the mean of the real tokens.
POOLINGS = ("pooler", "cls", "mean")
_HF_HEAD_CLASSES = {  # model_type -> (module, class) of the <s>/[CLS] classification head
    "roberta": ("roberta", "RobertaClassificationHead"),
    "xlm-roberta": ("xlm_roberta", "XLMRobertaClassificationHead"),
    "camembert": ("camembert", "CamembertClassificationHead"),
    "electra": ("electra", "ElectraClassificationHead"),
    "mpnet": ("mpnet", "MPNetClassificationHead"),
}


def _hf_class(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(f"transformers.models.{module}.modeling_{module}"), name)


def _dropout_p(config) -> float:
    """The classifier dropout transformers uses for this config's token/seq heads."""
    if config.model_type == "distilbert":
        return config.dropout
    if config.model_type == "modernbert":
        return config.classifier_dropout
    if config.model_type == "deberta-v2":
        return config.hidden_dropout_prob  # token-cls; seq-cls uses cls_dropout (see below)
    p = getattr(config, "classifier_dropout", None)
    return config.hidden_dropout_prob if p is None else p


class TaskHead(nn.Module):
    """Base of all heads: `task`, `num_labels`, forward(hidden, mask) and loss(logits, labels)."""

    task = ""

    def __init__(self, config, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.model_type = config.model_type


class SequenceClassificationHead(TaskHead):
    """Pools the sequence the architecture's way, then classifies: -> [B, C]."""

    task = "seq-cls"

    def __init__(self, config, num_labels: int, pooler_state: dict | None = None,
                 pooling: str = "pooler") -> None:
        super().__init__(config, num_labels)
        if pooling not in POOLINGS:
            raise RuntimeConfigError(f"pooling {pooling!r} is unknown; expected one of {list(POOLINGS)}")
        cfg = copy.deepcopy(config)
        cfg.num_labels = num_labels
        kind = config.model_type
        self.config = cfg
        self.pooling = pooling
        if pooling != "pooler":  # cls / mean: dropout + one linear layer, as sentence-transformers
            hidden = config.hidden_size if kind != "distilbert" else config.dim
            self.dropout = nn.Dropout(self._seq_dropout(cfg))
            self.classifier = nn.Linear(hidden, num_labels)
            return
        if kind in _HF_HEAD_CLASSES:
            self.classifier = _hf_class(*_HF_HEAD_CLASSES[kind])(cfg)
            return
        hidden = config.hidden_size if kind != "distilbert" else config.dim
        if kind == "bert":
            self.pooler = _hf_class("bert", "BertPooler")(cfg)
            if pooler_state is not None:
                self.pooler.load_state_dict(pooler_state)  # as BertFor* would load it
        elif kind == "distilbert":
            self.pre_classifier = nn.Linear(hidden, hidden)
        elif kind == "deberta-v2":
            self.pooler = _hf_class("deberta_v2", "ContextPooler")(cfg)
        elif kind == "modernbert":
            self.head = _hf_class("modernbert", "ModernBertPredictionHead")(cfg)
        self.dropout = nn.Dropout(self._seq_dropout(cfg))
        self.classifier = nn.Linear(hidden, num_labels)

    @staticmethod
    def _seq_dropout(cfg) -> float:
        if cfg.model_type == "distilbert":
            return cfg.seq_classif_dropout
        if cfg.model_type == "deberta-v2":
            p = getattr(cfg, "cls_dropout", None)
            return cfg.hidden_dropout_prob if p is None else p
        return _dropout_p(cfg)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        kind = self.model_type
        if self.pooling == "mean":
            return self.classifier(self.dropout(masked_mean(hidden, attention_mask)))
        if self.pooling == "cls":
            return self.classifier(self.dropout(hidden[:, 0]))  # (B, C)
        if kind in _HF_HEAD_CLASSES:
            return self.classifier(hidden)  # these heads take [B, T, H] and pool token 0 themselves
        if kind == "bert":
            pooled = self.pooler(hidden)  # (B, H): dense + tanh over [CLS]
        elif kind == "distilbert":
            pooled = F.relu(self.pre_classifier(hidden[:, 0]))  # (B, H)
        elif kind == "deberta-v2":
            pooled = self.pooler(hidden)  # (B, H): ContextPooler
        else:  # modernbert
            pooled = self.head(_modernbert_pool(self.config, hidden, attention_mask))
        return self.classifier(self.dropout(pooled))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor,
             class_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy on long labels [B] (optionally class-weighted); mean squared error
        when num_labels == 1."""
        if self.num_labels == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1),
                               weight=class_weights)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states: hidden [B, T, H], mask [B, T] -> [B, H]."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)


def _modernbert_pool(config, hidden, attention_mask):
    if config.classifier_pooling == "mean":
        return masked_mean(hidden, attention_mask)
    return hidden[:, 0]  # (B, H)


class _PerTokenHead(TaskHead):
    """Shared body of token-cls and qa: [ModernBERT head] -> dropout -> linear, per token."""

    out_name = "classifier"

    def __init__(self, config, num_labels: int, dropout: float) -> None:
        super().__init__(config, num_labels)
        hidden = config.hidden_size if config.model_type != "distilbert" else config.dim
        if config.model_type == "modernbert":
            self.head = _hf_class("modernbert", "ModernBertPredictionHead")(config)
        # HF names the dropout `drop` in ModernBERT; it has no weights, so the name is free.
        self.dropout = nn.Dropout(dropout)
        setattr(self, self.out_name, nn.Linear(hidden, num_labels))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.model_type == "modernbert":
            hidden = self.head(hidden)
        return getattr(self, self.out_name)(self.dropout(hidden))  # (B, T, C)


class TokenClassificationHead(_PerTokenHead):
    """Per-token labels: -> [B, T, C]; loss ignores label -100 (padding, non-first sub-tokens)."""

    task = "token-cls"

    def __init__(self, config, num_labels: int) -> None:
        super().__init__(config, num_labels, _dropout_p(config))

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
        # HF: ModernBERT names the output `classifier`, the others `qa_outputs`; only
        # DistilBERT applies dropout before it.
        self.out_name = "classifier" if config.model_type == "modernbert" else "qa_outputs"
        dropout = {"distilbert": getattr(config, "qa_dropout", 0.1),
                   "modernbert": getattr(config, "classifier_dropout", 0.0)}.get(config.model_type, 0.0)
        super().__init__(config, num_labels, dropout)

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
            or "mean" (see POOLINGS; `resolve_pooling` turns "auto" into one of them).
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


def resolve_pooling(requested: str, model_path) -> str:
    """`auto` follows a sentence-transformers checkpoint's pooling, else "pooler".

    all-MiniLM-L6-v2 and all-mpnet-base-v2 were trained through their mean-pooled output; their
    BERT/MPNet pooler was never trained for classification (a probe on it stays at the majority
    class), so `auto` reads `modules.json` and the Pooling module's `config.json` when present.
    """
    import json
    import os

    if requested != "auto":
        if requested not in POOLINGS:
            raise RuntimeConfigError(f"pooling {requested!r} is unknown; expected auto or one "
                                     f"of {list(POOLINGS)}")
        return requested
    modules = os.path.join(str(model_path), "modules.json")
    if not os.path.isfile(modules):
        return "pooler"
    with open(modules, encoding="utf-8") as f:
        entries = json.load(f)
    for entry in entries if isinstance(entries, list) else []:
        if str(entry.get("type", "")).endswith("models.Pooling"):
            pooling_config = os.path.join(str(model_path), entry.get("path", ""), "config.json")
            if not os.path.isfile(pooling_config):
                return "mean"  # sentence-transformers' own default
            with open(pooling_config, encoding="utf-8") as f:
                modes = json.load(f)
            return "cls" if modes.get("pooling_mode_cls_token") else "mean"
    return "pooler"
