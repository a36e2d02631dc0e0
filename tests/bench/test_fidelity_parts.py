"""bench.fidelity and bench.probe: summaries over seeds, overrides, and the probe's classifier."""

import numpy as np
import pytest

from bench import fidelity
from bench.probe import fit_logistic


def _record(config, seed, score, layer=3, seconds=10.0, epochs=2):
    return {"model": "m", "task": "wnut16", "layer": layer, "config": config, "seed": seed,
            "metrics": {"f1": score, "train_seconds": seconds, "epochs_run": epochs}}


def test_summary_is_the_mean_and_sample_std_over_seeds():
    rows = fidelity.summarize([_record("recycled-lora", s, v) for s, v in
                               enumerate([0.40, 0.44, 0.42])] + [_record("full-lora", 0, 0.5)])
    rec, full = rows
    assert rec["config"] == "recycled-lora" and rec["n"] == 3
    assert rec["mean"] == pytest.approx(42.0) and rec["std"] == pytest.approx(2.0)
    assert rec["seconds_per_epoch"] == pytest.approx(5.0)
    assert full["n"] == 1 and full["std"] == 0.0
    assert "recycled-lora" in fidelity.format_table(rows)


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


def test_sweep_plot_is_written(tmp_path):
    rows = fidelity.summarize([_record("recycled-lora", 0, 0.3 + k / 100, layer=k, seconds=10 - k)
                               for k in (1, 2, 3)] +
                              [_record("full-lora", 0, 0.4, layer=k, seconds=12) for k in (1, 2, 3)])
    fidelity.plot_sweep(rows, str(tmp_path / "sweep.png"))
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
