"""runtime: the upper stack, adapters and heads trained from a layer-K cache; train and predict.

`from runtime import load_upper` is the public entry point (see ../docs/ARCHITECTURE.md). The
names below are imported lazily so that `python -m runtime.train --help` does not pay for torch
and transformers before it has parsed its arguments.
"""

__all__ = ["load_upper", "load_full", "num_layers"]


def __getattr__(name: str):
    if name in __all__:
        from runtime import upper

        return getattr(upper, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
