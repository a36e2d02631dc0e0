"""Scale figures: the memory and latency of a cache build on a big corpus, and the cost of
opening a cache of a million records.

    python -m bench.scale corpus --docs 400000 --out /tmp/big.jsonl     # synthetic corpus
    python -m bench.scale build --corpus /tmp/big.jsonl --seconds 120 -- --layer 3 --max-length 128
    python -m bench.scale open --records 1000000 --dir /tmp/cache-1m

`build` runs `python -m export.lower` in a child process, samples its resident memory (with
its children) every 0.2 s, notes when the first records are committed (the manifest appears),
and after `--seconds` stops it with SIGINT, as Ctrl-C would: the build commits and exits. It
prints one JSON line: peak RSS, seconds to the first commit, records committed. `open` writes
(once) a cache of small records and times `cache_format.open` in a fresh process, with the
process's RSS before and after, then times planning one shuffled epoch of batches over every
key (runtime.loader.plan_cache_batches), and checks what it opened and planned.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

_WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from "
          "at which but have an they you were her she there been one all we their has would "
          "when if so no will more can out said market growth company government film music "
          "game player team election minister phone software network profit shares bank price "
          "year people time new first last world service report record business technology"
          ).split()
_SAMPLE_S = 0.2


def write_corpus(path: Path, docs: int, *, seed: int = 0) -> None:
    """A .jsonl of `docs` records {"id": "d<i>", "text": 20-120 random common words}."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(docs):
            words = rng.choices(_WORDS, k=rng.randint(20, 120))
            f.write(json.dumps({"id": f"d{i}", "text": " ".join(words)}) + "\n")


def _rss(proc) -> int:
    """Resident bytes of a psutil process and its children."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _committed(out: Path) -> int:
    try:
        return int(json.loads((out / "manifest.json").read_text())["num_examples"])
    except (OSError, ValueError, KeyError):
        return 0  # not committed yet, or caught mid-rename


def watch_build(lower_args: list[str], out: Path, seconds: float) -> dict:
    """Run export.lower with `lower_args` + `--out out` for `seconds`, then SIGINT it.

    Returns peak_rss_mb, first_commit_s (None if nothing was committed), committed records,
    the peak RSS over the first half of the run and after the first commit (the export of the
    lower stack, when it runs, is over by then), and the return code.
    """
    import psutil

    argv = [sys.executable, "-m", "export.lower", *lower_args, "--out", str(out), "--quiet"]
    start = time.monotonic()
    child = subprocess.Popen(argv, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    proc = psutil.Process(child.pid)
    peak = first_half_peak = encoding_peak = 0
    first_commit = None
    while child.poll() is None and time.monotonic() - start < seconds:
        rss = _rss(proc)
        peak = max(peak, rss)
        if time.monotonic() - start < seconds / 2:
            first_half_peak = max(first_half_peak, rss)
        if first_commit is None and _committed(out):
            first_commit = time.monotonic() - start
        if first_commit is not None:
            encoding_peak = max(encoding_peak, rss)
        time.sleep(_SAMPLE_S)
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    code = child.wait(timeout=300)
    return {"peak_rss_mb": round(peak / 2**20, 1),
            "peak_rss_first_half_mb": round(first_half_peak / 2**20, 1),
            "peak_rss_after_first_commit_mb": round(encoding_peak / 2**20, 1),
            "first_commit_s": None if first_commit is None else round(first_commit, 1),
            "committed_records": _committed(out), "seconds": round(time.monotonic() - start, 1),
            "returncode": code}


def write_small_cache(path: Path, records: int, *, tokens: int = 4, hidden: int = 8) -> None:
    """A cache of `records` records of `tokens` tokens, hidden `hidden`, fp16, no codec."""
    import numpy as np

    import cache_format

    rng = np.random.default_rng(0)
    states = rng.standard_normal((256, tokens, hidden)).astype(np.float32)  # reused rows
    ids = np.arange(tokens, dtype=np.int64)
    with cache_format.create(path, hidden_size=hidden, dtype="fp16", codec="none") as w:
        for i in range(records):
            w.add(f"doc-{i:07d}", ids, states[i % 256])


_OPEN_PROBE = """
import json, sys, time, psutil
proc = psutil.Process()
before = proc.memory_info().rss
import cache_format
imported = proc.memory_info().rss
start = time.perf_counter()
r = cache_format.open(sys.argv[1])
seconds = time.perf_counter() - start
after = proc.memory_info().rss
n = len(r)
last = f"doc-{n - 1:07d}"
ok = r.num_tokens(last) == 4 and r.get(last).shape == (4, 8) and last in r
from runtime.loader import BatchPlan, plan_cache_batches
start = time.perf_counter()
batches = plan_cache_batches(r, r.keys(), BatchPlan(), shuffle=True)
plan_seconds = time.perf_counter() - start
ok = ok and sum(map(len, batches)) == n
print(json.dumps({"records": n, "open_s": round(seconds, 3),
                  "rss_mb": round(after / 2**20, 1),
                  "rss_added_by_open_mb": round((after - imported) / 2**20, 1),
                  "rss_before_import_mb": round(before / 2**20, 1),
                  "plan_shuffled_batches_s": round(plan_seconds, 3), "checked": ok}))
"""


def time_open(path: Path) -> dict:
    """Open the cache at `path` in a fresh process; seconds, RSS and a correctness check."""
    done = subprocess.run([sys.executable, "-c", _OPEN_PROBE, str(path)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def main(argv=None) -> int:
    from bench.cli import at_least, run_bench_cli
    from cache_format.cli_errors import OneLineParser

    p = OneLineParser(prog="python -m bench.scale", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpus", help="write a synthetic .jsonl corpus")
    c.add_argument("--docs", type=at_least(1), required=True)
    c.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("build", help="peak RSS and first commit of export.lower")
    b.add_argument("--seconds", type=at_least(1), default=120)
    b.add_argument("--out", type=Path, required=True, help="cache folder (a new one)")
    b.add_argument("lower_args", nargs=argparse.REMAINDER, help="-- then export.lower's options")
    o = sub.add_parser("open", help="cache_format.open time and RSS on many small records")
    o.add_argument("--records", type=at_least(1), default=1_000_000)
    o.add_argument("--dir", type=Path, required=True, help="cache folder; written if missing")
    args = p.parse_args(argv)
    return run_bench_cli(lambda: _run(args))


def _run(args) -> int:
    if args.command == "corpus":
        write_corpus(args.out, args.docs)
        return 0
    if args.command == "build":
        lower_args = [a for a in args.lower_args if a != "--"]
        watched = watch_build(lower_args, args.out, args.seconds)
        print(json.dumps(watched))
        # export.lower printed its own line; 130 is the SIGINT this watch sends on time
        return 0 if watched["returncode"] in (0, 130) else watched["returncode"]
    if not (args.dir / "manifest.json").exists():
        write_small_cache(args.dir, args.records)
    print(json.dumps(time_open(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
