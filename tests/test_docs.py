"""The Python snippets of README.md and docs/ARCHITECTURE.md run, so a doc that drifts from the
API fails CI.

A snippet is an indented block whose first line is an `import` or `from` statement (the
README's shell blocks start with `python -m`, `make` or a path; ARCHITECTURE's API signatures
start with a name). Each runs in a fresh namespace holding the names the prose around it
assumes: `token_ids` and `hidden` (one record of 5 tokens of the default model's width) and
`MODEL_PATH` (the default model), in an empty folder.
"""
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md", "docs/ARCHITECTURE.md")


def python_snippets(text: str) -> list:
    """Runs of consecutive 4-space-indented lines (a blank line ends a run) that start with
    an import, dedented."""
    runs = re.findall(r"(?:^ {4}\S.*\n(?: {4}.*\S.*\n)*)", text, flags=re.M)
    snippets = []
    for run in runs:
        lines = [line[4:] for line in run.splitlines()]
        if lines[0].startswith(("import ", "from ")):
            snippets.append("\n".join(lines) + "\n")
    return snippets


def doc_snippets(doc: str) -> list:
    return python_snippets((ROOT / doc).read_text(encoding="utf-8"))


SNIPPETS = [(doc, index) for doc in DOCS for index in range(len(doc_snippets(doc)))]


def test_the_readme_has_the_snippets_this_test_runs():
    snippets = doc_snippets("README.md")
    assert any("cache_format.create" in s for s in snippets)
    assert any("load_upper" in s for s in snippets)


def test_architecture_has_the_snippet_this_test_runs():
    # its API signatures must not start with import/from, or they would be run as code
    (snippet,) = doc_snippets("docs/ARCHITECTURE.md")
    assert "KeyboardInterrupt" in snippet and "assert " in snippet


@pytest.mark.parametrize("doc, index", SNIPPETS, ids=[f"{d}-{i}" for d, i in SNIPPETS])
def test_doc_snippet_runs(doc, index, tmp_path, monkeypatch):
    from export.defaults import default_model_path

    snippet = doc_snippets(doc)[index]
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    namespace = {"token_ids": np.array([101, 7592, 2088, 999, 102]),
                 "hidden": rng.standard_normal((5, 384)).astype(np.float32),
                 "MODEL_PATH": str(default_model_path())}
    exec(compile(snippet, f"{doc} snippet {index}", "exec"), namespace)
    if doc == "README.md" and "cache_format.create" in snippet:
        reader = namespace["r"]
        # the snippet's promise: the record comes back with its tokens and shape (how close
        # int8 is to the input is bounded in tests/cache_format/test_roundtrip.py)
        assert reader.get("doc-1").shape == (5, 384)
        assert reader.token_ids("doc-1").tolist() == namespace["token_ids"].tolist()
    if "load_upper" in snippet:
        assert not namespace["upper"].training  # load_upper returns the stack in eval mode
