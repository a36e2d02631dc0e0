"""runtime.run_folder: config.json is one typed RunConfig, written flat and read back whole."""

import json

import pytest

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
