"""bench.fidelity --work / --resume: a killed comparison goes on where it stopped, and a kept
run is never trained over. The trainer is replaced by a fake that records its calls (the
trainer's own resume is tested in tests/runtime/test_trainer.py); the model is the real
default (its name and depth), no cache is built."""

import dataclasses
import json
import os

import pytest

from bench import fidelity
from runtime.errors import RuntimeConfigError


class _Killed(Exception):
    pass


class _FakeTrainer:
    """Records (config, seed, resume) per call; dies after writing a checkpoint for `die`."""

    def __init__(self, die=()):
        self.calls, self.die = [], set(die)

    def __call__(self, config):
        name = f"{config.mode}-{config.adapter}"
        self.calls.append((name, config.seed, config.resume))
        os.makedirs(config.out, exist_ok=True)
        if (name, config.seed) in self.die:  # as the trainer leaves it: settings, checkpoint
            with open(os.path.join(config.out, "config.json"), "w", encoding="utf-8") as f:
                json.dump({**dataclasses.asdict(config), "label_names": ["O"],
                           "cache_fingerprint": {}}, f)
            open(os.path.join(config.out, "checkpoint.pt"), "wb").close()
            raise _Killed
        return {"f1": 0.5 + config.seed / 100, "train_seconds": 1.0, "epochs_run": 1}


@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    import runtime.datasets

    monkeypatch.setattr(runtime.datasets, "prepare_builtin", lambda *a, **k: (
        runtime.datasets.PreparedTask(str(tmp_path / "cache"), str(tmp_path / "labels.jsonl"),
                                      "token-cls")))


def _trainer(monkeypatch, **kw) -> _FakeTrainer:
    import runtime.trainer

    fake = _FakeTrainer(**kw)
    monkeypatch.setattr(runtime.trainer, "train", fake)
    return fake


def _config(tmp_path, **kw) -> fidelity.FidelityConfig:
    base = dict(task="wnut16", layer=3, configs=("recycled-lora", "full-lora"), seeds=(0, 1),
                out=str(tmp_path / "runs.jsonl"), work=str(tmp_path / "work"))
    return fidelity.FidelityConfig(**{**base, **kw})


def _lines(path) -> list:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_resume_skips_recorded_runs_continues_the_checkpointed_one_and_starts_the_rest(
        tmp_path, monkeypatch, no_cache):
    config = _config(tmp_path)
    _trainer(monkeypatch, die=[("full-lora", 0)])
    with pytest.raises(_Killed):
        fidelity.compare(config, log=lambda *a: None)
    assert [(r["config"], r["seed"]) for r in _lines(config.out)] == [
        ("recycled-lora", 0), ("recycled-lora", 1)]
    assert os.path.isfile(tmp_path / "work" / "wnut16-K3" / "full-lora-s0" / "checkpoint.pt")

    again = _trainer(monkeypatch)
    records = fidelity.compare(dataclasses.replace(config, resume=True), log=lambda *a: None)
    assert again.calls == [("full-lora", 0, True), ("full-lora", 1, False)]
    assert [(r["config"], r["seed"]) for r in records] == [
        ("recycled-lora", 0), ("recycled-lora", 1), ("full-lora", 0), ("full-lora", 1)]
    assert len(_lines(config.out)) == 4  # each run once
    assert _lines(config.out)[2]["train_config"]["resume"] is True

    idle = _trainer(monkeypatch)
    fidelity.compare(dataclasses.replace(config, resume=True), log=lambda *a: None)
    assert idle.calls == [] and len(_lines(config.out)) == 4


def test_a_recorded_run_of_another_recipe_is_not_skipped(tmp_path, monkeypatch, no_cache):
    config = _config(tmp_path, configs=("recycled-lora",), seeds=(0,))
    _trainer(monkeypatch)
    fidelity.compare(config, log=lambda *a: None)
    other = _trainer(monkeypatch)
    fidelity.compare(dataclasses.replace(config, resume=True, overrides=("lr=3e-3",),
                                         work=str(tmp_path / "work-3e-3")), log=lambda *a: None)
    assert other.calls == [("recycled-lora", 0, False)]
    assert [r["learning_rate"] for r in _lines(config.out)] == [1e-3, 3e-3]


