"""runtime.architectures: what the upper side needs of each architecture, extending export's table.

`export.architectures.ARCHITECTURES` says, per config `model_type`, how the lower stack is cut and
exported. `UPPER_ARCHITECTURES` says, for the same keys, which `Family` runs the layers above K
(runtime.upper_archs) and how transformers builds that architecture's task heads (the class of
its sequence-classification head and the config fields its dropouts read), so runtime.heads asks
this table instead of comparing model types. tests/runtime/test_architectures.py checks that the
two tables name the same model types: an architecture is added as one entry on each side.
"""

from __future__ import annotations

import dataclasses

from runtime.errors import RuntimeConfigError
from runtime.upper_archs import (BertFamily, DebertaV2Family, DistilBertFamily, Family,
                                 ModernBertFamily, MPNetFamily)

# seq-cls pooler kinds (SequenceClassificationHead builds each):
#   "hf-head"  transformers' <s>/[CLS] classification head class (`seq_head`) over [B, T, H]
#   "bert-pooler"     BertPooler (dense + tanh over [CLS]), dropout, linear
#   "pre-classifier"  DistilBERT's pre_classifier + ReLU over [CLS], dropout, linear
#   "context-pooler"  DeBERTa's ContextPooler, dropout, linear
#   "prediction-head" ModernBertPredictionHead over [CLS] or the masked mean, dropout, linear
SEQ_POOLERS = ("hf-head", "bert-pooler", "pre-classifier", "context-pooler", "prediction-head")


@dataclasses.dataclass(frozen=True)
class UpperArchitecture:
    family: type[Family]
    seq_pooler: str  # one of SEQ_POOLERS
    seq_head: tuple[str, str] | None = None  # (transformers module, class) for "hf-head"
    # The first of these config fields that is set is the dropout transformers uses:
    token_dropout: tuple[str, ...] = ("classifier_dropout", "hidden_dropout_prob")
    seq_dropout: tuple[str, ...] = ()  # () = as token_dropout
    qa_dropout: tuple[str, ...] = ()  # () = no dropout before the QA output layer
    qa_dropout_default: float = 0.0  # when the config lacks every qa_dropout field
    qa_output: str = "qa_outputs"  # the QA output layer's attribute name
    prediction_head: bool = False  # ModernBertPredictionHead before every head's classifier


def _roberta_like(module: str, cls: str) -> UpperArchitecture:
    return UpperArchitecture(BertFamily, "hf-head", (module, cls))


UPPER_ARCHITECTURES = {
    "bert": UpperArchitecture(BertFamily, "bert-pooler"),
    "roberta": _roberta_like("roberta", "RobertaClassificationHead"),
    "xlm-roberta": _roberta_like("xlm_roberta", "XLMRobertaClassificationHead"),
    "camembert": _roberta_like("camembert", "CamembertClassificationHead"),
    "electra": _roberta_like("electra", "ElectraClassificationHead"),
    "mpnet": UpperArchitecture(MPNetFamily, "hf-head", ("mpnet", "MPNetClassificationHead")),
    "distilbert": UpperArchitecture(DistilBertFamily, "pre-classifier", token_dropout=("dropout",),
                                    seq_dropout=("seq_classif_dropout",),
                                    qa_dropout=("qa_dropout",), qa_dropout_default=0.1),
    "deberta-v2": UpperArchitecture(DebertaV2Family, "context-pooler",
                                    token_dropout=("hidden_dropout_prob",),
                                    seq_dropout=("cls_dropout", "hidden_dropout_prob")),
    "modernbert": UpperArchitecture(ModernBertFamily, "prediction-head",
                                    token_dropout=("classifier_dropout",),
                                    qa_dropout=("classifier_dropout",), qa_output="classifier",
                                    prediction_head=True),
}


def supported_model_types() -> list[str]:
    """Every `config.model_type` the runtime can split into lower and upper stacks."""
    return sorted(UPPER_ARCHITECTURES)


def upper_architecture(config) -> UpperArchitecture:
    """The table entry for a transformers config, or a RuntimeConfigError naming the choices."""
    model_type = getattr(config, "model_type", None)
    if model_type not in UPPER_ARCHITECTURES:
        raise RuntimeConfigError(
            f"model_type {model_type!r} is not supported by the upper stack; "
            f"expected one of {supported_model_types()}; use a checkpoint of a supported encoder"
        )
    return UPPER_ARCHITECTURES[model_type]


def family_class(config) -> type[Family]:
    """The Family subclass that runs this config's layers."""
    return upper_architecture(config).family


def is_supported(config) -> bool:
    """True when `upper_architecture(config)` would succeed."""
    return getattr(config, "model_type", None) in UPPER_ARCHITECTURES


def first_set(config, fields: tuple[str, ...], default: float = 0.0) -> float:
    """The value of the first of `fields` the config sets (not None), else `default`."""
    for field in fields:
        value = getattr(config, field, None)
        if value is not None:
            return value
    return default
