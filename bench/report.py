"""python -m bench.report: the end-to-end speedup of recycling, every cost counted."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Full against recycled on the same batches, in one run, on the default "
                    "model and BBC News: time per example (training and inference), the cache "
                    "build, break-even epochs, bytes per token, lower-stack throughput.")
    p.add_argument("--quick", action="store_true",
                   help="64 articles: finishes within about five minutes on 2 cores")
    p.add_argument("--docs", type=int, default=None,
                   help="articles timed (default 64 with --quick, else 256)")
    p.add_argument("--model", default=None, help="checkpoint folder (default all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="lora", choices=("lora", "bottleneck", "finetune"),
                   help="what trains, the same kind in full and recycled (default lora)")
    p.add_argument("--work-dir", default=None,
                   help="keep the caches here (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the step times and speedups")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.endtoend import ReportConfig, run
    from bench.table import format_table

    if args.docs is not None and args.docs < 8:
        print(f"error: --docs must be at least 8, got {args.docs}", file=sys.stderr)
        return 2
    config = ReportConfig(quick=args.quick, docs=args.docs, model=args.model,
                          adapter=args.adapter, work_dir=args.work_dir, threads=args.threads)
    try:
        report = run(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    except ValueError as exc:  # every package's error family derives from ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    if args.plot:
        from bench.plot import draw

        draw(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
