"""What identifies a model checkpoint and a tokenizer: checks that a folder is a usable
checkpoint, and the SHA-256 fingerprints written into every cache's metadata.

A cache is only valid for the exact weights and tokenizer that produced it; the runtime and a
resumed build compare these fingerprints instead of trusting folder names.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ExportError

# transformers loads safetensors when present, else the pickled weights; hash what it loads.
_WEIGHT_PATTERNS = (("model*.safetensors", "model.safetensors.index.json"),
                    ("pytorch_model*.bin", "pytorch_model.bin.index.json"))
_HASH_BLOCK = 1 << 20


def weight_files(model_path: str | Path) -> list[Path]:
    """The weight files transformers would load from `model_path`, sorted by name."""
    model_path = Path(model_path)
    for pattern, index in _WEIGHT_PATTERNS:
        files = sorted(model_path.glob(pattern))
        if files:
            extra = [model_path / index] if (model_path / index).is_file() else []
            return files + extra
    return []


def check_model_dir(model_path: str | Path) -> Path:
    """The checkpoint folder (a path or a known name, see export.models), resolved; a one-line
    error when it is not one."""
    from .models import resolve_model

    path = resolve_model(model_path)
    if not path.is_dir():
        raise ExportError(f"model folder {path} does not exist; pass --model a folder saved "
                          f"with save_pretrained")
    if not (path / "config.json").is_file():
        raise ExportError(f"{path} has no config.json; pass --model a Hugging Face checkpoint "
                          f"folder saved with save_pretrained")
    if not weight_files(path):
        raise ExportError(f"{path} has no weights (model.safetensors or pytorch_model.bin); "
                          f"save the model with save_pretrained")
    return path.resolve()


def weights_sha256(model_path: str | Path) -> str:
    """SHA-256 over the names and bytes of the checkpoint's weight files."""
    digest = hashlib.sha256()
    for path in weight_files(model_path):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def tokenizer_sha256(tokenizer) -> str:
    """SHA-256 of a fast tokenizer's full definition (normaliser, pre-tokeniser, vocabulary,
    special-token post-processing), independent of which files it was saved as.

    Truncation and padding are cleared first: they are call-time settings that a tokenizer
    keeps from its last call, not part of what it is.
    """
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    spec["truncation"] = None
    spec["padding"] = None
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
