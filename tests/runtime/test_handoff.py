"""runtime.export / runtime.handoff: every exported format predicts what the run predicts.

Tiny random encoders of three families (BERT, RoBERTa, MPNet) get a layer-2 fp32 cache built in
PyTorch, a one-epoch run per (task, adapter, pooling) case, and an export per format. On the
run's test split the exported model, loaded back the way a user loads it, must give the logits
`runtime.prediction`/`runtime.evaluation.predict_logits` give (what `python -m runtime.predict` ranks
by), within 1e-4 on every real token. Fresh subprocesses then load each format with only
transformers / peft / onnxruntime importable (no PYTHONPATH, HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from conftest import WORDS, build_tiny_cache, tiny_rows, write_jsonl

TOL = 1e-4
FAST = dict(epochs=1, lr=1e-2, token_budget=256, max_batch_size=8)
INPUT_LR, MAX_GRAD_NORM = 5e-3, 1.0  # the "+input" runs' input adapter rate and clipping
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s"]
_SIZES = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
              intermediate_size=64)
FAMILIES = {  # family -> (config class, config kwargs, tokenizer inputs)
    "bert": ("BertConfig", dict(max_position_embeddings=64), None),
    # pad id 0 = the word-piece tokenizer's [PAD], so position ids agree with the tokenizer
    "roberta": ("RobertaConfig", dict(max_position_embeddings=66, pad_token_id=0,
                                      type_vocab_size=1), None),
    "mpnet": ("MPNetConfig", dict(max_position_embeddings=66, pad_token_id=0),
              ["input_ids", "attention_mask"]),  # MPNet takes no token_type_ids
}
# (family, task, adapter, pooling, mode): a table over families, tasks, adapters and heads
CASES = [
    ("bert", "seq-cls", "lora", "pooler", "recycled"),
    ("bert", "seq-cls", "finetune", "cls", "recycled"),
    ("bert", "seq-cls", "lora", "mean", "full"),
    ("bert", "token-cls", "finetune", None, "recycled"),
    ("bert", "qa", "bottleneck", None, "recycled"),
    ("roberta", "seq-cls", "bottleneck", "pooler", "recycled"),
    ("roberta", "token-cls", "lora", None, "recycled"),
    ("roberta", "qa", "finetune", None, "recycled"),
    ("mpnet", "seq-cls", "lora", "mean", "recycled"),
    ("mpnet", "token-cls", "bottleneck", None, "recycled"),
    ("mpnet", "qa", "lora", None, "recycled"),
    # bottleneck+input: an input adapter on layer K's input too (a forward pre-hook when exported)
    ("bert", "seq-cls", "bottleneck+input", "pooler", "recycled"),
    ("mpnet", "token-cls", "bottleneck+input", None, "recycled"),
    ("roberta", "token-cls", "lora+input", None, "recycled"),  # LoRA merged, the input adapter kept
]
CASE_IDS = ["-".join(x for x in c if x) for c in CASES]
# the input adapter's own width where it differs from the layers' (--input-adapter-size)
INPUT_SIZE = {"bert": 16}


def _custom(case) -> bool:
    """Whether the export needs modeling_recycled: bottleneck modules or a cls/mean head."""
    adapter, _, extra = case[2].partition("+")
    return adapter == "bottleneck" or extra == "input" or case[3] in ("cls", "mean")


def _save_family(name: str, folder) -> str:
    import transformers
    from transformers import AutoModel, BertTokenizerFast

    cls_name, extra, inputs = FAMILIES[name]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    kw = {} if inputs is None else {"model_input_names": inputs}
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), **kw).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = getattr(transformers, cls_name)(**_SIZES, **extra)
    AutoModel.from_config(config).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """family -> {model, cache, corpus, labels: {task: path}} (built on first use)."""
    root = tmp_path_factory.mktemp("handoff")
    rows = tiny_rows()
    corpus = write_jsonl(root / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    labels = {
        "seq-cls": write_jsonl(root / "seq.jsonl", [{"id": r["id"], "label": r["topic"]}
                                                    for r in rows]),
        "token-cls": write_jsonl(root / "tok.jsonl", [{"id": r["id"], "words": r["words"],
                                                       "label": r["tags"]} for r in rows]),
        "qa": write_jsonl(root / "qa.jsonl", [{"id": r["id"], "label": {
            "text": r["words"][-1], "answer_start": r["text"].rindex(r["words"][-1])}}
            for r in rows]),
    }
    built = {}

    def get(name):
        if name not in built:
            model = _save_family(name, root / name)
            cache = build_tiny_cache(model, rows, root / f"{name}-cache", corpus=corpus)
            built[name] = {"model": model, "cache": cache, "labels": labels, "root": root}
        return built[name]

    return get


@pytest.fixture(scope="module")
def trained(families):
    """(family, task, adapter, pooling, mode) -> run folder (trained once)."""
    from runtime.trainer import TrainConfig, train

    runs = {}

    def get(case):
        if case not in runs:
            family, task, adapter, pooling, mode = case
            adapter, _, extra = adapter.partition("+")
            f = families(family)
            out = f["root"] / ("run-" + "-".join(x for x in case if x))
            train(TrainConfig(cache=f["cache"], labels=f["labels"][task], task=task, out=str(out),
                              adapter=adapter, input_adapter=extra == "input",
                              input_adapter_size=INPUT_SIZE.get(family) if extra else None,
                              # the input runs also carry the two optional rate settings,
                              # so the card is seen to name them
                              input_adapter_lr=INPUT_LR if extra else None,
                              max_grad_norm=MAX_GRAD_NORM if extra else None,
                              pooling=pooling or "auto", mode=mode, **FAST))
            runs[case] = str(out)
        return runs[case]

    return get


def _runtime_logits(run: str) -> dict:
    """key -> logits of the run's test split, as runtime.predict computes them."""
    from runtime import prediction
    from runtime.batches import CacheBatches, token_source
    from runtime.evaluation import predict_logits
    from runtime.tasks import task_named

    loaded = prediction.load_run(run)
    keys = prediction.split_keys(loaded, "test")
    dummy = {k: task_named(loaded.config.task).dummy_target() for k in keys}
    if loaded.config.mode == "recycled":
        source = CacheBatches(loaded.reader, dummy, loaded.config.task)
    else:
        source = token_source(loaded.reader, dummy, loaded.config.task, loaded.built.model_path)
    logits = predict_logits(loaded.config, loaded.built, source, loaded.reader, keys)
    return {k: (logits[k], loaded.reader.token_ids(k).astype(np.int64)) for k in keys}


