"""Two-process DDP on CPU (gloo) under torchrun: each rank trains on its own half of the batches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from runtime.loader import BatchPlan, plan_batches


_REPO = str(Path(__file__).resolve().parents[2])


def _torchrun(tiny_task, entry: list, out, *extra) -> subprocess.CompletedProcess:
    """Two gloo ranks of `entry` (`-m runtime.train` or a script) on the tiny seq-cls task."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *entry, "--cache", tiny_task["cache"], "--labels", tiny_task["seq_labels"], "--task",
           "seq-cls", "--out", str(out), "--lr", "1e-2", "--token-budget", "256",
           "--max-batch-size", "8", *extra]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PYTHONPATH=_REPO)  # a script's own folder is not the repository
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_two_process_gloo_ddp(tiny_task, tmp_path):
    out = tmp_path / "ddp"
    done = _torchrun(tiny_task, ["-m", "runtime.train"], out, "--epochs", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "accuracy" in metrics
    # rank 0 logs its steps: half of the epoch's batches (the tail is dropped so ranks agree)
    import cache_format
    from runtime.labels import LabelsConfig, load_labelled

    reader = cache_format.open(tiny_task["cache"])
    train = load_labelled(LabelsConfig(tiny_task["seq_labels"], "seq-cls"), reader).split("train")
    keys = [e.key for e in train]
    batches = plan_batches(keys, [reader.num_tokens(k) for k in keys],
                           BatchPlan(256, 8), shuffle=True, seed=0, epoch=0)
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == len(batches) // 2
    assert [s["keys"] for s in steps] == batches[0::2][:len(steps)]  # rank 0's share only
    assert torch.load(out / "weights.pt", weights_only=True)  # rank 0 saved the weights


def test_each_rank_on_gpus_takes_its_own_device(monkeypatch):
    from runtime import distributed
    from runtime.trainer import TrainConfig

    picked = []
    monkeypatch.setattr(torch.cuda, "set_device", picked.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # two GPUs, as far as the
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)     # device check can tell
    config = TrainConfig(cache="c", labels="l", task="seq-cls", out="o", device="cuda")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.on_rank_device(config).device == "cuda"  # one process: as given
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.on_rank_device(config).device == "cuda:1"
    assert picked == ["cuda:1"]
    cpu = TrainConfig(cache="c", labels="l", task="seq-cls", out="o", device="cpu")
    assert distributed.on_rank_device(cpu).device == "cpu"  # gloo ranks share the CPU


_DIE_AFTER_FIRST_CHECKPOINT = """
import sys
from runtime import run_folder, train

original = run_folder.save_checkpoint


def save_then_die(*args):
    original(*args)
    raise SystemExit(3)  # every rank dies right after the first epoch's checkpoint


run_folder.save_checkpoint = save_then_die
sys.exit(train.main(sys.argv[1:]))
"""


def test_two_process_resume_continues_each_rank_as_if_never_stopped(tiny_task, tmp_path):
    # Dropout draws from each rank's own generator, and the ranks' batches differ in shape, so
    # their generators part ways: a checkpoint must carry every rank's state, not rank 0's.
    script = tmp_path / "die_after_first_checkpoint.py"
    script.write_text(_DIE_AFTER_FIRST_CHECKPOINT)

    two_epochs = ("--epochs", "2", "--patience", "5")
    straight = _torchrun(tiny_task, ["-m", "runtime.train"], tmp_path / "straight", *two_epochs)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _torchrun(tiny_task, [str(script)], tmp_path / "run", *two_epochs)
    assert killed.returncode != 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    resumed = _torchrun(tiny_task, ["-m", "runtime.train"], tmp_path / "run", *two_epochs,
                        "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert a["state"]["epoch"] == b["state"]["epoch"] == 2
    assert all(torch.allclose(a["weights"][k], b["weights"][k], atol=1e-6) for k in a["weights"])
