"""`python -m bench.handoff --run RUN`: a seq-cls run's exports score its test accuracy.

Exports RUN in the three formats (runtime.export) into --work, then, in a fresh interpreter
with this project off the path and HF_HUB_OFFLINE=1, classifies the raw text of every test
example with the transformers text-classification pipeline on the hf folder, PeftModel over
its base (LoRA runs) and onnxruntime, and prints one JSON object: each format's accuracy next
to metrics.json's and runtime.predict's, how many examples each predicts differently from
runtime.predict, and the export times. This is how the README's default-job figures were made.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_USER_SIDE = r'''
import json, os, sys
import numpy as np
import torch
d = json.load(open(sys.argv[1]))
work, names, out = d["work"], d["labels"], {}
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
classify = pipeline("text-classification", model=work + "/hf", trust_remote_code=True)
out["hf"] = [r["label"] for r in classify(d["texts"], truncation=True, batch_size=8)]
tokenizer = AutoTokenizer.from_pretrained(work + "/hf")
encoded = [tokenizer([t], truncation=True, return_tensors="pt") for t in d["texts"]]
if os.path.isdir(work + "/peft"):
    from peft import PeftModel
    if os.path.isdir(work + "/peft/base"):
        base = AutoModelForSequenceClassification.from_pretrained(work + "/peft/base",
                                                                  trust_remote_code=True)
    else:
        base = AutoModelForSequenceClassification.from_pretrained(
            d["base"], id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = PeftModel.from_pretrained(base, work + "/peft").eval()
    with torch.no_grad():
        out["peft"] = [names[int(model(**e).logits[0].argmax())] for e in encoded]
import onnxruntime
session = onnxruntime.InferenceSession(work + "/onnx/model.onnx")
inputs = [i.name for i in session.get_inputs()]
out["onnx"] = [names[int(session.run(None, {n: e[n].numpy() for n in inputs})[0][0].argmax())]
               for e in encoded]
assert not [m for m in sys.modules if m.split(".")[0] in ("runtime", "export", "bench")]
print(json.dumps(out))
'''


def parser() -> argparse.ArgumentParser:
    from cache_format.cli_errors import OneLineParser

    p = OneLineParser(prog="python -m bench.handoff", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a seq-cls run folder (python -m runtime.train)")
    p.add_argument("--work", help="folder for the exports (default: a temporary one)")
    return p


def main(argv=None) -> int:
    from bench.cli import run_bench_cli

    args = parser().parse_args(argv)
    return run_bench_cli(lambda: _run(args))


def _run(args) -> int:
    work = args.work or tempfile.mkdtemp(prefix="handoff-")
    print(json.dumps(run_check(args.run, work), indent=2, sort_keys=True))
    return 0


def run_check(run: str, work: str) -> dict:
    """Export `run` into `work` and score the formats in a fresh process (see module doc)."""
    from runtime import handoff, prediction as runs
    from runtime.inputs import corpus_records
    from runtime.errors import RuntimeConfigError

    loaded = runs.load_run(run)
    if loaded.config.task != "seq-cls" or int(loaded.reader.manifest.get("stride") or 0):
        raise RuntimeConfigError(f"run {run!r}: bench.handoff checks seq-cls runs on unwindowed "
                                 "caches (a pipeline cannot vote over stride windows)")
    seconds = {}
    formats = ["hf", "onnx"] + (["peft"] if loaded.config.adapter == "lora" else [])
    for fmt in formats:
        t0 = time.perf_counter()
        handoff.export_run(handoff.ExportConfig(run=run, out=os.path.join(work, fmt), format=fmt))
        seconds[fmt] = round(time.perf_counter() - t0, 1)
    keys = runs.split_keys(loaded, "test")
    from runtime.config import labels_config
    from runtime.labels import load_labelled

    data = load_labelled(labels_config(loaded.config), loaded.reader)
    gold = {e.key: data.label_names[e.target] for e in data.split("test")}
    records = corpus_records(loaded.config, loaded.reader.manifest)
    predicted = {p["id"]: p["label"] for p in runs.predict_keys(loaded, keys)}
    job = {"work": work, "labels": loaded.label_names, "base": loaded.built.model_path,
           "texts": [records[k].text for k in keys]}
    with open(os.path.join(work, "job.json"), "w") as f:
        json.dump(job, f)
    got = _user_process(os.path.join(work, "job.json"))
    accuracy = {fmt: _accuracy(labels, keys, gold) for fmt, labels in got.items()}
    with open(os.path.join(run, "metrics.json")) as f:
        metrics = json.load(f)
    return {"n": len(keys), "metrics_accuracy": metrics.get("accuracy"),
            "runtime_predict_accuracy": _accuracy([predicted[k] for k in keys], keys, gold),
            "accuracy": accuracy, "export_seconds": seconds,
            "differ_from_runtime_predict": {fmt: sum(a != predicted[k] for a, k in zip(labels, keys))
                                            for fmt, labels in got.items()}}


def _accuracy(labels: list, keys: list, gold: dict) -> float:
    return sum(label == gold[k] for label, k in zip(labels, keys)) / len(keys)


def _user_process(job: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", _USER_SIDE, job], env=env, capture_output=True,
                          text=True, cwd=os.path.dirname(job))
    if done.returncode != 0:
        raise RuntimeError(f"the user-side process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