def _feed(token_ids, names) -> dict:
    ids = torch.from_numpy(token_ids)[None]  # (1, T)
    feed = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in names:
        feed["token_type_ids"] = torch.zeros_like(ids)
    return feed


def _stacked(outputs) -> np.ndarray:
    """[logits] -> logits[0]; [start, end] -> [2, T] as predict_logits returns qa logits."""
    arrays = [np.asarray(o)[0] for o in outputs]
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def _export(run, out, fmt):
    from runtime.export import main

    assert main(["--run", run, "--out", str(out), "--format", fmt]) == 0
    return out


def _assert_same(expected: dict, logits_of, names) -> float:
    worst = 0.0
    for key, (logits, token_ids) in expected.items():
        got = _stacked(logits_of(_feed(token_ids, names)))
        assert got.shape == logits.shape, key
        worst = max(worst, float(np.abs(got - logits).max()))
    print(f"max abs logit difference {worst:.2e}")  # shown with -s: the README's figure
    assert worst <= TOL, worst
    return worst


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hf_export_predicts_as_the_run(case, trained, tmp_path):
    import transformers
    from runtime.handoff_parity import hf_logits
    from runtime.tasks import task_named

    run = trained(case)
    out = _export(run, tmp_path / "hf", "hf")
    config = json.loads((out / "config.json").read_text())
    task, (adapter, _, extra), custom = case[1], case[2].partition("+"), _custom(case)
    assert (out / "modeling_recycled.py").exists() == custom  # code only where needed
    assert ("auto_map" in config) == custom
    card = (out / "README.md").read_text()  # the model card: provenance, recipe, metrics
    metrics = json.loads(open(os.path.join(run, "metrics.json")).read())
    assert f"- test metrics of the run (metrics.json): `{json.dumps(metrics, sort_keys=True)}`" in card
    assert "- K (cached lower layers): 2" in card and f'"adapter": "{adapter}"' in card
    assert '"head_init": "random"' in card  # how the head started is part of the recipe
    if adapter in ("lora", "bottleneck"):
        assert f'"input_adapter": {json.dumps(extra == "input")}' in card
    assert (f'"input_adapter_lr": {INPUT_LR}' in card) == (extra == "input")
    assert (f'"max_grad_norm": {MAX_GRAD_NORM}' in card) == (extra == "input")
    if custom:
        assert (config["bottleneck"] or {}).get("input_layer") == (2 if extra == "input" else None)
        if extra == "input":
            assert config["bottleneck"]["input_size"] == INPUT_SIZE.get(case[0], FAST.get(
                "bottleneck_size", 64))
    assert '"weights_sha256": "' in card.split("cache fingerprint:")[1].splitlines()[0]
    if task != "qa":
        names = json.loads(card.split("labels (id2label): `")[1].split("`")[0])
        assert config["id2label"] == names
    model = getattr(transformers, task_named(task).auto_class).from_pretrained(
        str(out), trust_remote_code=custom).eval()
    if extra == "input":  # the trained input adapter arrived, not its zero start
        ups = [v for k, v in model.state_dict().items() if "input_adapter.adapter_up.weight" in k]
        assert len(ups) == 1 and ups[0].abs().max() > 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    _assert_same(_runtime_logits(run), lambda feed: hf_logits(model, feed),
                 tokenizer.model_input_names)


