"""Every bad input a user can give runtime.train and runtime.predict: exit 2, exactly one line
on stderr, no traceback, and nothing already written lost (issue 9's table)."""

import errno
import json
import os
import shutil

import pytest
import torch

from runtime import predict, train

FAST = ["--epochs", "1", "--lr", "1e-2", "--token-budget", "256", "--max-batch-size", "8"]
NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def seq_run(tiny_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seq"
    assert train.main(["--cache", tiny_task["cache"], "--labels", tiny_task["seq_labels"],
                       "--task", "seq-cls", "--out", str(out), *FAST]) == 0
    return out


def _code_and_err(capsys, main, argv):
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse
        code = exit_info.code
    return code, capsys.readouterr().err


def _assert_one_line(code, err, fragment):
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and fragment in err, err


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _seq_rows(n=90):
    return [{"id": f"t{i:03d}", "label": "abc"[i % 3]} for i in range(n)]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _ids(table):
    return [row.values[0] if hasattr(row, "marks") else row[0] for row in table]


# (id, extra argv after --cache/--task/--out/FAST, a fragment of the line). {labels} is the
# task's seq-cls labels file, {tmp} a scratch folder.
TRAIN_BAD = [
    ("lr-negative", ["--lr", "-1"], "lr must be > 0 and < 1"),
    ("lr-zero", ["--lr", "0"], "lr must be > 0"),
    ("lr-huge", ["--lr", "3"], "lr must be > 0 and < 1"),
    ("lr-not-a-number", ["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    ("head-lr-negative", ["--head-lr", "-1"], "head_lr must be > 0 and < 1"),
    ("min-epochs-0", ["--min-epochs", "0"], "min_epochs must be >= 1"),
    ("token-budget-0", ["--token-budget", "0"], "token_budget must be >= 1"),
    ("max-batch-size-0", ["--max-batch-size", "0"], "max_batch_size must be >= 1"),
    ("warmup-ratio-5", ["--warmup-ratio", "5"], "warmup_ratio must be in 0.0..1.0"),
    ("warmup-ratio-negative", ["--warmup-ratio", "-0.1"], "warmup_ratio must be in 0.0..1.0"),
    ("patience-0", ["--patience", "0"], "patience must be >= 1 (patience 0 would stop"),
    ("epochs-0", ["--epochs", "0"], "epochs must be >= 1"),
    ("epochs-not-int", ["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    ("seed-negative", ["--seed", "-1"], "seed must be in 0..4294967295"),
    ("weight-decay-negative", ["--weight-decay", "-1"], "weight_decay must be >= 0.0"),
    ("lora-r-0", ["--lora-r", "0"], "lora_r must be >= 1"),
    ("lora-alpha-0", ["--lora-alpha", "0"], "lora_alpha must be >= 1"),
    ("bottleneck-0", ["--adapter", "bottleneck", "--bottleneck-size", "0"],
     "bottleneck_size must be >= 1"),
    ("input-adapter-with-finetune", ["--adapter", "finetune", "--input-adapter"],
     "input_adapter goes with adapter lora or bottleneck, not 'finetune'"),
    ("input-adapter-size-alone", ["--input-adapter-size", "128"],
     "input_adapter_size is the input adapter's width; it needs input_adapter"),
    ("input-adapter-size-zero", ["--input-adapter", "--input-adapter-size", "0"],
     "input_adapter_size must be >= 1"),
    ("input-adapter-lr-alone", ["--input-adapter-lr", "1e-4"],
     "input_adapter_lr is the input adapter's learning rate; it needs input_adapter"),
    ("input-adapter-lr-too-big", ["--input-adapter", "--input-adapter-lr", "3"],
     "input_adapter_lr must be > 0 and < 1"),
    ("max-grad-norm-zero", ["--max-grad-norm", "0"], "max_grad_norm must be > 0"),
    ("device-tpu", ["--device", "tpu"], "device 'tpu' is not"),
    ("device-garbage", ["--device", "cuda:x"], "device 'cuda:x' is not a torch device"),
    pytest.param("device-cuda-no-gpu", ["--device", "cuda"], "is not available here",
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")),
    ("device-cuda-99", ["--device", "cuda:99"], "is not available here"),
    ("unknown-mode", ["--mode", "half"], "argument --mode: invalid choice: 'half'"),
    ("unknown-adapter", ["--adapter", "prefix"], "argument --adapter: invalid choice"),
    ("unknown-flag", ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("unknown-head-init", ["--head-init", "zero"], "argument --head-init: invalid choice"),
    # the tiny BERT is no sentence-transformers checkpoint: auto pooling is its pooler head
    ("head-init-probe-on-pooler", ["--head-init", "probe"], "pass --pooling mean or cls"),
    ("lora-r-with-bottleneck", ["--adapter", "bottleneck", "--lora-r", "16"],
     "--lora-r shapes --adapter lora adapters; this run trains --adapter bottleneck"),
    # typed at its default (8) is typed all the same: nothing reads it
    ("lora-r-default-with-bottleneck", ["--adapter", "bottleneck", "--lora-r", "8"],
     "--lora-r shapes --adapter lora adapters; this run trains --adapter bottleneck"),
    ("lora-targets-with-finetune", ["--adapter", "finetune", "--lora-targets", "attention"],
     "--lora-targets shapes --adapter lora adapters; this run trains --adapter finetune"),
    ("bottleneck-size-with-lora", ["--bottleneck-size", "128"],
     "--bottleneck-size shapes --adapter bottleneck adapters; this run trains --adapter lora"),
    ("dtype-with-cache", ["--dtype", "fp16"],
     "--dtype picks a built-in task's cache; --cache names the cache already"),
    ("builtin-with-cache", ["--builtin", "bbc-news"],
     "--builtin picks a built-in task's cache; --cache names the cache already"),
    ("layer-mismatch", ["--layer", "3"], "holds layer 2, not layer 3"),
    ("model-missing", ["--model", "{tmp}/no-model"], "no-model"),
]


@pytest.mark.parametrize("name,extra,fragment", TRAIN_BAD,
                         ids=_ids(TRAIN_BAD))
def test_train_bad_option(tiny_task, tmp_path, capsys, name, extra, fragment):
    out = tmp_path / "run"
    argv = ["--cache", tiny_task["cache"], "--labels", tiny_task["seq_labels"], "--task",
            "seq-cls", "--out", str(out), *FAST, *[a.format(tmp=tmp_path) for a in extra]]
    _assert_one_line(*_code_and_err(capsys, train.main, argv), fragment)
    assert not out.exists()  # a refused run leaves no run folder


def test_the_bottleneck_width_sizes_an_input_adapter_beside_lora():
    from runtime.train import _refuse_unread_options, parser

    _refuse_unread_options(parser().parse_args(["--input-adapter", "--bottleneck-size", "128"]))
    _refuse_unread_options(parser().parse_args(["--builtin", "wnut16", "--dtype", "fp16"]))


def _labels_case(tmp, data: bytes, suffix=".jsonl"):
    return _write(tmp / f"labels{suffix}", data)


LABELS_BAD = [  # (id, task, labels bytes, suffix, fragment)
    ("qa-on-class-labels", "qa", _jsonl(_seq_rows()), ".jsonl",
     "qa labels must be an object"),
    ("duplicate-ids", "seq-cls", _jsonl(_seq_rows() + [{"id": "t005", "label": "z"}]), ".jsonl",
     "gives id 't005' twice with different labels ('c' and 'z')"),
    ("non-utf8", "seq-cls", b'{"id": "t000", "label": "\xff"}\n', ".jsonl", "is not UTF-8"),
    ("not-json", "seq-cls", b"{id: t000}\n", ".jsonl", "line 1 is not JSON"),
    ("json-list-line", "seq-cls", b"[1, 2]\n", ".jsonl", "line 1 is not a JSON object"),
    ("txt-extension", "seq-cls", b"t000 a\n", ".txt", "use .jsonl or .csv"),
    ("csv-non-utf8", "seq-cls", b"id,label\nt000,\xff\n", ".csv", "is not UTF-8"),
    ("empty-file", "seq-cls", b"", ".jsonl", "holds no rows"),
    ("csv-no-label-column", "seq-cls", b"id,topic\nt000,a\n", ".csv", "has no 'label' field"),
    ("conflicting-split-dup", "seq-cls",
     _jsonl(_seq_rows() + [{"id": "t001", "label": "a", "split": "test"}]), ".jsonl",
     "gives id 't001' twice with different labels ('b' and 'a')"),
    ("no-label-field", "seq-cls", _jsonl([{"id": "t000"}]), ".jsonl", "has no 'label' field"),
    ("token-cls-words-mismatch", "token-cls",
     _jsonl([{"id": f"t{i:03d}", "words": ["zz"], "label": ["O"]} for i in range(90)]),
     ".jsonl", "examples do not match the cached text"),
]


@pytest.mark.parametrize("extra, fragment", [
    (["--input-adapter-size", "16"], "input_adapter_size is the input adapter's width"),
    (["--adapter", "finetune", "--input-adapter"], "input_adapter goes with adapter lora"),
    (["--lr", "2"], "lr must be > 0 and < 1")], ids=["input-size-alone", "input-finetune", "lr"])
def test_a_built_in_job_checks_its_options_before_building_the_cache(tmp_path, monkeypatch,
                                                                     capsys, extra, fragment):
    # the first built-in run builds its cache (minutes): a bad option must not wait for that
    monkeypatch.chdir(tmp_path)
    _assert_one_line(*_code_and_err(capsys, train.main, ["--builtin", "wnut16", *extra]),
                     fragment)
    assert list(tmp_path.iterdir()) == []  # no cache, no task files, no run folder


@pytest.mark.parametrize("name,task,data,suffix,fragment", LABELS_BAD,
                         ids=[b[0] for b in LABELS_BAD])
def test_train_bad_labels(tiny_task, tmp_path, capsys, name, task, data, suffix, fragment):
    out = tmp_path / "run"
    argv = ["--cache", tiny_task["cache"], "--labels", _labels_case(tmp_path, data, suffix),
            "--task", task, "--out", str(out), *FAST]
    _assert_one_line(*_code_and_err(capsys, train.main, argv), fragment)
    assert not out.exists()


def test_train_usage_errors_are_one_line_with_help_hint(capsys):
    code, err = _code_and_err(capsys, train.main, ["--task", "ner"])
    _assert_one_line(code, err, "argument --task: invalid choice: 'ner'")
    assert err.startswith("python -m runtime.train: error: ") and err.endswith("(see --help)\n")


def test_train_damaged_cache_and_out_that_is_a_file(tiny_task, tmp_path, capsys):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_task["cache"], cache)
    (cache / "manifest.json").write_bytes(b"\x80")
    argv = ["--cache", str(cache), "--labels", tiny_task["seq_labels"], "--task", "seq-cls",
            "--out", str(tmp_path / "r"), *FAST]
    _assert_one_line(*_code_and_err(capsys, train.main, argv), "manifest is not UTF-8")
    (tmp_path / "file").write_text("keep me")
    argv = ["--cache", tiny_task["cache"], "--labels", tiny_task["seq_labels"], "--task",
            "seq-cls", "--out", str(tmp_path / "file"), *FAST]
    _assert_one_line(*_code_and_err(capsys, train.main, argv), str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "keep me"


def test_train_model_changed_since_the_build_is_refused_without_model(tiny_task, tmp_path,
                                                                      capsys):
    """The fingerprint is checked whenever weights are loaded, not only with --model."""
    import cache_format
    from cache_format.manifest import read_manifest, write_manifest

    model = tmp_path / "model"
    shutil.copytree(tiny_task["model"], model)
    cache = tmp_path / "cache"
    shutil.copytree(tiny_task["cache"], cache)
    m = read_manifest(cache / "manifest.json")
    assert cache_format.open(cache).manifest["weights_sha256"]
    # point the cache at the copy (the identity digest changes, so re-stamp the files too)
    m["metadata"]["model"] = str(model)
    _repoint(cache, m, write_manifest)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    argv = ["--cache", str(cache), "--labels", tiny_task["seq_labels"], "--task", "seq-cls",
            "--out", str(tmp_path / "r"), *FAST]
    _assert_one_line(*_code_and_err(capsys, train.main, argv),
                     "are not the ones the cache was built from (weights_sha256 differs")


def _repoint(cache, manifest, write_manifest):
    """Rewrite a cache's manifest metadata and every shard's owner block to match."""
    from cache_format import layout as L
    from cache_format.manifest import identity_digest
    import zlib

    digest = identity_digest(manifest)
    for entry in manifest["shards"]:
        shard = cache / (entry["name"] + L.DATA_SUFFIX)
        data = bytearray(shard.read_bytes())
        data[32:64] = digest
        shard.write_bytes(bytes(data))
        index = cache / (entry["name"] + L.INDEX_SUFFIX)
        raw = bytearray(index.read_bytes())
        raw[56:88] = digest
        raw[36:40] = zlib.crc32(bytes(raw[40:])).to_bytes(4, "little")
        index.write_bytes(bytes(raw))
    write_manifest(cache / "manifest.json", manifest)


# -- predict ---------------------------------------------------------------------------------

PREDICT_BAD = [  # (id, argv after --run RUN, fragment)
    ("empty-text", ["--text", ""], "--text '' is empty"),
    ("blank-text", ["--text", "   "], "is empty"),
    ("texts-missing", ["--texts", "{tmp}/none.txt"], "cannot read --texts"),
    ("texts-non-utf8", ["--texts", "{tmp}/latin1.txt"], "is not UTF-8 (byte 3)"),
    ("texts-empty", ["--texts", "{tmp}/empty.txt"], "holds no text"),
    ("texts-is-a-folder", ["--texts", "{tmp}"], "cannot read --texts"),
    ("unknown-key", ["--keys", "nope"], "key 'nope' is not in the cache"),
    ("wrong-task", ["--task", "qa"], "holds a 'seq-cls' run, not 'qa'"),
    ("unknown-split", ["--split", "valid"], "argument --split: invalid choice: 'valid'"),
    ("text-and-keys", ["--text", "a text", "--keys", "t000"],
     "--text/--texts and --keys pick what to predict; pass one of them"),
    ("keys-and-split", ["--keys", "t000", "--split", "dev"],
     "--keys and --split pick what to predict; pass one of them"),
    ("write-back-without-texts", ["--write-back"],
     "--write-back adds the states of --text/--texts to the cache; pass the texts"),
    ("out-in-missing-folder", ["--keys", "t000", "--out", "{tmp}/no/such/out.jsonl"],
     "no/such/out.jsonl.tmp: no such file or folder"),
    ("out-is-a-folder", ["--keys", "t000", "--out", "{tmp}"], "is a folder"),
    ("device-tpu", ["--device", "tpu"], "device 'tpu' is not"),
    pytest.param("device-cuda-no-gpu", ["--device", "cuda"], "is not available here",
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is visible")),
    ("other-cache", ["--cache", "{tmp}/no-cache"], "no such cache folder"),
    ("unknown-flag", ["--texts"], "argument --texts: expected one argument"),
]


def test_a_cache_being_written_is_refused_by_train_and_predict(tiny_task, seq_run, tmp_path,
                                                               capsys):
    # its last commit reads as a whole cache: `predict --split all` would answer for part of
    # the corpus, and train would stop on the labels with a message that blames the labels
    import cache_format

    cache = tmp_path / "cache"
    shutil.copytree(tiny_task["cache"], cache)
    built = cache_format.open(cache)
    writer = cache_format.create(cache, hidden_size=built.hidden_size, dtype=built.dtype,
                                 append=True, metadata=built.manifest["metadata"])
    try:
        fragment = f"is still being written (pid {os.getpid()}); wait for the build to finish"
        argv = ["--cache", str(cache), "--labels", tiny_task["seq_labels"], "--task", "seq-cls",
                "--out", str(tmp_path / "r"), *FAST]
        _assert_one_line(*_code_and_err(capsys, train.main, argv), fragment)
        assert not (tmp_path / "r").exists()
        argv = ["--run", str(seq_run), "--cache", str(cache), "--split", "all"]
        _assert_one_line(*_code_and_err(capsys, predict.main, argv), fragment)
    finally:
        writer.close()
    assert predict.main(["--run", str(seq_run), "--cache", str(cache), "--split", "all",
                         "--out", str(tmp_path / "p.jsonl")]) == 0


@pytest.mark.parametrize("name,extra,fragment", PREDICT_BAD,
                         ids=_ids(PREDICT_BAD))
def test_predict_bad_input(seq_run, tmp_path, capsys, name, extra, fragment):
    _write(tmp_path / "latin1.txt", b"caf\xe9\n")
    _write(tmp_path / "empty.txt", b"\n\n")
    argv = ["--run", str(seq_run), *[a.format(tmp=tmp_path) for a in extra]]
    _assert_one_line(*_code_and_err(capsys, predict.main, argv), fragment)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("name,damage,fragment", [
    ("half-written-config", lambda run: _truncate(run / "config.json", 0.5), "config.json is damaged"),
    ("config-not-an-object", lambda run: (run / "config.json").write_text("[]"),
     "is not a run config"),
    ("truncated-weights", lambda run: _truncate(run / "weights.pt", 0.5),
     "weights.pt cannot be loaded"),
    ("empty-weights", lambda run: (run / "weights.pt").write_bytes(b""),
     "weights.pt cannot be loaded"),
    ("no-weights", lambda run: (run / "weights.pt").unlink(), "is not a finished run folder"),
], ids=["half-written-config", "config-not-an-object", "truncated-weights", "empty-weights",
        "no-weights"])
def test_predict_damaged_run_folder(seq_run, tmp_path, capsys, name, damage, fragment):
    run = tmp_path / "run"
    shutil.copytree(seq_run, run)
    damage(run)
    _assert_one_line(*_code_and_err(capsys, predict.main, ["--run", str(run)]), fragment)


def _truncate(path, share):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * share)])


def test_predict_usage_error_is_one_line(capsys):
    code, err = _code_and_err(capsys, predict.main, [])
    _assert_one_line(code, err, "the following arguments are required: --run (see --help)")


def test_disk_full_while_writing_predictions_is_one_line_and_no_half_file(seq_run, tmp_path,
                                                                         capsys, monkeypatch):
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def full_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Full(f) if str(path).endswith("out.jsonl.tmp") else f

    monkeypatch.setattr(builtins, "open", full_open)
    out = tmp_path / "out.jsonl"
    code, err = _code_and_err(capsys, predict.main, ["--run", str(seq_run), "--keys", "t000",
                                                     "--out", str(out)])
    _assert_one_line(code, err, "out.jsonl.tmp: the disk is full")
    assert not out.exists() and not (tmp_path / "out.jsonl.tmp").exists()


@pytest.mark.parametrize("name,damage,extra,fragment", [
    ("half-written-config-in-out", lambda run: _truncate(run / "config.json", 0.5), [],
     "config.json is damaged (half-written?)"),
    ("truncated-checkpoint", lambda run: _truncate(run / "checkpoint.pt", 0.3), ["--resume"],
     "checkpoint.pt is truncated or damaged"),
    ("resume-without-checkpoint", lambda run: (run / "checkpoint.pt").unlink(), ["--resume"],
     "--resume given but"),
    ("resume-with-other-settings", lambda run: None, ["--resume", "--seed", "7"],
     "was trained with seed=0 (now 7)"),
    ("resume-from-half-written-config", lambda run: _truncate(run / "config.json", 0.5),
     ["--resume"], "drop --resume to start the run again"),
], ids=["half-written-config-in-out", "truncated-checkpoint", "resume-without-checkpoint",
        "resume-with-other-settings", "resume-from-half-written-config"])
def test_train_into_a_damaged_run_folder(tiny_task, seq_run, tmp_path, capsys, name, damage,
                                         extra, fragment):
    run = tmp_path / "run"
    shutil.copytree(seq_run, run)
    damage(run)
    argv = ["--cache", tiny_task["cache"], "--labels", tiny_task["seq_labels"], "--task",
            "seq-cls", "--out", str(run), *FAST, "--overwrite", *extra]
    _assert_one_line(*_code_and_err(capsys, train.main, argv), fragment)


def test_epochs_0_on_a_builtin_task_is_refused_not_replaced_by_its_default(monkeypatch, tmp_path,
                                                                           capsys):
    import runtime.datasets
    from runtime.train import main

    monkeypatch.setattr(runtime.datasets, "prepare_builtin", lambda *a, **k: (
        runtime.datasets.PreparedTask(str(tmp_path / "cache"), str(tmp_path / "labels.jsonl"),
                                      "token-cls", 10)))
    assert main(["--builtin", "wnut16", "--epochs", "0", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "error: epochs must be >= 1, got 0\n"
