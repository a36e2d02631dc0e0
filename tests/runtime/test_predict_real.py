"""Behaviour with the real default model: build a small cache with export, train, then predict
raw texts through the ONNX lower stack, with and without --write-back."""

import json

import pytest

from runtime import predict, train

TEXTS = {
    "sport": ["the team won the match in extra time", "a late goal decided the final",
              "the striker scored twice in the league game", "the coach praised his players"],
    "money": ["shares fell as the bank cut its profit forecast", "the market rallied on rate hopes",
              "the company reported higher quarterly earnings", "investors sold bonds and stocks"],
}


@pytest.mark.slow
def test_raw_text_prediction_matches_the_cached_one(tmp_path, jsonl, capsys):
    from export.build import BuildConfig, build_cache

    rows = [{"id": f"{label}-{i}-{j}", "text": f"{text} {'again' * j}".strip(), "label": label}
            for label, texts in TEXTS.items() for i, text in enumerate(texts) for j in range(3)]
    corpus = jsonl(tmp_path / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    labels = jsonl(tmp_path / "labels.jsonl", [{"id": r["id"], "label": r["label"]} for r in rows])
    cache = str(tmp_path / "cache")
    build_cache(BuildConfig(layer=3, corpus=corpus, out=cache, dtype="fp32", max_length=32,
                            progress=False))
    run = str(tmp_path / "run")
    assert train.main(["--cache", cache, "--labels", labels, "--task", "seq-cls", "--out", run,
                       "--epochs", "1", "--adapter", "bottleneck"]) == 0
    capsys.readouterr()

    def _predict(*args):
        assert predict.main(["--run", run, *args]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    cached = _predict("--keys", rows[0]["id"])[0]
    raw = _predict("--text", rows[0]["text"])[0]
    assert raw["id"].startswith("text-") and raw["label"] == cached["label"]
    assert raw["score"] == pytest.approx(cached["score"], abs=1e-4)

    new_text = "the goalkeeper saved a penalty in the cup tie"
    first = _predict("--text", new_text, "--write-back")[0]
    import cache_format

    assert first["id"] in cache_format.open(cache)  # written back
    again = _predict("--keys", first["id"])[0]
    assert again["label"] == first["label"]
    assert again["score"] == pytest.approx(first["score"], abs=1e-4)
    # the written-back key does not break training with the same labels file
    assert train.main(["--cache", cache, "--labels", labels, "--task", "seq-cls", "--out",
                       str(tmp_path / "run2"), "--epochs", "1"]) == 0
