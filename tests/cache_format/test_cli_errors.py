"""The shared CLI error path (cache_format.cli_errors) and python -m cache_format's bad inputs:
exit 2, exactly one line on stderr, no traceback."""
import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cache_format
from cache_format.__main__ import main
from cache_format.cli_errors import (DefaultsHelpFormatter, OneLineParser, os_error_message,
                                     run_cli)
from cache_format.locking import WriterLock
from cache_format.manifest import read_manifest, write_manifest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "cache"
    with cache_format.create(path, hidden_size=8, dtype="fp16", metadata={"layer": 1}) as w:
        for i in range(4):
            w.add(f"k{i}", np.arange(3), np.full((3, 8), i, np.float32))
    return path


def _copy(cache, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(cache, work)
    return work


def _flip_record(path):
    shard = next(path.glob("*.shard"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))


def _restamp(path, edit):
    m = read_manifest(path / "manifest.json")
    edit(m)
    write_manifest(path / "manifest.json", m)


def _v1(path):
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(m))


def _sibling_shard(path):
    other = path.parent / "other"
    with cache_format.create(other, hidden_size=8, dtype="fp16", metadata={"layer": 2}) as w:
        for i in range(4):
            w.add(f"k{i}", np.arange(3), np.full((3, 8), -i, np.float32))
    for p in other.glob("shard-*"):
        shutil.copy(p, path / p.name)


def _part_only(path):
    os.rename(path / "manifest.json", path / "manifest.rank0.json")


BAD = [  # (id, argv with {dir} = a damaged copy of the cache, damage, fragment)
    ("no-command", [], None, "the following arguments are required: command"),
    ("unknown-command", ["frobnicate", "{dir}"], None, "invalid choice: 'frobnicate'"),
    ("no-dir", ["info"], None, "the following arguments are required: dir"),
    ("extra-arg", ["info", "{dir}", "more"], None, "unrecognized arguments: more"),
    ("unknown-flag", ["verify", "--fast", "{dir}"], None, "unrecognized arguments: --fast"),
    ("missing-folder", ["info", "{dir}/nope"], None, "no such cache folder"),
    ("a-file", ["verify", "{dir}/manifest.json"], None, "no such cache folder"),
    ("no-manifest", ["info", "{dir}"], lambda p: (p / "manifest.json").unlink(),
     "no manifest.json: not a cache"),
    ("non-utf8-manifest", ["info", "{dir}"],
     lambda p: (p / "manifest.json").write_bytes(b'{"a": "\xc3"}'), "manifest is not UTF-8"),
    ("manifest-list", ["info", "{dir}"], lambda p: (p / "manifest.json").write_text("[]"),
     "manifest is a JSON list, not an object"),
    ("manifest-bit-flip", ["verify", "{dir}"],
     lambda p: (p / "manifest.json").write_text(
         (p / "manifest.json").read_text().replace('"layer": 1', '"layer": 3')),
     "fails its manifest_sha256 check"),
    ("manifest-missing-key", ["info", "{dir}"], lambda p: _restamp(p, lambda m: m.pop("codec")),
     "manifest lacks ['codec']"),
    ("manifest-wrong-type", ["info", "{dir}"],
     lambda p: _restamp(p, lambda m: m.update(hidden_size="8")),
     "manifest hidden_size is a str, expected int"),
    ("shard-entry-no-name", ["info", "{dir}"],
     lambda p: _restamp(p, lambda m: m["shards"][0].pop("name")), "shards[0] lacks ['name']"),
    ("version-1", ["info", "{dir}"], _v1, "and build it again with this release"),
    ("truncated-shard", ["verify", "{dir}"],
     lambda p: [s.write_bytes(s.read_bytes()[:-1]) for s in p.glob("*.shard")], "truncated"),
    ("flipped-record", ["verify", "{dir}"], _flip_record, "fails its crc32 check"),
    ("missing-index", ["verify", "{dir}"], lambda p: [s.unlink() for s in p.glob("*.index")],
     "index file missing"),
    ("sibling-shard", ["verify", "{dir}"], _sibling_shard, "belongs to another cache or part"),
    ("part-only", ["info", "{dir}"], _part_only, "merge them first"),
    ("merge-nothing", ["merge", "{dir}/empty"], lambda p: (p / "empty").mkdir(),
     "no part manifests"),
    ("merge-missing", ["merge", "{dir}/nope"], None, "no such cache folder"),
]


