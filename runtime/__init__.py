"""runtime: the upper stack, adapters and heads trained from a layer-K cache; train and predict.

`from runtime import load_upper` is the public entry point (see ../docs/ARCHITECTURE.md). The
names below are imported lazily so that `python -m runtime.train --help` does not pay for torch
and transformers before it has parsed its arguments.
"""

import warnings

__all__ = ["load_upper", "load_full", "num_layers"]

# peft 0.22 warns on import that its v1.0 drops transformers < 5.6. optimum-onnx 0.1.0 holds us
# below 4.58 and pyproject.toml pins peft below 1.0 for that reason, so the warning names
# nothing a user can act on, yet every command that trains or exports printed it.
PEFT_TRANSFORMERS_WARNING = "Support for Transformers < 5.6 is deprecated in PEFT"
warnings.filterwarnings("ignore", message=PEFT_TRANSFORMERS_WARNING, category=FutureWarning,
                        module="peft")


def __getattr__(name: str):
    if name in __all__:
        from runtime import upper

        return getattr(upper, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
