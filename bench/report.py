"""python -m bench.report: the end-to-end speedup of recycling, every cost counted."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _parser() -> argparse.ArgumentParser:
    from bench.cli import at_least, layer_list
    from cache_format.cli_errors import OneLineParser

    p = OneLineParser(
        prog="python -m bench.report",
        description="Full against recycled on the same batches, in one run, on the default "
                    "model and BBC News: time per example (training and inference), the cache "
                    "build, break-even epochs, bytes per token, lower-stack throughput.")
    p.add_argument("--quick", action="store_true",
                   help="48 articles timed, accuracy on 400 for one epoch: about five minutes on 2 cores")
    p.add_argument("--docs", type=at_least(20), default=None,
                   help="articles timed (default 48 with --quick, else 256)")
    p.add_argument("--model", default=None, help="checkpoint folder (default all-MiniLM-L6-v2)")
    p.add_argument("--adapter", default="lora", choices=("lora", "bottleneck", "finetune"),
                   help="what trains, the same kind in full and recycled (default lora)")
    p.add_argument("--work-dir", default=None,
                   help="keep the caches here (default: a temporary folder)")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads (default: all cores)")
    p.add_argument("--no-accuracy", action="store_true",
                   help="skip training full and recycled for the accuracy comparison")
    p.add_argument("--accuracy-docs", type=at_least(20), default=None,
                   help="articles for the accuracy comparison (default 400 with --quick, else all)")
    p.add_argument("--accuracy-epochs", type=at_least(1), default=None,
                   help="epochs for the accuracy comparison (default 1 with --quick, else 3)")
    p.add_argument("--layers", type=layer_list, default=None, metavar="K,K|all",
                   help="the K to time, e.g. 2,3,4 or 1-5, or all (1 .. N-1: a fidelity K "
                        "sweep's speedup at every K); N/2 always (default N/4, N/2, 3N/4)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the step times and speedups")
    return p


def main(argv=None) -> int:
    from bench.cli import run_bench_cli

    args = _parser().parse_args(argv)
    return run_bench_cli(lambda: _run(args))


def _check(args) -> None:
    """Refuse what would fail later: minutes of timing lost to a bad --json path, say."""
    from bench.cli import BenchArgumentError, output_file_problem

    if args.work_dir is not None and os.path.exists(args.work_dir) and not os.path.isdir(
            args.work_dir):
        raise BenchArgumentError(f"--work-dir {args.work_dir}: is a file; pass a folder")
    for flag, value in (("--accuracy-docs", args.accuracy_docs),
                        ("--accuracy-epochs", args.accuracy_epochs)):
        if args.no_accuracy and value is not None:
            raise BenchArgumentError(f"{flag} sets the accuracy comparison, which --no-accuracy "
                                     "skips; drop one of them")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        problem = path and output_file_problem(flag, path)
        if problem:
            raise BenchArgumentError(problem)


def _run(args) -> int:
    _check(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench.endtoend import ReportConfig, run
    from bench.table import format_table

    config = ReportConfig(quick=args.quick, docs=args.docs, model=args.model,
                          adapter=args.adapter, work_dir=args.work_dir, threads=args.threads,
                          accuracy=not args.no_accuracy, accuracy_docs=args.accuracy_docs,
                          accuracy_epochs=args.accuracy_epochs, layers=args.layers)
    report = run(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(format_table(report))
    if args.json:
        tmp = f"{args.json}.tmp"  # a failed write must not leave half a report under the name
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
        os.replace(tmp, args.json)
    if args.plot:
        from bench.plot import draw

        draw(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
