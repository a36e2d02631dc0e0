"""Fixtures for the export tests: a tiny BERT with the default tokenizer, a small corpus."""
from __future__ import annotations

from pathlib import Path

import pytest

from export_testkit import TEXTS, copy_default_tokenizer, save_tiny_model, write_jsonl


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """Tiny BERT (4 layers, hidden 32) with the default model's tokenizer (30,522 pieces)."""
    path = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_model(path, "bert", vocab_size=30522)
    copy_default_tokenizer(path)
    return path


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """24 records with ids doc-00 .. doc-23."""
    rows = [{"id": f"doc-{i:02d}", "text": t} for i, t in enumerate(TEXTS)]
    return write_jsonl(tmp_path / "small.jsonl", rows)
