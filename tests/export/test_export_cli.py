"""python -m export.lower: one line on stderr and exit 2 for user mistakes; sharded builds in
two processes merge into one cache; torchrun's variables pick the shard."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cache_format
from cache_format.cli_errors import EXIT_INTERRUPTED
from export_testkit import TEXTS, write_jsonl
from export import lower
from export.session import available_cores

REPO = Path(__file__).resolve().parents[2]


def _run(*args, timeout=240) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return subprocess.run([sys.executable, "-m", "export.lower", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_subprocess_layer_out_of_range_is_one_line_exit_2(tiny_bert, small_corpus, tmp_path):
    done = _run("--layer", "9", "--model", str(tiny_bert), "--corpus", str(small_corpus),
                "--out", str(tmp_path / "cache"))
    assert done.returncode == 2
    assert done.stderr == ("error: layer K=9 is out of range for this 4-layer bert model; "
                           "pick an integer 1 <= K <= 3 (at least one layer must stay above "
                           "the cache)\n")
    assert not (tmp_path / "cache").exists()


def test_subprocess_missing_corpus_is_one_line_exit_2(tiny_bert, tmp_path):
    missing = tmp_path / "missing.jsonl"
    done = _run("--layer", "1", "--model", str(tiny_bert), "--corpus", str(missing))
    assert done.returncode == 2
    assert done.stderr == f"error: corpus file {missing} does not exist; check --corpus\n"


def _main(capsys, *argv) -> tuple[int, list[str]]:
    """Exit code and stderr lines of lower.main, whether it returns or argparse exits."""
    try:
        code = lower.main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err.splitlines()


_BASE = ["--layer", "1", "--model", "{model}", "--quiet"]
MISTAKES = [  # (id, argv, a fragment of the one line)
    ("bad-extension", _BASE + ["--corpus", "{tmp}/c.xml"], "unknown corpus extension '.xml'"),
    ("missing-field", _BASE + ["--corpus", "{tmp}/nofield.jsonl"],
     "line 1: no field 'text' (fields: id, body)"),
    ("model-without-config", ["--layer", "1", "--model", "{tmp}"], "has no config.json"),
    ("no-layer", ["--model", "{model}"], "--layer K is required"),
    ("merge-without-out", ["--merge"], "--merge needs --out DIR"),
    ("layer-not-int", ["--layer", "two"], "argument --layer: invalid int value: 'two'"),
    ("unknown-dtype", _BASE + ["--dtype", "int4"], "argument --dtype: invalid choice: 'int4'"),
    ("unknown-flag", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ("max-length-1", _BASE + ["--max-length", "1"], "--max-length must be an integer >= 2"),
    ("stride-negative", _BASE + ["--stride", "-1"], "--stride must be an integer >= 0"),
    ("batch-tokens-0", _BASE + ["--batch-tokens", "0"], "--batch-tokens must be an integer >= 1"),
    ("threads-0", _BASE + ["--threads", "0"], "--threads must be at least 1"),
    ("shard-index-out-of-range", _BASE + ["--num-shards", "2", "--shard-index", "5"],
     "--shard-index 5 / --num-shards 2 are out of range"),
    ("num-shards-0", _BASE + ["--num-shards", "0"], "are out of range"),
    ("layer-0", _BASE + ["--layer", "0", "--corpus", "{tmp}/ok.jsonl"], "layer K=0 is out of range"),
    ("unknown-codec", _BASE + ["--codec", "gzip"], "argument --codec: invalid choice: 'gzip'"),
    ("unknown-device", _BASE + ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("out-is-a-file", _BASE + ["--corpus", "{tmp}/ok.jsonl", "--out", "{tmp}/c.xml",
                      "--max-length", "32"],
     "is a file; pass a folder"),
    ("out-under-a-file", _BASE + ["--corpus", "{tmp}/ok.jsonl", "--out", "{tmp}/c.xml/sub",
                          "--max-length", "32"],
     "a part of the path is a file, not a folder"),
    ("corpus-not-utf8", _BASE + ["--corpus", "{tmp}/latin1.jsonl"], "is not UTF-8"),
    ("corpus-is-a-folder", _BASE + ["--corpus", "{tmp}"], "unknown corpus extension"),
    ("merge-missing-out", ["--merge", "--out", "{tmp}/none"], "does not exist; nothing to merge"),
    ("merge-nothing", ["--merge", "--out", "{tmp}"], "no part manifests"),
    ("merge-with-build-option", ["--merge", "--out", "{tmp}", "--dtype", "fp16"],
     "--dtype shapes a build; --merge only merges the parts already in"),
    ("merge-with-default-dtype", ["--merge", "--out", "{tmp}", "--dtype", "int8"],
     "--dtype shapes a build; --merge only merges the parts already in"),
    ("merge-with-layer", ["--layer", "2", "--merge", "--out", "{tmp}"],
     "--layer shapes a build; --merge only merges the parts already in"),
]


@pytest.mark.parametrize("argv, fragment", [m[1:] for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])
def test_user_mistakes_are_one_line_exit_2(tiny_bert, tmp_path, capsys, argv, fragment):
    (tmp_path / "c.xml").write_text("<a/>")
    write_jsonl(tmp_path / "nofield.jsonl", [{"id": 1, "body": "x"}])
    write_jsonl(tmp_path / "ok.jsonl", [{"id": 1, "text": "a b c"}])
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": 1, "text": "caf\xe9"}\n')
    code, err = _main(capsys, *(a.format(model=tiny_bert, tmp=tmp_path) for a in argv))
    assert code == 2
    assert len(err) == 1 and fragment in err[0], err
    assert "Traceback" not in err[0]


@pytest.mark.skipif(__import__("export.session", fromlist=["x"]).cuda_available(),
                    reason="a GPU is visible")
def test_device_cuda_without_gpu_writes_nothing(tiny_bert, small_corpus, tmp_path, capsys):
    out = tmp_path / "cache"
    code, err = _main(capsys, *_BASE[:2], "--model", str(tiny_bert), "--corpus",
                      str(small_corpus), "--out", str(out), "--device", "cuda", "--quiet")
    assert code == 2 and len(err) == 1 and "--device cuda needs onnxruntime-gpu" in err[0]
    assert not out.exists()  # refused before the ONNX export wrote out/onnx


def test_second_build_on_a_locked_out_is_one_line(tiny_bert, small_corpus, tmp_path, capsys):
    """Two builds on one --out: the second gets one line, the first's files are untouched."""
    from cache_format.locking import WriterLock

    out = tmp_path / "cache"
    out.mkdir()
    lock = WriterLock(out, out / "manifest.json")  # as a build in another process would
    try:
        code, err = _main(capsys, *_BASE[:2], "--model", str(tiny_bert), "--corpus",
                          str(small_corpus), "--out", str(out), "--dtype", "fp16", "--quiet",
                          "--max-length", "32")
    finally:
        lock.release()
    assert code == 2 and len(err) == 1, err
    assert "another writer (pid" in err[0] and "is writing manifest.json there" in err[0]
    assert not list(out.glob("shard-*")) and not (out / "manifest.json").exists()


