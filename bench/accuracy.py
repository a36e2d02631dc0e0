"""Accuracy of full fine-tuning against recycling, trained by runtime's own trainer.

BBC News topics with the built-in split (runtime.datasets: seeded 80/10/10, seed 0). With a
subset (`docs`), articles are drawn with a fixed seed and keep the split they have in the
built-in task, so a subset's test articles are test articles of the whole task too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _write_jsonl(path: Path, rows: list) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def bbc_accuracy(work: Path, *, model_path, layer: int, docs: int | None, epochs: int,
                 max_length: int, adapter: str, seed: int, log=print) -> dict:
    """Train `full` and `recycled` on the same split; return their test accuracy and times."""
    from export.build import BuildConfig, build_cache
    from runtime.labels import assign_splits
    from runtime.datasets import SPLIT_SEED, bbc_news_rows
    from runtime.trainer import TrainConfig, train

    rows = bbc_news_rows()
    splits = assign_splits([r["id"] for r in rows], SPLIT_SEED)
    if docs is not None and docs < len(rows):
        pick = np.random.default_rng(seed).choice(len(rows), size=docs, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    work.mkdir(parents=True, exist_ok=True)
    corpus, labels = work / "corpus.jsonl", work / "labels.jsonl"
    _write_jsonl(corpus, [{"id": r["id"], "text": r["text"]} for r in rows])
    _write_jsonl(labels, [{"id": r["id"], "label": r["label"], "split": splits[r["id"]]}
                          for r in rows])
    cache = work / f"L{layer}-int8"
    log(f"accuracy: building the int8 cache of {len(rows)} articles (max length {max_length})")
    build_cache(BuildConfig(layer=layer, model=str(model_path), corpus=str(corpus),
                            out=str(cache), max_length=max_length, progress=False))
    out = {}
    for mode in ("full", "recycled"):
        log(f"accuracy: training {mode} ({adapter}, {epochs} epoch(s))")
        metrics = train(TrainConfig(cache=str(cache), labels=str(labels), task="seq-cls",
                                    out=str(work / f"run-{mode}"), mode=mode, epochs=epochs,
                                    seed=seed, adapter=adapter, overwrite=True))
        out[mode] = metrics
    return {
        "bbc-news": {"full": out["full"]["accuracy"], "recycled": out["recycled"]["accuracy"]},
        "details": {"articles": len(rows), "epochs": epochs, "max_length": max_length,
                    "adapter": adapter, "metrics": out},
    }