PEFT_CASES = [c for c in CASES if c[2] == "lora"]


@pytest.mark.parametrize("case", PEFT_CASES, ids=["-".join(x for x in c if x) for c in PEFT_CASES])
def test_peft_export_predicts_as_the_run(case, trained, families, tmp_path):
    import transformers
    from peft import PeftModel
    from runtime.handoff_parity import hf_logits
    from runtime.tasks import task_named

    run = trained(case)
    out = _export(run, tmp_path / "peft", "peft")
    adapter = json.loads((out / "adapter_config.json").read_text())
    task, pooling = case[1], case[3]
    cls = getattr(transformers, task_named(task).auto_class)
    if pooling in ("cls", "mean"):  # no transformers head: the base ships beside the adapter
        base = cls.from_pretrained(str(out / "base"), trust_remote_code=True)
    else:
        assert not (out / "base").exists()
        names = json.loads(open(os.path.join(run, "config.json")).read())["label_names"]
        labels = {} if task == "qa" else {"id2label": dict(enumerate(names)),
                                          "label2id": {n: i for i, n in enumerate(names)}}
        base = cls.from_pretrained(families(case[0])["model"], **labels)
    assert adapter["peft_type"] == "LORA" and adapter["modules_to_save"]
    model = PeftModel.from_pretrained(base, str(out)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    _assert_same(_runtime_logits(run), lambda feed: hf_logits(model, feed),
                 tokenizer.model_input_names)


# --- a user's fresh process: only transformers / peft / onnxruntime, offline ------------------

TEXTS = ["cat dog run bob in paris", "sun moon alpha", "red blue green gamma ann rome with the"]


def _user_process(script: str, tmp_path, **values) -> object:
    """Run `script` (formatted with the reprs of `values`) in a fresh interpreter without this project
    on the path; it prints one JSON value, returned here. It fails if `runtime` got imported."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / "hf-modules"))
    code = "import json, sys\n" + textwrap.dedent(script).format(
        **{k: repr(v) for k, v in values.items()}) + textwrap.dedent("""
        assert not [m for m in sys.modules if m.split(".")[0] in ("runtime", "export")], \\
            "the exported folder imported this project"
        print(json.dumps(RESULT, default=float))
        """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _expected_probs(run: str, texts) -> list:
    """Softmax of the run's own logits per text (one text at a time, no padding)."""
    from runtime import handoff, handoff_parity

    loaded = handoff.load_trained_run(run)
    tokenizer = handoff_parity.load_tokenizer(loaded)
    out = []
    for text in texts:
        inputs = {k: v.to(torch.long) for k, v in tokenizer([text], return_tensors="pt").items()}
        logits = handoff_parity.runtime_logits(loaded, inputs)[0][0]
        p = np.exp(logits - logits.max(-1, keepdims=True))
        out.append((p / p.sum(-1, keepdims=True), loaded.label_names))
    return out


PIPELINE_CASES = [CASES[0], CASES[8], CASES[5], CASES[6], CASES[9], CASES[11]]


@pytest.mark.parametrize("case", PIPELINE_CASES,
                         ids=["-".join(x for x in c if x) for c in PIPELINE_CASES])
def test_pipeline_in_a_fresh_process(case, trained, tmp_path):
    task, custom = case[1], _custom(case)
    run = trained(case)
    out = _export(run, tmp_path / "hf", "hf")
    if task == "seq-cls":
        got = _user_process("""
            from transformers import pipeline
            classify = pipeline("text-classification", model={out}, trust_remote_code={trust})
            RESULT = classify({texts}, top_k=None, truncation=True)
            """, tmp_path, out=str(out), trust=custom, texts=TEXTS)
        for rows, (probs, names) in zip(got, _expected_probs(run, TEXTS)):
            scores = {r["label"]: r["score"] for r in rows}
            assert set(scores) == set(names)
            assert max(abs(scores[n] - float(p)) for n, p in zip(names, probs)) <= TOL
    else:
        got = _user_process("""
            from transformers import pipeline
            tag = pipeline("token-classification", model={out}, trust_remote_code={trust},
                           ignore_labels=[])
            RESULT = tag({texts})
            """, tmp_path, out=str(out), trust=custom, texts=TEXTS)
        for rows, (probs, names) in zip(got, _expected_probs(run, TEXTS)):
            assert [r["index"] for r in rows] == list(range(1, len(probs) - 1))  # no [CLS]/[SEP]
            for r in rows:
                assert r["entity"] == names[int(probs[r["index"]].argmax())]
                assert abs(r["score"] - float(probs[r["index"]].max())) <= TOL


@pytest.mark.parametrize("case", [CASES[0], CASES[8]], ids=["bert-pooler", "mpnet-mean"])
def test_peft_in_a_fresh_process(case, trained, families, tmp_path):
    run = trained(case)
    out = _export(run, tmp_path / "peft", "peft")
    expected = _runtime_logits(run)
    keys = sorted(expected)
    custom = case[3] in ("cls", "mean")
    names = json.loads(open(os.path.join(run, "config.json")).read())["label_names"]
    got = _user_process("""
        import torch
        from peft import PeftModel
        from transformers import AutoModelForSequenceClassification as Auto
        names = {names}
        if {custom}:
            base = Auto.from_pretrained({out} + "/base", trust_remote_code=True)
        else:
            base = Auto.from_pretrained({base}, id2label=dict(enumerate(names)),
                                        label2id={{n: i for i, n in enumerate(names)}})
        model = PeftModel.from_pretrained(base, {out}).eval()
        RESULT = []
        with torch.no_grad():
            for ids in {ids}:
                ids = torch.tensor([ids])
                RESULT.append(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].tolist())
        """, tmp_path, out=str(out), custom=custom, names=names,
        base=families(case[0])["model"], ids=[expected[k][1].tolist() for k in keys])
    worst = max(float(np.abs(np.asarray(g) - expected[k][0]).max()) for g, k in zip(got, keys))
    assert worst <= TOL


# --- bad input: one line on stderr, exit 2, nothing written -----------------------------------

def _one_line_error(capsys, expected: str):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err, err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--format", "peft"], "exports LoRA runs only"),
    (["--format", "peft", "--run", "lora+input"], "has an input adapter, which a peft LoRA folder"),
    (["--run", "{tmp}/nowhere"], "is not a finished run folder"),
    (["--out", "{tmp}/taken"], "already exists and is not an empty folder"),
], ids=["peft-of-finetune", "peft-of-lora-with-input", "no-run", "out-taken"])
def test_bad_input_exit_2_and_nothing_written(args, message, trained, tmp_path, capsys):
    from runtime.export import main

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    argv = {"--run": trained(CASES[1]), "--out": str(tmp_path / "new"), "--format": "hf"}
    for flag, value in zip(args[::2], args[1::2]):
        argv[flag] = trained(CASES[13]) if value == "lora+input" else value.format(tmp=tmp_path)
    capsys.readouterr()  # the training's progress output
    assert main([x for kv in argv.items() for x in kv]) == 2
    _one_line_error(capsys, message)
    assert sorted(os.listdir(tmp_path)) == ["taken"]  # no DIR, no temporary folder left
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_python_m_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "runtime.export", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--format {hf,peft,onnx}" in done.stdout


