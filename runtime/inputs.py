"""What a run reads besides its labels, each checked against the others before training.

- `open_cache` opens a cache and refuses one a build is still writing, an empty one, or one
  built from another model or layer than asked (the manifest's weights fingerprint and layer
  say so).
- `model_path_of` finds the checkpoint (--model or the manifest's) and refuses weights that
  are not the ones the cache was built from.
- `corpus_records` reads the raw corpus the cache was built from (QA cuts its answers from it).
"""

from __future__ import annotations

import functools
import os

from runtime.errors import RuntimeConfigError


def open_cache(path: str, *, model: str | None = None, layer: int | None = None):
    """Open the cache at `path`; refuse a cache being written, an empty cache, or another
    model's / layer's cache."""
    import cache_format

    writer = cache_format.active_writer(path)  # None where there is no folder to probe
    if writer is not None:
        raise RuntimeConfigError(f"cache {path!r} is still being written ({writer}); wait for "
                                 "the build to finish: a run now would read only the records "
                                 "committed so far")
    reader = cache_format.open(path)
    m = reader.manifest
    if len(reader) == 0:
        raise RuntimeConfigError(f"cache {path!r} holds no records; build it with "
                                 "`python -m export.lower --layer K --out DIR` first")
    if layer is not None and m.get("layer") != layer:
        raise RuntimeConfigError(f"cache {path!r} holds layer {m.get('layer')}, not layer {layer}; "
                                 f"rebuild it with --layer {layer} or pass --layer {m.get('layer')}")
    if model is not None and m.get("weights_sha256"):
        from export.models import resolve_model

        if cached_weights_sha256(resolve_model(model)) != m["weights_sha256"]:
            raise RuntimeConfigError(
                f"cache {path!r} was built from other weights ({m.get('model')}) than {model!r} "
                "(weights_sha256 differs); rebuild the cache from this model or drop --model")
    return reader


def model_path_of(config, manifest: dict) -> str:
    """The checkpoint a run loads: --model, else the manifest's. Its weights must be the ones
    the cache was built from (weights_sha256), however the path was found."""
    path = config.model or manifest.get("model")
    if config.model:
        from export.models import resolve_model  # a known name: its installed folder

        path = resolve_model(config.model)
    if not path or not os.path.isdir(str(path)):
        raise RuntimeConfigError(f"model folder {path!r} (from the cache manifest) does not "
                                 "exist; pass --model with the checkpoint the cache was built from")
    expected = manifest.get("weights_sha256")
    if expected and cached_weights_sha256(str(path)) != expected:
        raise RuntimeConfigError(
            f"the weights in model folder {str(path)!r} are not the ones the cache was built "
            "from (weights_sha256 differs: the checkpoint changed since the build); restore "
            "it, pass --model with the original, or rebuild the cache")
    return str(path)


def cached_weights_sha256(model_path: str) -> str:
    """export.fingerprint.weights_sha256, hashed once per process for each state of the
    weight files (path, size, mtime): a run that checks the same checkpoint again reads
    nothing, and a file changed in between is hashed afresh."""
    from export.fingerprint import weight_files

    stamp = tuple((str(p.resolve()), st.st_size, st.st_mtime_ns)
                  for p in weight_files(model_path) for st in [p.stat()])
    return _weights_sha256_of(model_path, stamp)


@functools.lru_cache(maxsize=16)
def _weights_sha256_of(model_path: str, stamp: tuple) -> str:
    from export.fingerprint import weights_sha256

    return weights_sha256(model_path)


def corpus_records(config, manifest: dict) -> dict:
    """id -> export Record of the raw text the cache was built from (or --corpus)."""
    from export.corpus import read_corpus
    from export.defaults import BUILTIN_CORPUS, default_corpus_records

    source = config.corpus or manifest.get("corpus")
    if source in (None, BUILTIN_CORPUS):
        records = default_corpus_records() if source else None
    elif not os.path.isfile(str(source)):
        raise RuntimeConfigError(f"corpus {source!r} (named by the cache manifest) does not "
                                 "exist; pass --corpus with the file the cache was built from")
    else:
        records = read_corpus(source, text_field=manifest.get("text_field") or "text",
                              text_pair_field=manifest.get("text_pair_field"),
                              id_field=manifest.get("id_field"))
    if records is None:
        raise RuntimeConfigError("the cache manifest names no corpus; pass --corpus FILE")
    return {r.id: r for r in records}
