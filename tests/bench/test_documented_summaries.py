"""Every `python -m bench.fidelity --summary FILE ...` command that README.md, docs/FIDELITY.md
and docs/RECIPE.md give for a figure still runs on the kept runs: each file it names is in
docs/results/fidelity, and the summary reads them all. A renamed or dropped file would leave a
figure nobody can reproduce. (Whether the printed figures still match the prose is checked by
hand: the prose quotes them in too many forms to parse.)"""

import re
from pathlib import Path

import pytest

from bench import fidelity
from bench.fidelity_summary import read_runs

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "docs" / "results" / "fidelity"
DOCS = ("README.md", "docs/FIDELITY.md", "docs/RECIPE.md")


def documented_summaries(text: str) -> list:
    """The argument lists of the `python -m bench.fidelity ...` commands in backticks (they
    may wrap across lines) that only summarise kept run files."""
    text = re.sub(r"\s+", " ", text)  # a wrap may fall anywhere, "python" and "-m" included
    commands = [c.split() for c in re.findall(r"`python -m bench\.fidelity([^`]*)`", text)]
    return [args for args in commands
            if "--summary" in args and any(a.endswith(".jsonl") for a in args)
            and all(a.endswith(".jsonl") or a in ("--summary", "--pick-by-dev")
                    for a in _without_narrowing(args))]


def _without_narrowing(args: list) -> list:
    """`args` less the options that narrow (`--configs X`, `--task X`, `--layer K`, `--seeds S
    ...`): a summary narrowed to some runs still only reads kept files (a --plot one writes a
    figure, and is not run here)."""
    kept, i = [], 0
    while i < len(args):
        if args[i] in ("--configs", "--task", "--layer"):
            i += 2  # the option and its value
        elif args[i] == "--seeds":
            i += 1
            while i < len(args) and args[i].isdigit():
                i += 1
        else:
            kept.append(args[i])
            i += 1
    return kept


COMMANDS = [(doc, i) for doc in DOCS
            for i in range(len(documented_summaries((ROOT / doc).read_text(encoding="utf-8"))))]


def test_the_docs_hold_the_summary_commands_this_test_runs():
    assert sum(1 for doc, _ in COMMANDS if doc == "docs/FIDELITY.md") >= 3
    assert sum(1 for doc, _ in COMMANDS if doc == "docs/RECIPE.md") >= 10


@pytest.mark.parametrize("doc, index", COMMANDS, ids=[f"{d}-{i}" for d, i in COMMANDS])
def test_a_documented_summary_names_kept_files_and_runs(doc, index, monkeypatch, capsys):
    args = documented_summaries((ROOT / doc).read_text(encoding="utf-8"))[index]
    missing = [a for a in args if a.endswith(".jsonl") and not (RUNS / a).is_file()]
    assert missing == [], f"{doc}: {' '.join(args)} names files not in {RUNS}"
    monkeypatch.chdir(RUNS)  # the docs give the commands as run there
    assert fidelity.main(args) == 0
    out = capsys.readouterr().out
    configs = {r["config"] for r in read_runs([a for a in args if a.endswith(".jsonl")])}
    if any(c.startswith("full-") for c in configs) and any(
            c.startswith(("recycled-", "frozen-")) for c in configs):
        assert " against " in out  # a summary of both sides quotes a gap between them
    else:  # the probe and one side, say: the table alone
        assert len(out.splitlines()) > 1 and out.startswith("model ")