@pytest.mark.parametrize("name,argv,damage,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_exit_2(cache, tmp_path, capsys, name, argv, damage, fragment):
    work = _copy(cache, tmp_path)
    if damage:
        damage(work)
    try:
        code = main([a.format(dir=work) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert "Traceback" not in err


def test_merge_while_a_writer_holds_the_lock(cache, tmp_path, capsys):
    work = _copy(cache, tmp_path)
    lock = WriterLock(work, work / "manifest.json")
    try:
        assert main(["merge", str(work)]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another writer (pid {os.getpid()})" in err


def test_usage_error_format_through_python_m():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "cache_format", "info"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2
    assert done.stderr == ("python -m cache_format info: error: the following arguments are "
                           "required: dir (see --help)\n")


@pytest.mark.parametrize("code,fragment", [
    (errno.ENOSPC, "/x/f: the disk is full: free space or write somewhere else"),
    (errno.EFBIG, "/x/f: the file is larger than this file system or ulimit -f allows"),
    (errno.EACCES, "/x/f: permission denied"),
    (errno.EROFS, "/x/f: the file system is read-only"),
    (errno.ENOTDIR, "/x/f: a part of the path is a file, not a folder"),
], ids=["ENOSPC", "EFBIG", "EACCES", "EROFS", "ENOTDIR"])
def test_os_errors_become_one_line(capsys, code, fragment):
    def body():
        raise OSError(code, os.strerror(code), "/x/f")

    assert run_cli(body) == 2
    err = capsys.readouterr().err
    assert err == f"error: {os_error_message(OSError(code, os.strerror(code), '/x/f'))}\n"
    assert fragment in err


def test_run_cli_folds_lines_and_keeps_bugs(capsys):
    def user():
        raise cache_format.CacheFormatError("two\nlines")

    assert run_cli(user) == 2 and capsys.readouterr().err == "error: two lines\n"

    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        run_cli(bug)


def test_one_line_parser_subcommands_share_the_format(capsys):
    parser = OneLineParser(prog="tool")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("go").add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["go", "--n", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("tool go: error: argument --n: invalid int value: 'x' "
                                       "(see --help)\n")


def test_disk_full_while_committing_leaves_no_temporary_files(tmp_path, monkeypatch):
    """ENOSPC at the commit: the error comes out, nothing half-written stays, and the lock is
    released (a retry can run at once)."""
    from cache_format import shard

    w = cache_format.create(tmp_path, hidden_size=8, dtype="fp32", codec="none")
    w.add("a", [1], np.ones((1, 8), np.float32))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shard.os, "fsync", full)
    with pytest.raises(OSError):
        w.close()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json.lock"]
    with cache_format.create(tmp_path, hidden_size=8, dtype="fp32", codec="none") as again:
        again.add("a", [1], np.ones((1, 8), np.float32))
    assert cache_format.open(tmp_path).keys() == ["a"]


def test_disk_full_while_writing_the_index_leaves_no_temporary_files(tmp_path, monkeypatch):
    from cache_format import shard

    w = cache_format.create(tmp_path, hidden_size=8, dtype="fp32", codec="none")
    w.add("a", [1], np.ones((1, 8), np.float32))
    calls = []
    real = shard.os.fsync

    def full_on_second(fd):
        calls.append(fd)
        if len(calls) == 2:  # the data file fsync passes, the index's fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(shard.os, "fsync", full_on_second)
    with pytest.raises(OSError):
        w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json.lock"]


def test_help_shows_a_default_only_where_it_tells_something():
    parser = OneLineParser(prog="p", formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="the seed")
    parser.add_argument("--rate", type=float, default=1e-3, help="the rate")
    parser.add_argument("--layer", type=int, help="K (default N // 2)")
    parser.add_argument("--out", help="a file")
    parser.add_argument("--text", action="append", default=[], help="a text")
    parser.add_argument("--flag", action="store_true", help="a switch")
    lines = " ".join(parser.format_help().split())
    assert "the seed (default: 0)" in lines  # a falsy default is still a default
    assert "the rate (default: 0.001)" in lines
    assert "K (default N // 2) " in lines and "N // 2) (default" not in lines
    assert "(default: None)" not in lines and "(default: [])" not in lines
    assert "(default: False)" not in lines


def test_given_names_the_options_typed_even_at_their_defaults():
    parser = OneLineParser(prog="p")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--dtype", default="int8", choices=["int8", "fp16"])
    args = parser.parse_args(["--set", "lr=1", "--lora-r", "8"])  # 8 is the default: typed
    assert parser.given(args, ["lora_r", "overrides", "quiet", "dtype"]) == ["--lora-r", "--set"]
    # the values themselves are argparse's, defaults included
    assert (args.lora_r, args.overrides, args.quiet, args.dtype) == (8, ["lr=1"], False, "int8")
    assert parser.given(parser.parse_args(["--lora=16"]), ["lora_r"]) == ["--lora-r"]  # abbrev
    assert parser.given(parser.parse_args([]), ["lora_r", "overrides", "quiet", "dtype"]) == []


def test_given_reads_sub_parsers_and_namespaces_it_did_not_parse():
    parser = OneLineParser(prog="p")
    parser.add_argument("--seed", type=int, default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build")
    build.add_argument("--layer", type=int, default=3)
    build.set_defaults(func="build")
    args = parser.parse_args(["build", "--layer", "3"])
    assert (args.command, args.layer, args.func, args.seed) == ("build", 3, "build", 0)
    assert parser.given(args, ["seed", "layer", "func"]) == ["layer"]  # no flag of the top's
    assert build.given(args, ["layer"]) == ["--layer"]
    # built by hand, not parsed: only values away from the defaults count
    hand = argparse.Namespace(seed=0, command="build")
    assert parser.given(hand, ["seed"]) == []
    hand.seed = 4
    assert parser.given(hand, ["seed"]) == ["--seed"]