def test_a_kept_run_is_refused_without_resume_before_any_training(tmp_path, monkeypatch,
                                                                  no_cache, capsys):
    first = _trainer(monkeypatch)
    fidelity.compare(_config(tmp_path), log=lambda *a: None)
    assert len(first.calls) == 4
    before = open(tmp_path / "runs.jsonl", encoding="utf-8").read()
    second = _trainer(monkeypatch)
    argv = ["--task", "wnut16", "--layer", "3", "--configs", "recycled-lora,full-lora",
            "--seeds", "0", "1", "--out", str(tmp_path / "runs.jsonl"), "--work",
            str(tmp_path / "work")]
    assert fidelity.main(argv) == 2
    folder = tmp_path / "work" / "wnut16-K3" / "recycled-lora-s0"
    assert capsys.readouterr().err == (f"error: --work: {folder} holds an earlier run; pass "
                                       "--resume to go on from it (runs in --out are skipped), "
                                       "or pick another --work\n")
    assert second.calls == []
    assert open(tmp_path / "runs.jsonl", encoding="utf-8").read() == before


def test_a_sweep_refuses_a_kept_run_at_any_k_before_k1_trains(tmp_path, monkeypatch, no_cache):
    os.makedirs(tmp_path / "work" / "wnut16-K4" / "recycled-lora-s0")
    fake = _trainer(monkeypatch)
    with pytest.raises(RuntimeConfigError, match="wnut16-K4/recycled-lora-s0 holds an earlier"):
        fidelity.sweep(_config(tmp_path, configs=("recycled-lora",), seeds=(0,)))
    assert fake.calls == []


def test_resume_refuses_a_checkpointed_run_of_other_settings_before_any_training(
        tmp_path, monkeypatch, no_cache, capsys):
    config = _config(tmp_path, configs=("recycled-lora", "full-lora"), seeds=(0,))
    _trainer(monkeypatch, die=[("full-lora", 0)])
    with pytest.raises(_Killed):
        fidelity.compare(config, log=lambda *a: None)
    before = open(config.out, encoding="utf-8").read()
    again = _trainer(monkeypatch)
    argv = ["--task", "wnut16", "--layer", "3", "--configs", "recycled-lora,full-lora",
            "--seeds", "0", "--out", config.out, "--work", config.work, "--resume",
            "--set", "lr=3e-3"]
    assert fidelity.main(argv) == 2
    folder = tmp_path / "work" / "wnut16-K3" / "full-lora-s0"
    assert capsys.readouterr().err == (
        f"error: --work: {folder} was trained with lr=default (now 0.003); --resume goes on "
        "only with the settings it started with: drop the changed option, or pick another "
        "--work\n")
    assert again.calls == []  # not even recycled-lora, which the new rate would train anew
    assert open(config.out, encoding="utf-8").read() == before


@pytest.mark.parametrize("damage, message", [
    ("remove", "has a checkpoint but no config.json; delete that run folder, or pick another "
               "--work"),
    ("truncate", "config.json is damaged"),
])
def test_resume_refuses_a_kept_checkpoint_without_its_settings(damage, message, tmp_path,
                                                               monkeypatch, no_cache):
    config = _config(tmp_path, configs=("recycled-lora",), seeds=(0,))
    _trainer(monkeypatch, die=[("recycled-lora", 0)])
    with pytest.raises(_Killed):
        fidelity.compare(config, log=lambda *a: None)
    saved = tmp_path / "work" / "wnut16-K3" / "recycled-lora-s0" / "config.json"
    if damage == "remove":
        saved.unlink()
    else:
        saved.write_text(saved.read_text()[:20])
    again = _trainer(monkeypatch)
    with pytest.raises(RuntimeConfigError, match=message):
        fidelity.compare(dataclasses.replace(config, resume=True), log=lambda *a: None)
    assert again.calls == []


def test_resume_does_not_check_a_kept_folder_whose_run_is_recorded(tmp_path, monkeypatch,
                                                                  no_cache):
    config = _config(tmp_path, configs=("recycled-lora",), seeds=(0,))
    _trainer(monkeypatch, die=[("recycled-lora", 0)])
    with pytest.raises(_Killed):
        fidelity.compare(config, log=lambda *a: None)  # kept: a checkpoint at the default rate
    faster = dataclasses.replace(config, overrides=("lr=3e-3",))
    _trainer(monkeypatch)
    fidelity.compare(dataclasses.replace(faster, work=str(tmp_path / "elsewhere")),
                     log=lambda *a: None)
    idle = _trainer(monkeypatch)
    records = fidelity.compare(dataclasses.replace(faster, resume=True), log=lambda *a: None)
    assert idle.calls == [] and [r["learning_rate"] for r in records] == [3e-3]


