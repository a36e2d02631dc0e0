"""`python -m runtime.export`: hand a trained run over as a standard model folder.

    python -m runtime.export --run RUN --out DIR                  # hf: transformers save_pretrained
    python -m runtime.export --run RUN --out DIR --format peft    # LoRA runs: a peft adapter
    python -m runtime.export --run RUN --out DIR --format onnx    # one ONNX graph, onnxruntime

Each export is checked against the run's own model and refused above 1e-4 (max abs logit
difference); DIR must not exist yet. Bad input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from cache_format.cli_errors import DefaultsHelpFormatter, OneLineParser, run_cli


def parser() -> argparse.ArgumentParser:
    from runtime.handoff import FORMATS

    p = OneLineParser(prog="python -m runtime.export", description=__doc__.split("\n")[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="run folder written by `python -m runtime.train`")
    p.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: AutoModelFor<Task>.from_pretrained folder; peft: LoRA adapter for "
                        "PeftModel.from_pretrained; onnx: model.onnx for onnxruntime")
    return p


def main(argv=None) -> int:
    from runtime.train import user_errors

    args = parser().parse_args(argv)
    return run_cli(lambda: _run(args), user_errors=user_errors())


def _run(args) -> int:
    from runtime.handoff import ExportConfig, export_run

    summary = export_run(ExportConfig(run=args.run, out=args.out, format=args.format))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