# --- onnx ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_onnx_export_predicts_as_the_run(case, trained, tmp_path):
    import onnxruntime

    run = trained(case)
    out = _export(run, tmp_path / "onnx", "onnx")
    session = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert json.loads((out / "config.json").read_text()).get("id2label") or case[1] == "qa"

    def logits_of(feed):
        return session.run(None, {n: feed[n].numpy() for n in names})

    _assert_same(_runtime_logits(run), logits_of, names)


def test_onnx_in_a_fresh_process(trained, tmp_path):
    # MPNet token-cls with bottleneck and input adapters: custom code and a hook in the graph
    run = trained(CASES[12])
    out = _export(run, tmp_path / "onnx", "onnx")
    expected = _runtime_logits(run)
    keys = sorted(expected)
    got = _user_process("""
        import numpy as np
        import onnxruntime
        from transformers import AutoTokenizer
        session = onnxruntime.InferenceSession({out} + "/model.onnx")
        names = [i.name for i in session.get_inputs()]
        assert AutoTokenizer.from_pretrained({out}).model_input_names == names, names
        RESULT = []
        for ids in {ids}:
            ids = np.array([ids], dtype=np.int64)
            feed = {{"input_ids": ids, "attention_mask": np.ones_like(ids)}}
            RESULT.append(session.run(None, feed)[0][0].tolist())
        """, tmp_path, out=str(out), ids=[expected[k][1].tolist() for k in keys])
    worst = max(float(np.abs(np.asarray(g) - expected[k][0]).max()) for g, k in zip(got, keys))
    assert worst <= TOL


