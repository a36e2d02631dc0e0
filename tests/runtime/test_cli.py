"""runtime.train / runtime.predict command lines: success paths and bad input (exit 2, one line)."""

import json
import os
import subprocess
import sys

import pytest

from runtime import PEFT_TRANSFORMERS_WARNING, predict, train

FAST = ["--epochs", "1", "--lr", "1e-2", "--token-budget", "256", "--max-batch-size", "8"]


def _train(tiny_task, out, *extra, labels=None, task="seq-cls"):
    return train.main(["--cache", tiny_task["cache"], "--labels", labels or tiny_task["seq_labels"],
                       "--task", task, "--out", str(out), *FAST, *extra])


@pytest.fixture(scope="module")
def seq_run(tiny_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seq"
    assert _train(tiny_task, out) == 0
    return out


def _one_line_error(capsys, expected: str):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err, err
    assert "\n" not in err and "Traceback" not in err


# The keys ../shared/CONTRACT.md fixes for a seq-cls run's metrics.json (presence only).
SEQ_CLS_METRIC_KEYS = frozenset({"accuracy", "macro_f1", "train_seconds"})


def test_train_prints_and_writes_metrics(seq_run, capsys):
    metrics = json.loads((seq_run / "metrics.json").read_text())
    assert SEQ_CLS_METRIC_KEYS <= set(metrics)


def test_predict_cached_keys(seq_run, capsys):
    capsys.readouterr()
    assert predict.main(["--run", str(seq_run), "--keys", "t000", "t001"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["t000", "t001"]
    assert all(r["label"] in {"cat", "red", "sun"} and 0 < r["score"] <= 1 for r in rows)


def _labels(tmp_path, jsonl, rows):
    return jsonl(tmp_path / "bad.jsonl", rows)


def _seq_rows(n=90):
    return [{"id": f"t{i:03d}", "label": "abc"[i % 3]} for i in range(n)]


BAD_LABELS = [
    ("not-in-cache", lambda: _seq_rows() + [{"id": "nope", "label": "a"}],
     "names 1 keys not in the cache (first: 'nope')"),
    ("missing-keys", lambda: _seq_rows()[:80], "is missing 10 of the cache's keys"),
    ("unseen-label", lambda: [dict(r, split="train") for r in _seq_rows()[:-1]]
     + [{"id": "t089", "label": "zzz", "split": "test"}], "label 'zzz' of key 't089'"),
]


@pytest.mark.parametrize("name,rows,message", BAD_LABELS, ids=[b[0] for b in BAD_LABELS])
def test_bad_labels_exit_2(tiny_task, tmp_path, jsonl, capsys, name, rows, message):
    assert _train(tiny_task, tmp_path / "run", labels=_labels(tmp_path, jsonl, rows())) == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cache_of_another_layer_or_model_exit_2(tiny_task, tmp_path, capsys):
    assert _train(tiny_task, tmp_path / "a", "--layer", "3") == 2
    _one_line_error(capsys, "holds layer 2, not layer 3")
    other = tmp_path / "other-model"
    other.mkdir()
    for name in os.listdir(tiny_task["model"]):
        data = open(os.path.join(tiny_task["model"], name), "rb").read()
        if name.endswith(".safetensors"):
            data = data[:-4] + b"\0\0\0\0"  # other weights: the fingerprint changes
        (other / name).write_bytes(data)
    assert _train(tiny_task, tmp_path / "b", "--model", str(other)) == 2
    _one_line_error(capsys, "weights_sha256 differs")


def test_empty_cache_exit_2(tiny_task, tmp_path, capsys):
    import cache_format

    with cache_format.create(tmp_path / "empty", hidden_size=32, metadata={"layer": 2}):
        pass
    code = train.main(["--cache", str(tmp_path / "empty"), "--labels", tiny_task["seq_labels"],
                       "--task", "seq-cls", "--out", str(tmp_path / "run")])
    assert code == 2
    _one_line_error(capsys, "holds no records")


def test_run_folder_of_another_task_exit_2(tiny_task, seq_run, capsys):
    before = (seq_run / "metrics.json").read_text()
    assert _train(tiny_task, seq_run, labels=tiny_task["tok_labels"], task="token-cls") == 2
    _one_line_error(capsys, "holds a 'seq-cls' run, not 'token-cls'")
    assert predict.main(["--run", str(seq_run), "--task", "token-cls"]) == 2
    _one_line_error(capsys, "holds a 'seq-cls' run, not 'token-cls'")
    assert (seq_run / "metrics.json").read_text() == before  # nothing lost


def test_predict_not_a_run_folder_exit_2(tmp_path, capsys):
    assert predict.main(["--run", str(tmp_path)]) == 2
    _one_line_error(capsys, "is not a finished run folder")


def test_missing_cache_folder_exit_2(tiny_task, tmp_path, capsys):
    code = train.main(["--cache", str(tmp_path / "nope"), "--labels", tiny_task["seq_labels"],
                       "--task", "seq-cls", "--out", str(tmp_path / "r")])
    assert code == 2
    _one_line_error(capsys, "nope")


def test_python_m_entry_point_exit_code_and_help(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    bad = subprocess.run([sys.executable, "-m", "runtime.train", "--cache", str(tmp_path),
                          "--task", "seq-cls"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --cache needs --labels FILE and --task "
                                  "seq-cls|token-cls|qa")
    ok = subprocess.run([sys.executable, "-m", "runtime.predict", "--help"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "--write-back" in ok.stdout


def test_train_cli_defaults_are_train_configs_defaults():
    """Each default is declared once (runtime.options, runtime.loader): what the CLI passes when
    an option is left out is what TrainConfig would use, so a run saved from the CLI and one
    built in Python agree."""
    import dataclasses

    from runtime.config import TrainConfig
    from runtime.datasets import BUILTIN_TASKS
    from runtime.options import BUILTIN_TASK_NAMES

    args = vars(train.parser().parse_args([]))
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.default is not dataclasses.MISSING}  # cache, labels, task, out: required
    shared = sorted(set(args) & set(fields))
    assert len(shared) >= 20  # the comparison below covers the options, not a lucky few
    assert {k: args[k] for k in shared} == {k: fields[k] for k in shared}
    assert tuple(BUILTIN_TASKS) == BUILTIN_TASK_NAMES


def test_predict_scores_the_split_training_held_out_under_its_seed(tiny_task, tmp_path):
    """No split column: the run's seed draws the split, and predict must score that split
    (it once reloaded runs with seed 0, scoring keys seed 1 had trained on)."""
    from runtime.labels import assign_splits
    from runtime.prediction import load_run, split_keys

    out = tmp_path / "seed1"
    assert _train(tiny_task, out, "--seed", "1") == 0
    loaded = load_run(str(out))
    keys = [json.loads(line)["id"] for line in open(tiny_task["seq_labels"], encoding="utf-8")]
    test_of = {s: sorted(k for k, v in assign_splits(keys, seed=s).items() if v == "test")
               for s in (0, 1)}
    assert test_of[0] != test_of[1]  # the two seeds hold out different keys on this data
    assert sorted(split_keys(loaded, "test")) == test_of[1]


def _stderr_of(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_importing_runtime_hides_peft_transformers_warning():
    """peft's import-time FutureWarning names nothing a user of this project can act on (the
    transformers pin is optimum-onnx's), so commands that import peft through runtime must not
    print it; the bare import shows the warning is still there to hide."""
    if PEFT_TRANSFORMERS_WARNING not in _stderr_of("import peft"):
        pytest.skip("this peft/transformers pair does not warn")
    assert PEFT_TRANSFORMERS_WARNING not in _stderr_of("import runtime, peft")
