"""python -m cache_format: info, verify, merge; errors as one line and exit 2."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import cache_format

ROOT = Path(__file__).parents[2]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cache_format", *map(str, args)],
                          capture_output=True, text=True, env=env)


def test_info_and_verify(tmp_path):
    with cache_format.create(tmp_path, hidden_size=16, metadata={"model": "m", "layer": 2}) as w:
        w.add("a", np.arange(4), np.ones((4, 16), np.float32))
    out = _cli("info", tmp_path)
    assert out.returncode == 0 and "num_examples 1" in out.stdout and "layer        2" in out.stdout
    out = _cli("verify", tmp_path)
    assert out.returncode == 0 and "1 records, every checksum and size verified" in out.stdout


def test_damage_is_one_line_and_exit_2(tmp_path):
    with cache_format.create(tmp_path, hidden_size=16) as w:
        w.add("a", np.arange(4), np.ones((4, 16), np.float32))
    shard = next(tmp_path.glob("*.shard"))
    shard.write_bytes(shard.read_bytes()[:-1])
    out = _cli("verify", tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "truncated" in out.stderr and "Traceback" not in out.stderr


def test_help():
    out = _cli("--help")
    assert out.returncode == 0 and "info" in out.stdout and "merge" in out.stdout