# --- the real default model -----------------------------------------------------------------

@pytest.mark.slow
def test_real_model_pipeline_scores_the_runs_accuracy(tmp_path, jsonl):
    """all-MiniLM-L6-v2, K=3, LoRA: the text-classification pipeline on the exported folder
    predicts every test example as runtime.predict does, so it scores metrics.json's accuracy."""
    from export.build import BuildConfig, build_cache
    from runtime import prediction as runs
    from runtime.trainer import TrainConfig, train
    from test_predict_real import TEXTS as TOPICS

    rows = [{"id": f"{label}-{i}-{j}", "text": f"{text} {'again ' * j}".strip(), "label": label}
            for label, texts in TOPICS.items() for i, text in enumerate(texts) for j in range(5)]
    corpus = jsonl(tmp_path / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    labels = jsonl(tmp_path / "labels.jsonl", [{"id": r["id"], "label": r["label"]} for r in rows])
    cache = str(tmp_path / "cache")
    build_cache(BuildConfig(layer=3, corpus=corpus, out=cache, dtype="fp32", max_length=32,
                            progress=False))
    run = str(tmp_path / "run")
    metrics = train(TrainConfig(cache=cache, labels=labels, task="seq-cls", out=run, epochs=1))
    out = _export(run, tmp_path / "hf", "hf")
    loaded = runs.load_run(run)
    keys = runs.split_keys(loaded, "test")
    text = {r["id"]: r["text"] for r in rows}
    gold = {r["id"]: r["label"] for r in rows}
    predicted = {p["id"]: p["label"] for p in runs.predict_keys(loaded, keys)}
    got = _user_process("""
        from transformers import pipeline
        classify = pipeline("text-classification", model={out}, trust_remote_code=True)
        RESULT = [r["label"] for r in classify({texts}, truncation=True)]
        """, tmp_path, out=str(out), texts=[text[k] for k in keys])
    assert got == [predicted[k] for k in keys]
    accuracy = sum(g == gold[k] for g, k in zip(got, keys)) / len(keys)
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)