def test_ctrl_c_says_how_to_resume(monkeypatch, capsys):
    def interrupted(config, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(lower, "build_cache", interrupted)
    code, err = _main(capsys, "--layer", "1", "--quiet")
    assert code == EXIT_INTERRUPTED
    assert err == ["interrupted: records committed so far are kept; rerun the same command "
                   "to resume"]


def test_torchrun_variables_choose_the_shard():
    args = lower.make_parser().parse_args(["--layer", "2"])
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    config = lower.config_from_args(args, env)
    assert (config.num_shards, config.shard_index) == (2, 1)
    assert config.threads == max(1, available_cores() // 2)
    explicit = lower.make_parser().parse_args(["--layer", "2", "--num-shards", "3",
                                               "--shard-index", "0"])
    assert lower.config_from_args(explicit, env).num_shards == 3


def test_two_process_sharded_build_then_merge(tiny_bert, small_corpus, tmp_path, capsys):
    out = tmp_path / "cache"
    common = ["--layer", "2", "--model", str(tiny_bert), "--corpus", str(small_corpus),
              "--out", str(out), "--dtype", "fp32", "--max-length", "32", "--batch-tokens",
              "96", "--threads", "1", "--num-shards", "2"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    procs = [subprocess.Popen([sys.executable, "-m", "export.lower", *common, "--shard-index",
                               str(i)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert any("merged into" in err for _, err in results)
    assert (out / "manifest.rank0.json").exists() and (out / "manifest.rank1.json").exists()
    r = cache_format.open(out)
    assert sorted(r.keys()) == [f"doc-{i:02d}" for i in range(len(TEXTS))]
    # The same records as a one-process build (batches differ, so allow float noise).
    single = tmp_path / "single"
    assert lower.main(common[:-2] + ["--out", str(single), "--quiet"]) == 0
    one = cache_format.open(single)
    for key in one.keys():
        assert np.allclose(one.get(key), r.get(key), atol=1e-5), key
    # A lost merge is redone by hand.
    (out / "manifest.json").unlink()
    assert lower.main(["--merge", "--out", str(out)]) == 0
    assert len(cache_format.open(out)) == len(TEXTS)


def test_two_concurrent_builds_on_one_out_never_leave_an_unreadable_cache(
        tiny_bert, small_corpus, tmp_path):
    """Issue 9: two builds at once on one --out. Each ends in exit 0 or one line with exit 2,
    and the cache they leave opens and verifies, holding a dtype some exit-0 build asked for.
    (int8 and fp16 at once: before the writer lock, fp16 exited 0 over an unopenable cache.)"""
    dtypes = ("int8", "fp16")
    out = tmp_path / "cache"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    for name in ("WORLD_SIZE", "RANK"):
        env.pop(name, None)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "export.lower", "--layer", "2", "--model", str(tiny_bert),
         "--corpus", str(small_corpus), "--out", str(out), "--dtype", dtype, "--max-length",
         "32", "--batch-tokens", "96", "--threads", "1", "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for dtype in dtypes]
    results = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert set(codes) <= {0, 2} and 0 in codes, results
    for code, (_, err) in zip(codes, results):
        if code == 2:
            assert err.count("\n") == 1 and "Traceback" not in err, err
    reader = cache_format.open(out)
    assert reader.verify() == len(reader) > 0
    assert reader.manifest["dtype"] in {d for d, c in zip(dtypes, codes) if c == 0}


def test_cli_defaults_are_build_configs_defaults():
    """Each build default is declared once, in BuildConfig: `--layer 3` alone must configure
    exactly the build that `BuildConfig(layer=3)` does (a drifted CLI default would differ here)."""
    from export.build import BuildConfig
    from export.lower import config_from_args, make_parser

    args = make_parser().parse_args(["--layer", "3"])
    assert config_from_args(args, environ={}) == BuildConfig(layer=3)
