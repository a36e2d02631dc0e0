"""`python -m runtime.predict`: predictions from a run folder, for cached keys and raw texts.

    python -m runtime.predict --run RUN                      # every cached key of the test split
    python -m runtime.predict --run RUN --keys ID1 ID2       # chosen cached keys
    python -m runtime.predict --run RUN --text "some text"   # raw text: lower stack on the fly
    python -m runtime.predict --run RUN --texts FILE.txt --write-back   # and add it to the cache

Prints one JSON object per line (or writes them to --out). Bad input: one line on stderr,
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cache_format.cli_errors import DefaultsHelpFormatter, OneLineParser, run_cli
from runtime.options import TASK_NAMES
from runtime.errors import RuntimeConfigError


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m runtime.predict", description=__doc__.split("\n")[0],
                      formatter_class=DefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="run folder written by `python -m runtime.train`")
    p.add_argument("--task", choices=TASK_NAMES,
                   help="refuse the run unless it is of this task")
    p.add_argument("--cache", help="cache to read (default: the one the run was trained on)")
    p.add_argument("--keys", nargs="+", help="cached keys to predict")
    p.add_argument("--split", choices=["train", "dev", "test", "all"],
                   help="with no --keys/--text: the labelled split to predict (default test)")
    p.add_argument("--text", action="append", default=[], help="a raw text (repeatable)")
    p.add_argument("--texts", help="file of raw texts, one per line")
    p.add_argument("--write-back", action="store_true",
                   help="add the lower-stack states of new texts to the cache")
    p.add_argument("--out", help="write JSON lines here instead of stdout")
    p.add_argument("--device", default="cpu")
    return p


def main(argv=None) -> int:
    from runtime.train import user_errors

    args = parser().parse_args(argv)
    return run_cli(lambda: _run(args), user_errors=user_errors())


def _run(args) -> int:
    from runtime import prediction

    _refuse_mixed_inputs(args)
    texts = list(args.text)
    if any(not t.strip() for t in texts):
        raise RuntimeConfigError("--text '' is empty; pass the text to predict")
    if args.texts:
        texts += _read_texts(args.texts)
    loaded = prediction.load_run(args.run, task=args.task, cache=args.cache, device=args.device)
    if texts:
        rows = prediction.predict_texts(loaded, texts, write_back=args.write_back)
    else:
        rows = prediction.predict_keys(loaded, args.keys or prediction.split_keys(
            loaded, args.split or "test"))
    if not args.out:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
        return 0
    tmp = f"{args.out}.tmp"  # a failed write (full disk) must not leave half a file behind
    try:
        with open(tmp, "w") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


def _refuse_mixed_inputs(args) -> None:
    """One kind of input per call: raw texts, named keys, or a split. Given two, one was
    silently dropped, and the output did not hold what was asked for."""
    named = [flag for flag, given in (("--text/--texts", args.text or args.texts),
                                      ("--keys", args.keys), ("--split", args.split)) if given]
    if len(named) > 1:
        raise RuntimeConfigError(f"{' and '.join(named)} pick what to predict; pass one of them")
    if args.write_back and not (args.text or args.texts):
        raise RuntimeConfigError("--write-back adds the states of --text/--texts to the cache; "
                                 "pass the texts")


def _read_texts(path: str) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    except OSError as exc:
        raise RuntimeConfigError(f"cannot read --texts {path!r} ({exc.strerror}); "
                                 "pass a text file, one text per line") from None
    except UnicodeDecodeError as exc:
        raise RuntimeConfigError(f"--texts {path!r} is not UTF-8 (byte {exc.start}); save it "
                                 "as UTF-8 text, one text per line") from None
    if not texts:
        raise RuntimeConfigError(f"--texts {path!r} holds no text; one text per line")
    return texts


if __name__ == "__main__":
    sys.exit(main())