# --- every supported architecture family, hf format ---------------------------------------------

@pytest.mark.parametrize("name", ["distilbert", "electra-e16", "xlm-roberta", "deberta-v3",
                                  "modernbert"])
def test_hf_export_of_other_families(name, tmp_path):
    """The other families' seq-cls LoRA runs (architecture head) export without code, exactly."""
    import transformers
    from transformers import AutoModel, BertTokenizerFast

    from runtime.trainer import TrainConfig, train
    from tiny_encoders import make_config

    model_dir = tmp_path / name
    model_dir.mkdir()
    vocab = VOCAB + [f"w{i}" for i in range(100 - len(VOCAB))]  # the configs' vocab_size 100
    (model_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(model_dir / "vocab.txt"),
                      model_input_names=["input_ids", "attention_mask"]).save_pretrained(str(model_dir))
    torch.manual_seed(0)
    AutoModel.from_config(make_config(name, None)).save_pretrained(str(model_dir))
    rows = tiny_rows(45)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": r["id"], "text": r["text"]} for r in rows])
    labels = write_jsonl(tmp_path / "seq.jsonl", [{"id": r["id"], "label": r["topic"]} for r in rows])
    cache = build_tiny_cache(str(model_dir), rows, tmp_path / "cache", corpus=corpus)
    run = str(tmp_path / "run")
    train(TrainConfig(cache=cache, labels=labels, task="seq-cls", out=run, pooling="pooler", **FAST))
    out = _export(run, tmp_path / "hf", "hf")
    assert not (out / "modeling_recycled.py").exists()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    from runtime.handoff_parity import hf_logits

    _assert_same(_runtime_logits(run), lambda feed: hf_logits(model, feed),
                 ["input_ids", "attention_mask"])


def test_a_run_from_before_pooling_and_lora_targets_exports_as_trained(trained, tmp_path):
    """config.json without "pooling" / "lora_targets" (older runs) means the pooler head and LoRA
    on query/value, not today's defaults: predict and export rebuild the model it trained."""
    import shutil

    from runtime import prediction as runs

    old = tmp_path / "old-run"
    shutil.copytree(trained(CASES[0]), old)
    saved = json.loads((old / "config.json").read_text())
    saved.pop("pooling")
    weights = torch.load(old / "weights.pt", weights_only=True)
    if saved.pop("lora_targets") == "all":  # keep only query/value LoRA, as older runs had
        weights = {k: v for k, v in weights.items()
                   if "lora_" not in k or ".query." in k or ".value." in k}
        torch.save(weights, old / "weights.pt")
    (old / "config.json").write_text(json.dumps(saved))
    loaded = runs.load_run(str(old))
    assert loaded.built.head.pooling == "pooler"
    assert {n for n, _ in loaded.built.model.named_parameters() if "lora_A" in n} == \
        {n for n in weights if "lora_A" in n}
    out = _export(str(old), tmp_path / "hf", "hf")
    assert not (out / "modeling_recycled.py").exists()


def test_bench_handoff_scores_every_format_as_the_run_predicts(trained, tmp_path):
    # bench.handoff made the README's default-job figures; here on a tiny run, end to end
    from bench.handoff import main as handoff_main, run_check

    run = trained(("bert", "seq-cls", "lora", "pooler", "recycled"))
    report = run_check(run, str(tmp_path / "work"))
    assert set(report["accuracy"]) == {"hf", "onnx", "peft"}
    assert report["differ_from_runtime_predict"] == {"hf": 0, "onnx": 0, "peft": 0}
    assert all(a == report["runtime_predict_accuracy"] for a in report["accuracy"].values())
    assert handoff_main(["--run", str(tmp_path / "no-run")]) == 2  # one line, not a traceback