def test_resume_skips_probe_seeds_already_recorded_without_building_the_cache(
        tmp_path, monkeypatch):
    import runtime.datasets

    monkeypatch.setattr(runtime.datasets, "prepare_builtin",
                        lambda *a, **k: pytest.fail("the probe's cache was built"))
    config = _config(tmp_path, seeds=(0, 1), resume=True)
    kept = [{**fidelity._probe_identity(config, seed, 3), "metrics": {"f1": 0.3}}
            for seed in (0, 1)]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept),
                                         encoding="utf-8")
    assert fidelity.linear_probe(config, log=lambda *a: None) == kept
    assert len(_lines(config.out)) == 2


def test_the_probe_reads_the_precision_asked_and_an_old_record_counts_as_int8(tmp_path,
                                                                             monkeypatch):
    import runtime.datasets

    class _Built(Exception):
        pass

    def prepare(*a, **k):
        raise _Built(k["dtype"])

    monkeypatch.setattr(runtime.datasets, "prepare_builtin", prepare)
    config = _config(tmp_path, seeds=(0,), resume=True)
    old = {k: v for k, v in fidelity._probe_identity(config, 0, 3).items() if k != "cache_dtype"}
    (tmp_path / "runs.jsonl").write_text(json.dumps({**old, "metrics": {"f1": 0.3}}) + "\n",
                                         encoding="utf-8")
    assert fidelity.linear_probe(config, log=lambda *a: None)[0]["metrics"] == {"f1": 0.3}
    with pytest.raises(_Built, match="fp16"):  # not the int8 record: its own run, on fp16
        fidelity.linear_probe(dataclasses.replace(config, cache_dtype="fp16"),
                              log=lambda *a: None)


@pytest.mark.parametrize("argv, message", [
    (["--resume"], "error: --resume needs --work DIR, the folder that kept the runs to go on "
                   "from"),
    (["--work", "{tmp}/runs.jsonl"], "error: --work {tmp}/runs.jsonl: is a file; pass a folder"),
    (["--work", "{tmp}/no/work"], "error: --work {tmp}/no/work: {tmp}/no is not a folder this "
                                  "user can write to"),
    (["--set", "resume=true"], "error: --set 'resume=true': bench.fidelity sets resume for "
                               "each run; pass --work DIR --resume"),
])
def test_bad_work_or_resume_is_one_line_before_any_run(argv, message, tmp_path, monkeypatch,
                                                       capsys):
    monkeypatch.setattr(fidelity, "compare", lambda *a, **k: pytest.fail("runs started"))
    (tmp_path / "runs.jsonl").write_text("", encoding="utf-8")
    base = ["--configs", "recycled-lora", "--seeds", "0", "--out", str(tmp_path / "runs.jsonl")]
    assert fidelity.main(base + [a.format(tmp=tmp_path) for a in argv]) == 2
    assert capsys.readouterr().err == message.format(tmp=tmp_path) + "\n"


def test_an_fp16_comparison_over_int8_runs_trains_only_the_recycled_runs_again(
        tmp_path, monkeypatch):
    import runtime.datasets

    asked = []
    monkeypatch.setattr(runtime.datasets, "prepare_builtin", lambda *a, **k: asked.append(
        k["dtype"]) or runtime.datasets.PreparedTask(str(tmp_path / k["dtype"]),
                                                     str(tmp_path / "labels.jsonl"), "token-cls"))
    fake = _trainer(monkeypatch)
    out = tmp_path / "runs.jsonl"
    fidelity.compare(_config(tmp_path))
    # a record from before the field: its recycled runs read the only precision there was
    out.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "cache_dtype"}) + "\n"
                           for r in _lines(out)), encoding="utf-8")
    fake.calls.clear()
    fidelity.compare(_config(tmp_path, resume=True))
    assert fake.calls == []  # the int8 runs are recorded: all skipped
    fidelity.compare(_config(tmp_path, cache_dtype="fp16", resume=True))
    assert asked == ["int8", "int8", "fp16"]
    assert fake.calls == [("recycled-lora", 0, False), ("recycled-lora", 1, False)]
    assert [(r["config"], r.get("cache_dtype")) for r in _lines(out)[4:]] == [
        ("recycled-lora", "fp16"), ("recycled-lora", "fp16")]
    # in run folders of their own: the int8 runs' folders are neither trained over nor resumed
    assert sorted(os.listdir(tmp_path / "work" / "wnut16-K3")) == [
        "full-lora-s0", "full-lora-s1", "recycled-lora-fp16-s0", "recycled-lora-fp16-s1",
        "recycled-lora-s0", "recycled-lora-s1"]
