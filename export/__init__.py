"""export: the lower K layers of a Hugging Face encoder as ONNX, and the one-time cache build.

    python -m export.lower --layer K [--model PATH] [--corpus FILE] [--out DIR] ...

    from export.build import BuildConfig, build_cache
    build_cache(BuildConfig(layer=3))   # -> caches/all-MiniLM-L6-v2-bbcnews-L3-int8

Modules: defaults (built-in model and BBC News), corpus (readers), tokenize, window_keys
(the "ID#N" keys of stride windows), batching (length bucketing), architectures, fingerprint,
onnx_export, session (onnxruntime), throughput (PyTorch baseline), sharding, build, lower (the
CLI). Importing the package loads nothing heavy; torch, transformers and onnxruntime are
imported where they are used.
"""
from .errors import ExportError

__all__ = ["ExportError"]
