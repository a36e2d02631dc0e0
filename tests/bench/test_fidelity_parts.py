"""bench.fidelity and bench.probe: overrides and bad input refused before anything trains, what
a run records of its machine, and the probe's classifier (summaries: test_fidelity_summary)."""

import numpy as np
import pytest

from bench import fidelity
from bench.probe import fit_logistic


def test_overrides_parse_json_values_and_bare_strings():
    assert fidelity._parse_overrides(["lr=3e-3", "lora_targets=all", "min_epochs=4"]) == {
        "lr": 3e-3, "lora_targets": "all", "min_epochs": 4}
    from runtime.errors import RuntimeConfigError

    with pytest.raises(RuntimeConfigError, match="expected key=value"):
        fidelity._parse_overrides(["lr"])


def test_unknown_config_is_one_line_and_exit_2(capsys):
    assert fidelity.main(["--configs", "recycled-magic"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config 'recycled-magic'") and err.count("\n") == 1


def test_probe_classifier_separates_separable_classes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 0.5, (50, 4)), rng.normal(2, 0.5, (50, 4))])
    y = np.array([0] * 50 + [1] * 50)
    import torch

    linear = fit_logistic(x, y, 2, l2=1e-3)
    pred = linear(torch.from_numpy(x).float()).argmax(-1).numpy()
    assert (pred == y).mean() == 1.0


def test_a_run_records_the_cpu_it_ran_on(monkeypatch, tmp_path):
    import runtime.trainer

    monkeypatch.setattr(runtime.trainer, "train", lambda config: {"f1": 0.5})
    monkeypatch.setattr("export.cpu.cpu_description", lambda: {"model_name": "Xeon", "family": "6",
                                                               "model": "167", "bf16_flags": []})
    record = fidelity.run_one(fidelity.FidelityConfig(), "recycled-lora", 0, "c", "l",
                              "token-cls", 3, str(tmp_path))
    assert record["cpu"]["model_name"] == "Xeon" and record["torch_threads"] >= 1


def test_a_gpu_run_records_the_card_and_a_cpu_run_records_none(monkeypatch, tmp_path):
    import torch

    import runtime.trainer

    monkeypatch.setattr(runtime.trainer, "train", lambda config: {"f1": 0.5})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    # TrainConfig checks that a cuda device exists: this machine has none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    on_gpu = fidelity.run_one(fidelity.FidelityConfig(device="cuda"), "recycled-lora", 0, "c",
                              "l", "token-cls", 3, str(tmp_path))
    assert on_gpu["gpu"] == "NVIDIA H100" and on_gpu["train_config"]["device"] == "cuda"
    on_cpu = fidelity.run_one(fidelity.FidelityConfig(), "recycled-lora", 0, "c", "l",
                              "token-cls", 3, str(tmp_path))
    assert "gpu" not in on_cpu


def test_overrides_take_each_field_of_its_declared_type():
    parsed = fidelity._parse_overrides(["weight_decay=0", "head_lr=null", "allow_unlabelled=true"])
    assert parsed == {"weight_decay": 0.0, "head_lr": None, "allow_unlabelled": True}
    assert isinstance(parsed["weight_decay"], float)  # an int where a float is declared
    from runtime.errors import RuntimeConfigError

    for item, message in [("lr=abc", "lr takes float | None"), ("min_epochs=2.5", "takes int"),
                          ("allow_unlabelled=1", "takes bool"), ("lora_r=true", "takes int"),
                          ("colour=red", "'colour' is not a TrainConfig field; one of ")]:
        with pytest.raises(RuntimeConfigError, match=message):
            fidelity._parse_overrides([item])


@pytest.mark.parametrize("item, flag", [("mode=full", "--configs"), ("adapter=lora", "--configs"),
                                        ("seed=3", "--seeds"), ("epochs=2", "--epochs"),
                                        ("cache=x", None)])
def test_a_field_the_bench_sets_per_run_is_refused(item, flag):
    # `--set mode=full` under recycled-lora would train full and file it as recycled
    from runtime.errors import RuntimeConfigError

    with pytest.raises(RuntimeConfigError, match="bench.fidelity sets") as caught:
        fidelity._parse_overrides([item])
    assert (flag in str(caught.value)) if flag else "pass" not in str(caught.value)


@pytest.mark.parametrize("argv, message", [
    (["--set", "min_epochs=0"], "error: min_epochs must be >= 1"),
    (["--set", "lr=abc"], "error: --set 'lr=abc': lr takes float | None"),
    (["--set", "mode=full"], "error: --set 'mode=full': bench.fidelity sets mode"),
    (["--epochs", "0"], "error: epochs must be >= 1, got 0"),
    (["--seeds", "-1"], "error: seed must be in 0..4294967295"),
    (["--max-train-examples", "0"], "error: max_train_examples must be >= 1"),
    (["--layer", "0"], "error: layer K=0 is out of range for this 6-layer model"),
    (["--layer", "6"], "error: layer K=6 is out of range for this 6-layer model"),
    # once refused only after "building the wnut16 cache", leaving a lock file and tasks/
    (["--max-length", "1"], "error: --max-length must be an integer >= 2, got 1"),
    (["--max-length", "-5"], "error: --max-length must be an integer >= 2, got -5"),
])
def test_bad_input_is_refused_before_any_cache_is_built(argv, message, tmp_path, capsys,
                                                        monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "caches"
    base = ["--configs", "recycled-lora", "--seeds", "0", "--cache-root", str(root), "--out",
            str(tmp_path / "runs.jsonl")]
    assert fidelity.main(base + argv) == 2  # argv last: its flags win over base's
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not root.exists() and not (tmp_path / "runs.jsonl").exists()


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}"], "error: --out {tmp}: is a folder; pass a file name"),
    (["--out", "{tmp}/no/runs.jsonl"], "error: --out {tmp}/no/runs.jsonl: {tmp}/no is not a "
                                       "folder this user can write to"),
    (["--sweep", "--plot", "{tmp}/no/k.png"], "error: --plot {tmp}/no/k.png: {tmp}/no is not a "
                                              "folder this user can write to"),
])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_first_run(
        argv, message, tmp_path, capsys, monkeypatch):
    # runs are appended after each one trains: a bad --out found then loses hours of runs
    monkeypatch.setattr(fidelity, "compare", lambda *a, **k: pytest.fail("runs started"))
    monkeypatch.setattr(fidelity, "sweep", lambda *a, **k: pytest.fail("runs started"))
    base = ["--configs", "recycled-lora", "--seeds", "0", "--cache-root", str(tmp_path / "c")]
    assert fidelity.main(base + [a.format(tmp=tmp_path) for a in argv]) == 2
    assert capsys.readouterr().err == message.format(tmp=tmp_path) + "\n"


def test_a_stored_precision_the_cache_format_lacks_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        fidelity.main(["--cache-dtype", "bf16"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --cache-dtype: invalid choice: 'bf16'" in err and err.count("\n") == 1
