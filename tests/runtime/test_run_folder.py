"""runtime.run_folder: config.json is one typed RunConfig, written flat and read back whole;
checkpoints give each rank its own generator state back."""

import json

import pytest
import torch

from runtime import run_folder
from runtime.config import TrainConfig
from runtime.errors import RuntimeConfigError
from runtime.run_folder import LEGACY_DEFAULTS, RunConfig, load_run_config


def _run_config(tmp_path, **fields):
    train = TrainConfig(cache="c", labels="l.jsonl", task="seq-cls", out=str(tmp_path),
                        seed=3, **fields)
    manifest = {"model": "m", "layer": 2, "weights_sha256": "ab", "unrelated": 1}
    return RunConfig.of_training(train, manifest, ["neg", "pos"], pooling="mean")


def test_round_trip_keeps_every_field_and_resolves_pooling(tmp_path):
    saved = _run_config(tmp_path, pooling="auto")
    saved.save()
    (tmp_path / "weights.pt").write_bytes(b"")
    loaded = load_run_config(str(tmp_path))
    assert loaded == saved
    assert loaded.train.pooling == "mean"  # what the head was, never "auto"
    assert loaded.train.seed == 3  # the seed that drew the split predict must score
    assert loaded.cache_fingerprint["layer"] == 2 and "unrelated" not in loaded.cache_fingerprint


def test_the_file_stays_flat_for_older_readers(tmp_path):
    _run_config(tmp_path).save()
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["task"] == "seq-cls" and on_disk["label_names"] == ["neg", "pos"]
    assert on_disk["cache_fingerprint"]["model"] == "m"


def test_fields_an_old_run_lacks_mean_what_they_meant_then(tmp_path):
    saved = _run_config(tmp_path).to_json()
    for key in LEGACY_DEFAULTS:
        saved.pop(key)
    loaded = RunConfig.from_json(saved, "config.json")
    assert loaded.train.pooling == "pooler" and loaded.train.lora_targets == "attention"


@pytest.mark.parametrize("content, message", [
    ("{not json", "is damaged"),
    ('{"task": "seq-cls"}', "is not a run config"),
    ('{"label_names": [], "task": "seq-cls", "bogus_only": 1}', "does not describe a run"),
])
def test_a_damaged_config_is_refused_in_one_line(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(RuntimeConfigError, match=message):
        load_run_config(str(tmp_path))


def _checkpointed(tmp_path, rng):
    """A checkpoint of a one-layer model at epoch 1 holding `rng`; what resuming it needs."""
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.save({"weights": {}, "optimizer": optimizer.state_dict(), "schedule":
                schedule.state_dict(), "state": {"epoch": 1}, "rng": rng},
               tmp_path / "checkpoint.pt")
    config = TrainConfig(cache="c", labels="l", task="seq-cls", out=str(tmp_path))
    return config, model, optimizer, schedule


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_resumes_from_its_own_generator_state(tmp_path, rank):
    torch.manual_seed(0)
    state_0 = run_folder._rng_states("cpu")
    torch.manual_seed(1)
    state_1 = run_folder._rng_states("cpu")
    config, model, optimizer, schedule = _checkpointed(tmp_path, [state_0, state_1])
    torch.manual_seed(99)
    run_folder.load_checkpoint(config, model, optimizer, schedule, rank)
    assert torch.equal(torch.get_rng_state(), [state_0, state_1][rank]["torch"])


def test_a_checkpoint_with_one_generator_state_still_resumes_every_rank(tmp_path):
    # written before every rank's state was kept: rank 0's alone, as a dict
    torch.manual_seed(0)
    saved = run_folder._rng_states("cpu")
    config, model, optimizer, schedule = _checkpointed(tmp_path, saved)
    torch.manual_seed(99)
    state = run_folder.load_checkpoint(config, model, optimizer, schedule, rank=1)
    assert state.epoch == 1
    assert torch.equal(torch.get_rng_state(), saved["torch"])
