"""One architecture registry: export's table (the lower stack) and runtime's (the upper stack
and heads) name the same model types, and every entry is complete."""
from pathlib import Path

import pytest

from export.architectures import ARCHITECTURES
from runtime.architectures import (SEQ_POOLERS, UPPER_ARCHITECTURES, first_set, is_supported,
                                   supported_model_types, upper_architecture)
from runtime.errors import RuntimeConfigError
from runtime.upper_archs import Family
from test_tasks import _task_name_comparisons


def test_runtime_extends_every_export_architecture_and_no_other():
    assert set(UPPER_ARCHITECTURES) == set(ARCHITECTURES)
    assert supported_model_types() == sorted(ARCHITECTURES)


@pytest.mark.parametrize("model_type", sorted(UPPER_ARCHITECTURES))
def test_every_entry_is_complete(model_type):
    arch = UPPER_ARCHITECTURES[model_type]
    assert issubclass(arch.family, Family) and arch.family is not Family
    assert arch.family.lora_targets and arch.family.bottleneck_targets
    assert arch.seq_pooler in SEQ_POOLERS
    assert (arch.seq_head is not None) == (arch.seq_pooler == "hf-head")
    assert arch.token_dropout


def test_an_unknown_model_type_is_named_with_the_choices():
    class Config:
        model_type = "gpt2"

    assert not is_supported(Config())
    with pytest.raises(RuntimeConfigError, match=r"model_type 'gpt2' is not supported .*'bert'"):
        upper_architecture(Config())


def test_first_set_skips_fields_that_are_unset_or_none():
    class Config:
        classifier_dropout = None
        hidden_dropout_prob = 0.1

    assert first_set(Config(), ("classifier_dropout", "hidden_dropout_prob")) == 0.1
    assert first_set(Config(), ("qa_dropout",), 0.25) == 0.25
    assert first_set(Config(), ()) == 0.0


def test_no_other_module_of_runtime_compares_model_types():
    """What differs per architecture is a field of the registry, not an `if model_type == ...`."""
    runtime = Path(__file__).resolve().parents[2] / "runtime"
    found = [hit for p in sorted(runtime.glob("*.py")) if p.name != "architectures.py"
             for hit in _task_name_comparisons(p, tuple(ARCHITECTURES))]
    assert found == []
