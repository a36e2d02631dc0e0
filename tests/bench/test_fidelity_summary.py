"""bench.fidelity_summary: means over seeds, recipes kept apart, gaps paired seed by seed, dev
picks, the largest K within a point, the sweep plot, and `--summary` over kept run files."""

import json

import pytest

from bench import fidelity
from bench import fidelity_summary as summary


def _record(config, seed, score, layer=3, seconds=10.0, epochs=2):
    return {"model": "m", "task": "wnut16", "layer": layer, "config": config, "seed": seed,
            "metrics": {"f1": score, "train_seconds": seconds, "epochs_run": epochs}}


def test_summary_is_the_mean_and_sample_std_over_seeds():
    rows = summary.summarize([_record("recycled-lora", s, v) for s, v in
                              enumerate([0.40, 0.44, 0.42])] + [_record("full-lora", 0, 0.5)])
    rec, full = rows
    assert rec["config"] == "recycled-lora" and rec["n"] == 3
    assert rec["mean"] == pytest.approx(42.0) and rec["std"] == pytest.approx(2.0)
    assert rec["seconds_per_epoch"] == pytest.approx(5.0)
    assert full["n"] == 1 and full["std"] == 0.0
    assert "recycled-lora" in summary.format_table(rows)


def test_full_runs_launched_at_several_k_are_one_row():
    # full fine-tuning reads no cache: runs launched beside K=1 and K=5 are one model's runs
    rows = summary.summarize([_record("full-finetune", 0, 0.40, layer=1),
                              _record("full-finetune", 1, 0.44, layer=5),
                              _record("recycled-finetune", 0, 0.41, layer=1),
                              _record("recycled-finetune", 1, 0.42, layer=5)])
    assert [(r["config"], r["layer"], r["n"]) for r in rows] == [
        ("full-finetune", None, 2), ("recycled-finetune", 1, 1), ("recycled-finetune", 5, 1)]
    assert rows[0]["mean"] == pytest.approx(42.0)
    assert summary.format_table(rows).splitlines()[1].split()[2:4] == ["-", "full-finetune"]


def test_sweep_plot_is_written(tmp_path):
    records = ([_record("recycled-lora", 0, 0.3 + k / 100, layer=k, seconds=10 - k)
                for k in (1, 2, 3)] + [_record("full-lora", 0, 0.4, layer=k, seconds=12)
                                       for k in (1, 2, 3)])
    summary.plot_sweep(records, str(tmp_path / "sweep.png"))
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_series_pairs_each_k_with_full_on_the_seeds_both_ran():
    # K=2 on seeds 0-2, K=4 on seed 0 only; full on seeds 0-4, launched at two K (pooled)
    records = ([_record("recycled-finetune", s, v, layer=2) for s, v in
                ((0, 0.46), (1, 0.44), (2, 0.45))] +
               [_record("recycled-finetune", 0, 0.34, layer=4)] +
               [_record("full-finetune", s, v, layer=3 if s < 3 else 2) for s, v in
                ((0, 0.47), (1, 0.45), (2, 0.44), (3, 0.50), (4, 0.49))] +
               [_record("linear-probe", 0, 0.20, layer=6)] +
               # run at K=3 only, beside the sweep: a point, left out of the figure
               [_record("recycled-lora", 0, 0.40), _record("full-lora", 0, 0.41)])
    (series,) = summary.sweep_series(records)
    assert series["config"] == "recycled-finetune"
    assert [(p["layer"], p["n"]) for p in series["points"]] == [(2, 3), (4, 1)]
    assert series["points"][0]["mean"] == pytest.approx(45.0)
    # full's line is its five seeds pooled over K; the gaps use only the seeds each K shares
    assert series["full"]["n"] == 5 and series["full"]["mean"] == pytest.approx(47.0)
    k2, k4 = series["gaps"]
    assert k2["seeds"] == [0, 1, 2] and k2["mean_gap"] == pytest.approx(-1 / 3)
    # gaps -1, -1, +1: standard error 2/3, t(2) = 4.303
    low, high = k2["interval_95"]
    assert high - low == pytest.approx(2 * 4.303 * 2 / 3)
    assert k4["seeds"] == [0] and k4["mean_gap"] == pytest.approx(-13.0)
    assert k4["interval_95"] is None


def test_a_sweep_plot_of_two_models_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    other = dict(_record("recycled-lora", 0, 0.3), model="other")
    runs.write_text("".join(json.dumps(r) + "\n" for r in
                            (_record("recycled-lora", 0, 0.3), other)), encoding="utf-8")
    plot = tmp_path / "sweep.png"
    assert fidelity.main(["--summary", str(runs), "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err == "error: --plot: these runs hold 2 models (m, other); plot one at a time\n"
    assert not plot.exists()


def test_a_sweep_plot_of_another_task_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps(_record("recycled-lora", 0, 0.3)) + "\n", encoding="utf-8")
    plot = tmp_path / "sweep.png"
    args = ["--summary", str(runs), "--task", "bbc-news", "--plot", str(plot)]
    assert fidelity.main(args) == 2
    assert capsys.readouterr().err == "error: no runs of --task bbc-news in these files\n"
    assert not plot.exists()
    # runs of the task, but only full ones: nothing the sweep moves
    runs.write_text(json.dumps(_record("full-lora", 0, 0.3)) + "\n", encoding="utf-8")
    assert fidelity.main(["--summary", str(runs), "--plot", str(plot)]) == 2
    assert capsys.readouterr().err == ("error: --plot: no recycled or frozen runs of this task "
                                       "in these files (--task names the task to draw)\n")
    assert not plot.exists()


def _two_tasks(tmp_path):
    runs = tmp_path / "runs.jsonl"
    scores = (("recycled-lora", 0.40), ("full-lora", 0.41), ("recycled-finetune", 0.42),
              ("full-finetune", 0.44), ("frozen-finetune", 0.43))
    lines = [_record(config, 0, score) for config, score in scores]
    lines.append(dict(_record("recycled-lora", 0, 0.9), task="bbc-news",
                      metrics={"accuracy": 0.9}))
    runs.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return runs


def test_a_summary_shows_the_configs_named_with_what_they_pair_with(tmp_path, capsys):
    runs = _two_tasks(tmp_path)
    assert fidelity.main(["--summary", str(runs), "--configs", "recycled-finetune"]) == 0
    out = capsys.readouterr().out
    assert "recycled-finetune - full-finetune on seeds [0]: -2.00" in out
    assert "recycled-finetune - frozen-finetune" in out  # the cache's share: its frozen pair
    assert "lora" not in out and "bbc-news" not in out
    # --configs "" names none: every run, as before (the documented way to train nothing)
    assert fidelity.main(["--summary", "--configs", "", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "recycled-lora - full-lora" in out and "bbc-news" in out
    assert fidelity.main(["--summary", str(runs), "--configs", "recycled-bottleneck"]) == 2
    assert capsys.readouterr().err == ("error: no runs of --configs recycled-bottleneck in these "
                                       "files\n")


def test_a_summary_pairs_over_the_seeds_and_shows_the_k_named(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    records = [_record("full-finetune", s, 0.40 + s / 100, layer=6) for s in range(5)]
    records += [_record("recycled-finetune", s, 0.40, layer=k) for s in range(5) for k in (3, 4)]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert fidelity.main(["--summary", str(runs), "--seeds", "0", "1", "2"]) == 0
    out = capsys.readouterr().out
    # full's seeds 3 and 4 (+3, +4) no longer move the mean the gaps pair against
    assert "K=3: recycled-finetune - full-finetune on seeds [0, 1, 2]: -1.00" in out
    assert fidelity.main(["--summary", str(runs), "--layer", "4"]) == 0
    out = capsys.readouterr().out
    assert "K=4:" in out and "K=3:" not in out  # full runs were made at K=6: kept, pooled
    assert "on seeds [0, 1, 2, 3, 4]: -2.00" in out
    assert fidelity.main(["--summary", str(runs), "--layer", "5", "--seeds", "7"]) == 2
    assert capsys.readouterr().err == "error: no runs of --layer 5 and --seeds 7 in these files\n"
    assert fidelity.main(["--summary", str(runs), "--layer", "5"]) == 2  # full runs alone
    assert capsys.readouterr().err == "error: no runs of --layer 5 in these files\n"


@pytest.mark.parametrize("option", [["--epochs", "4"], ["--set", "lr=1e-3"], ["--probe"],
                                    ["--model", "all-mpnet-base-v2"], ["--work", "runs"],
                                    ["--max-train-examples", "200"], ["--cache-dtype", "fp16"],
                                    # typed at their defaults: still read by nothing
                                    ["--device", "cpu"], ["--cache-dtype", "int8"]])
def test_a_summary_refuses_options_that_only_shape_training(option, tmp_path, capsys):
    runs = _two_tasks(tmp_path)
    assert fidelity.main(["--summary", str(runs), *option]) == 2
    assert capsys.readouterr().err == (f"error: {option[0]} shapes runs to train and does nothing "
                                       "with --summary, which narrows by --task, --configs, "
                                       "--layer and --seeds only\n")


@pytest.mark.parametrize("argv, message", [
    (["--summary", "{runs}", "--speedups", "r.json"],
     "--speedups gives --plot its speedup axis; name --plot FILE.png"),
    (["--configs", "", "--out", "{runs}", "--speedups", "r.json"],
     "--speedups gives --plot its speedup axis; name --plot FILE.png"),
    (["--sweep", "--layer", "3", "--configs", "", "--out", "{runs}"],
     "--sweep trains every K from 1 to N-1; drop --layer, or drop --sweep to train at that K"),
    (["--summary", "{runs}", "--out", "{runs}"],
     "--out is the runs file a --summary reads only when it names no files; name it among them"),
])
def test_options_that_would_do_nothing_are_refused(argv, message, tmp_path, capsys):
    runs = _two_tasks(tmp_path)
    assert fidelity.main([a.format(runs=runs) for a in argv]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_summary_plot_draws_the_files_only_task_or_asks_for_one(tmp_path, capsys):
    runs, plot = _two_tasks(tmp_path), tmp_path / "sweep.png"
    assert fidelity.main(["--summary", str(runs), "--plot", str(plot)]) == 2
    assert capsys.readouterr().err == ("error: --plot: these runs hold 2 tasks (bbc-news, "
                                       "wnut16); name one with --task\n")
    assert not plot.exists()
    assert fidelity.main(["--summary", str(runs), "--task", "wnut16", "--plot", str(plot)]) == 0
    assert plot.exists()
    capsys.readouterr()
    bbc = tmp_path / "bbc.jsonl"
    bbc.write_text("".join(line for line in runs.read_text().splitlines(True)
                           if "bbc-news" in line), encoding="utf-8")
    plot.unlink()
    assert fidelity.main(["--summary", str(bbc), "--plot", str(plot)]) == 0  # no --task needed
    assert plot.exists()


def test_largest_k_within_one_point_of_full_is_judged_on_shared_seeds():
    records = ([_record("recycled-finetune", 0, v, layer=k)
                for k, v in ((1, 0.445), (2, 0.44), (3, 0.4299), (4, 0.425), (5, 0.30))] +
               # seed 1 only at K=3, and scoring far above full: the pooled means would put K=3
               # within 1 point; seed by seed, only seed 0 is shared with full at every K
               [_record("recycled-finetune", 5, 0.60, layer=3)] +
               [_record("full-finetune", s, v, layer=k)
                for s, v, k in ((0, 0.44, 3), (1, 0.45, 1))] +
               [_record("recycled-lora", 0, 0.30, layer=3), _record("full-lora", 0, 0.40)])
    found = {f["config"]: f for f in summary.largest_k_within(summary.paired_gaps(records))}
    ft = found["recycled-finetune"]
    # full seed 0 is 44.0: K=2 is +0.00, K=3 is -1.01 (seed 5 has no full run), K=4 is -1.50
    assert ft["largest_k"] == 2 and ft["layers"] == [1, 2, 3, 4, 5]
    assert ft["gap"] == pytest.approx(0.0) and ft["seeds"] == [0]
    assert ft["full_mean"] == pytest.approx(44.0)
    assert found["recycled-lora"]["largest_k"] is None
    text = summary.format_largest_k(list(found.values()))
    assert "largest K within 1 is 2 (+0.00: 44.00 against 44.00 on seeds [0])" in text
    assert "no K within 1" in text
    assert "different seeds" not in text  # every K pairs with full on seed 0 alone


def test_largest_k_says_when_the_k_ran_on_different_seeds():
    # K=4's two extra seeds (+5, +5) carry it inside the point; on seeds 0-2 only K=3 is
    records = ([_record("full-finetune", s, 0.50) for s in range(5)]
               + [_record("recycled-finetune", s, 0.495, layer=3) for s in range(3)]
               + [_record("recycled-finetune", s, 0.48, layer=4) for s in range(3)]
               + [_record("recycled-finetune", s, 0.55, layer=4) for s in (3, 4)])
    found = summary.largest_k_within(summary.paired_gaps(records))
    assert found[0]["largest_k"] == 4
    assert found[0]["seeds_per_k"] == {3: [0, 1, 2], 4: [0, 1, 2, 3, 4]}
    assert summary.format_largest_k(found).endswith(
        "; the K ran on different seeds (3 to 5 each): a --summary with --seeds 0 1 2 judges "
        "every K on the same ones")
    narrowed = summary.select_runs(records, seeds=(0, 1, 2))
    found = summary.largest_k_within(summary.paired_gaps(narrowed))
    assert found[0]["largest_k"] == 3 and "different seeds" not in summary.format_largest_k(found)


def test_a_gap_of_exactly_one_point_is_within_one_point():
    # 100 * 0.54 - 100 * 0.55 is -1.000000000000007 in binary floats: still "within 1.0"
    assert 100 * 0.54 - 100 * 0.55 < -1.0
    records = [_record("recycled-finetune", 0, 0.54), _record("full-finetune", 0, 0.55)]
    found = summary.largest_k_within(summary.paired_gaps(records))
    assert found[0]["largest_k"] == 3


def _report(tmp_path, per_example):
    steps = {str(k): {mode: {"train": {"per_example": {"total": t}}} for mode, t in modes.items()}
             for k, modes in per_example.items()}
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"steps": steps}), encoding="utf-8")
    return str(path)


def test_report_speedups_are_full_median_over_recycled_per_k(tmp_path):
    path = _report(tmp_path, {2: {"full": 0.135, "recycled": 0.075, "frozen": 0.09},
                              4: {"full": 0.14, "recycled": 0.05},
                              6: {"full": 0.2, "recycled": 0.02}})
    # full's median is K = 4's 0.14, not each K's own full
    assert summary.report_speedups(path) == {2: pytest.approx(0.14 / 0.075),
                                             4: pytest.approx(2.8), 6: pytest.approx(7.0)}


def test_report_without_steps_is_one_line_and_exit_2(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps(_record("recycled-lora", 0, 0.3)) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text('{"train_speedup": 2.0}', encoding="utf-8")
    code = fidelity.main(["--summary", "--configs", "", "--out", str(runs), "--plot",
                          str(tmp_path / "p.png"), "--speedups", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: --speedups {bad}: not a bench.report JSON")
    assert not (tmp_path / "p.png").exists()


def test_sweep_plot_takes_speedups_from_a_report(tmp_path):
    records = ([_record("recycled-finetune", 0, 0.3 + k / 100, layer=k) for k in (1, 2, 3)]
               + [_record("full-finetune", 0, 0.4)])
    summary.plot_sweep(records, str(tmp_path / "sweep.png"), speedups={1: 1.3, 2: 1.7, 3: 2.0})
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_paired_gaps_compare_only_the_seeds_both_sides_ran():
    records = ([_record("recycled-finetune", s, v, layer=6) for s, v in
                ((0, 0.47), (1, 0.48), (2, 0.43), (3, 0.51))] +
               [_record("full-finetune", s, v, layer=6)
                for s, v in ((0, 0.47), (1, 0.47), (2, 0.52))] +
               [_record("full-finetune", 1, 0.49, layer=3),  # one seed at another K: averaged
                _record("recycled-lora", 0, 0.40), _record("full-lora", 1, 0.41)])  # none shared
    found = summary.paired_gaps(records)
    assert len(found) == 1
    ft = found[0]
    assert ft["seeds"] == [0, 1, 2] and ft["layer"] == 6  # seed 3 has no full run: left out
    assert ft["gaps"] == pytest.approx([0.0, 0.0, -9.0])  # full seed 1: (47 + 49) / 2 = 48
    assert ft["mean_gap"] == pytest.approx(-3.0) and ft["full_mean"] == pytest.approx(49.0)
    text = summary.format_paired_gaps(found)
    assert "recycled-finetune - full-finetune on seeds [0, 1, 2]: -3.00" in text
    assert "per seed +0.00, +0.00, -9.00" in text
    # gaps 0, 0, -9: deviations 3, 3, -6, sample variance 54 / 2 = 27, so sqrt(27 / 3) = 3
    assert ft["standard_error"] == pytest.approx(3.0)
    # df 2: t = 4.303, so -3 -/+ 4.303 x 3 = -15.909 .. +9.909
    assert ft["interval_95"] == pytest.approx((-15.909, 9.909))
    assert "-3.00 (standard error 3.00, 95% interval -15.91 to +9.91; " in text


def test_the_t_quantile_matches_scipy_to_its_table_rounding():
    scipy_stats = pytest.importorskip("scipy.stats")
    # the table holds 3 decimals (off by at most 5e-4); the expansion from 31 on is closer
    for df in range(1, 400):
        assert summary.t_quantile_975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df),
                                                           abs=5e-4)


def test_the_t_quantile_falls_towards_the_normal_one_and_refuses_no_freedom():
    quantiles = [summary.t_quantile_975(df) for df in range(1, 200)]
    assert all(a > b for a, b in zip(quantiles, quantiles[1:]))  # table and expansion join
    assert quantiles[-1] > 1.95996  # never below the normal quantile it tends to
    with pytest.raises(ValueError, match="at least 1"):
        summary.t_quantile_975(0)


def test_a_paired_gap_on_one_seed_claims_no_standard_error():
    found = summary.paired_gaps([_record("recycled-lora", 0, 0.40, layer=3),
                                 _record("full-lora", 0, 0.45)])
    assert found[0]["standard_error"] is None and found[0]["interval_95"] is None
    assert "-5.00 (40.00 against 45.00; per seed -5.00)" in summary.format_paired_gaps(found)


def test_summary_prints_the_paired_gap(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    lines = [_record("recycled-lora", s, v) for s, v in ((0, 0.40), (1, 0.44))]
    lines += [_record("full-lora", s, v) for s, v in ((0, 0.41), (1, 0.45), (2, 0.60))]
    runs.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert fidelity.main(["--summary", "--configs", "", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    # the table's full-lora mean takes all three seeds; the paired line only the two shared
    assert "m wnut16 K=3: recycled-lora - full-lora on seeds [0, 1]: -1.00" in out


def test_summary_marks_seconds_averaged_over_more_than_one_cpu():
    def on(cpu_model, seed):
        return dict(_record("full-lora", seed, 0.5),
                    cpu={"model_name": "Xeon", "family": "6", "model": cpu_model})

    same = summary.summarize([on("167", 0), on("167", 1)])
    assert same[0]["cpus"] == ["Xeon (family 6 model 167)"]
    assert "*" not in summary.format_table(same)
    mixed = summary.summarize([on("167", 0), on("143", 1)])
    assert len(mixed[0]["cpus"]) == 2
    assert "5.0*" in summary.format_table(mixed)
    assert "more than one CPU" in summary.format_table(mixed)
    # a run from before the field may have run anywhere: beside a recorded one it marks too
    partly = summary.summarize([on("167", 0), _record("full-lora", 2, 0.5)])
    assert partly[0]["cpus"] == ["Xeon (family 6 model 167)", summary.UNRECORDED_CPU]
    assert "5.0*" in summary.format_table(partly)
    unknown = summary.summarize([_record("full-lora", 0, 0.5), _record("full-lora", 1, 0.5)])
    assert unknown[0]["cpus"] == [] and "*" not in summary.format_table(unknown)


def _at_lr(config, seed, score, lr, dev=None, layer=3, **train_config):
    record = _record(config, seed, score, layer=layer)
    record.update(learning_rate=lr, head_learning_rate=10 * lr,
                  train_config={"adapter": config.split("-", 1)[1], "seed": seed, **train_config})
    if dev is not None:
        record["metrics"]["dev_best"] = dev
    return record


def test_runs_at_different_learning_rates_are_different_rows():
    rows = summary.summarize([_at_lr("recycled-lora", 0, 0.40, 1e-3),
                              _at_lr("recycled-lora", 1, 0.50, 1e-3),
                              _at_lr("recycled-lora", 0, 0.30, 3e-3)])
    assert [(r["lr"], r["n"]) for r in rows] == [((1e-3, 1e-2), 2), ((3e-3, 3e-2), 1)]
    assert rows[0]["mean"] == pytest.approx(45.0) and rows[1]["mean"] == pytest.approx(30.0)
    table = summary.format_table(rows)
    assert "1e-03/1e-02" in table and "3e-03/3e-02" in table


def test_runs_of_two_recipes_are_different_rows():
    runs = [_at_lr("full-lora", 0, 0.40, 1e-3, epochs=4, lora_r=8),
            _at_lr("full-lora", 1, 0.50, 1e-3, epochs=10, lora_r=8),
            _at_lr("full-lora", 2, 0.60, 1e-3, epochs=None, lora_r=8)]  # None: the default
    assert summary.recipe_conflicts(runs) == {"epochs": ["10", "4"]}
    rows = summary.summarize(runs)
    assert [(r["variant"], r["n"], round(r["mean"], 6)) for r in rows] == [
        ((("epochs", "4"),), 1, 40.0), ((("epochs", "10"),), 1, 50.0),
        ((("epochs", "null"),), 1, 60.0)]
    table = summary.format_table(rows)
    assert "epochs=4" in table and "epochs=10" in table and "epochs=default" in table
    # lora_r is not part of a fine-tuning run's recipe; seeds always differ
    tuned = [_at_lr("full-finetune", s, 0.4, 1e-4, lora_r=r) for s, r in ((0, 8), (1, 16))]
    assert summary.recipe_conflicts(tuned) == {}
    assert [(r["variant"], r["n"]) for r in summary.summarize(tuned)] == [((), 2)]
    assert "recipe" not in summary.format_table(summary.summarize(tuned))


def test_a_field_newer_than_a_run_reads_as_its_default_and_splits_the_rows():
    # the first two runs predate head_init (their train_config lacks it): they trained with a
    # random head, the default, and must not pool with a head_init=probe run
    old = [_at_lr("recycled-lora", s, v, 1e-3, lora_r=8) for s, v in ((0, 0.40), (1, 0.50))]
    assert all("head_init" not in r["train_config"] for r in old)
    runs = old + [_at_lr("recycled-lora", 0, 0.30, 1e-3, lora_r=8, head_init="probe")]
    assert summary.recipe_conflicts(runs) == {"head_init": ['"probe"', '"random"']}
    rows = summary.summarize(runs)
    assert [(r["variant"], r["n"]) for r in rows] == [
        ((("head_init", '"random"'),), 2), ((("head_init", '"probe"'),), 1)]
    assert summary.recipe_conflicts(old) == {}  # without the new run nothing varies


def _two_width_runs():
    # recycled-bottleneck at widths 64 and 128, full-bottleneck at 64 only; dev prefers 128
    return ([_at_lr("recycled-bottleneck", s, v, 3e-3, dev=d, bottleneck_size=64)
             for s, v, d in ((0, 0.35, 0.39), (1, 0.37, 0.39))] +
            [_at_lr("recycled-bottleneck", s, v, 3e-3, dev=d, bottleneck_size=128)
             for s, v, d in ((0, 0.30, 0.41), (1, 0.32, 0.41))] +
            [_at_lr("full-bottleneck", s, v, 3e-3, dev=d, bottleneck_size=64)
             for s, v, d in ((0, 0.40, 0.45), (1, 0.42, 0.45))])


def test_paired_gaps_pair_the_same_recipe_and_never_pool_two():
    found = summary.paired_gaps(_two_width_runs())
    # one pair, width 64 with width 64; the 128 runs have no full counterpart of their width
    assert len(found) == 1
    assert found[0]["recipe"] == ((3e-3, 3e-2), (("bottleneck_size", "64"),))
    assert found[0]["full_recipe"] == found[0]["recipe"]
    assert found[0]["mean_gap"] == pytest.approx(-5.0)  # 36 against 41, not 33.5 pooled
    text = summary.format_paired_gaps(found)
    assert ("recycled-bottleneck (lr 3e-03/3e-02; bottleneck_size=64) - full-bottleneck "
            "(lr 3e-03/3e-02; bottleneck_size=64) on seeds [0, 1]: -5.00") in text
    picked = summary.paired_gaps(_two_width_runs(), by_dev=True)
    assert len(picked) == 1 and picked[0]["mean_gap"] == pytest.approx(-10.0)  # 31 against 41
    assert picked[0]["recipe"][1] == (("bottleneck_size", "128"),)
    rows = summary.format_paired_gaps(picked).split("  recycled-bottleneck: ")[1].splitlines()
    assert [row.split() for row in rows[1:4]] == [
        ["lr/head", "bottleneck_size", "best", "dev"],
        ["3e-03/3e-02", "128", "41.00", "picked"], ["3e-03/3e-02", "64", "39.00"]]


def _two_rate_runs():
    # recycled: dev prefers 3e-3; full: dev prefers 1e-3 on the seeds both rates ran (0, 1),
    # though 3e-3's extra seed 2 has the best dev of all (it must not decide the pick)
    return ([_at_lr("recycled-lora", s, v, 1e-3, dev=d) for s, v, d in
             ((0, 0.36, 0.40), (1, 0.38, 0.40))] +
            [_at_lr("recycled-lora", s, v, 3e-3, dev=d) for s, v, d in
             ((0, 0.42, 0.44), (1, 0.44, 0.44))] +
            [_at_lr("full-lora", s, v, 1e-3, dev=d) for s, v, d in
             ((0, 0.43, 0.50), (1, 0.45, 0.50))] +
            [_at_lr("full-lora", s, v, 3e-3, dev=d) for s, v, d in
             ((0, 0.39, 0.45), (1, 0.41, 0.45), (2, 0.60, 0.90))])


def test_gpu_and_cpu_runs_of_one_recipe_and_seed_stay_apart():
    # the same seed on a GPU draws other dropout masks: it is another sample, not a repeat
    cpu = [_at_lr(c, 0, v, 1e-3, device="cpu") for c, v in
           (("recycled-lora", 0.40), ("full-lora", 0.44))]
    gpu = [dict(_at_lr(c, 0, v, 1e-3, device="cuda"), gpu="NVIDIA H100",
                cpu={"model_name": "EPYC", "family": "25", "model": "1"})
           for c, v in (("recycled-lora", 0.50), ("full-lora", 0.51))]
    rows = summary.summarize(cpu + gpu)
    assert [(r["config"], r["variant"], r["mean"]) for r in rows] == [
        ("recycled-lora", (("device", '"cpu"'),), pytest.approx(40.0)),
        ("full-lora", (("device", '"cpu"'),), pytest.approx(44.0)),
        ("recycled-lora", (("device", '"cuda"'),), pytest.approx(50.0)),
        ("full-lora", (("device", '"cuda"'),), pytest.approx(51.0))]
    assert rows[2]["cpus"] == ["EPYC (family 25 model 1) + NVIDIA H100"]
    gaps = {f["recipe"][1]: f["mean_gap"] for f in summary.paired_gaps(cpu + gpu)}
    assert gaps == {(("device", '"cpu"'),): pytest.approx(-4.0),
                    (("device", '"cuda"'),): pytest.approx(-1.0)}
    assert summary.recipe_conflicts(cpu) == {}  # one device: nothing to tell apart


def test_an_input_adapter_of_its_own_width_is_another_recipe():
    # None means "as wide as bottleneck_size": it pools with an explicit 64, never with 384
    runs = [_at_lr("recycled-bottleneck", 0, 0.40, 3e-3, bottleneck_size=64,
                   input_adapter=True, input_adapter_size=None),
            _at_lr("recycled-bottleneck", 1, 0.42, 3e-3, bottleneck_size=64,
                   input_adapter=True, input_adapter_size=64),
            _at_lr("recycled-bottleneck", 0, 0.46, 3e-3, bottleneck_size=64,
                   input_adapter=True, input_adapter_size=384),
            _at_lr("recycled-bottleneck", 0, 0.30, 3e-3, bottleneck_size=64)]
    rows = summary.summarize(runs)
    assert [(dict(r["variant"]), r["n"], round(r["mean"], 6)) for r in rows] == [
        ({"input_adapter": "true", "input_adapter_size": "64"}, 2, 41.0),
        ({"input_adapter": "true", "input_adapter_size": "384"}, 1, 46.0),
        ({"input_adapter": "false", "input_adapter_size": "null"}, 1, 30.0)]


def test_an_input_adapter_at_its_own_rate_is_another_recipe():
    # None means "at the encoder's rate": it pools with an explicit rate equal to it, never
    # with another (a None matching anything, like an old record's epochs, would pool 3e-4 in)
    runs = [_at_lr("recycled-bottleneck", 0, 0.40, 1e-3, input_adapter=True),
            _at_lr("recycled-bottleneck", 1, 0.42, 1e-3, input_adapter=True,
                   input_adapter_lr=1e-3),
            _at_lr("recycled-bottleneck", 0, 0.46, 1e-3, input_adapter=True,
                   input_adapter_lr=3e-4)]
    rows = summary.summarize(runs)
    assert [(dict(r["variant"]).get("input_adapter_lr"), r["n"], round(r["mean"], 6))
            for r in rows] == [('"lr"', 2, 41.0), ("0.0003", 1, 46.0)]
    assert "input_adapter_lr=0.0003" in summary.format_table(rows)


def test_clipped_runs_are_another_recipe_and_unclipped_ones_one():
    runs = [_at_lr("recycled-lora", 0, 0.40, 1e-3),  # an old record: no max_grad_norm field
            _at_lr("recycled-lora", 1, 0.42, 1e-3, max_grad_norm=None),
            _at_lr("recycled-lora", 0, 0.46, 1e-3, max_grad_norm=1.0)]
    rows = summary.summarize(runs)
    assert [(dict(r["variant"]).get("max_grad_norm"), r["n"]) for r in rows] == [
        ('"off"', 2), ("1.0", 1)]


def test_paired_gaps_pair_the_same_learning_rate_by_default():
    found = {f["lr"]: f for f in summary.paired_gaps(_two_rate_runs())}
    assert set(found) == {(1e-3, 1e-2), (3e-3, 3e-2)}
    assert found[(1e-3, 1e-2)]["mean_gap"] == pytest.approx(-7.0)  # 37 against 44
    assert found[(3e-3, 3e-2)]["mean_gap"] == pytest.approx(+3.0)  # 43 against 40, seeds 0-1
    assert all(f["full_lr"] == f["lr"] and not f["picked"] for f in found.values())


def test_pick_by_dev_pairs_each_side_at_the_rate_its_dev_score_picks():
    found = summary.paired_gaps(_two_rate_runs(), by_dev=True)
    assert len(found) == 1
    f = found[0]
    assert f["lr"] == (3e-3, 3e-2) and f["full_lr"] == (1e-3, 1e-2)
    assert f["seeds"] == [0, 1] and f["mean_gap"] == pytest.approx(-1.0)  # 43 against 44
    # full's 3e-3 dev mean is over seeds 0 and 1 only: 45, not (45 + 45 + 90) / 3
    assert f["dev_picks"]["full"].means == {((1e-3, 1e-2), ()): pytest.approx(50.0),
                                            ((3e-3, 3e-2), ()): pytest.approx(45.0)}
    assert [f["dev_picks"][side].seeds for side in ("ours", "full")] == [[0, 1], [0, 1]]
    # only 3e-3 ran three seeds: one recipe left is no choice, so nothing is rechecked
    assert f["dev_picks"]["full"].recheck is None
    text = summary.format_paired_gaps(found)
    assert "recycled-lora (lr 3e-03/3e-02) - full-lora (lr 1e-03/1e-02) on seeds [0, 1]" in text
    table = text.split("  full-lora: ", 1)[1].splitlines()
    assert table[0] == "mean best dev by recipe, over seeds [0, 1], the seeds every recipe ran"
    assert [line.split() for line in table[2:]] == [
        ["1e-03/1e-02", "50.00", "picked"], ["3e-03/3e-02", "45.00"]]
    within = summary.largest_k_within(found)
    assert within[0]["largest_k"] == 3 and within[0]["gap"] == pytest.approx(-1.0)
    assert "each at the recipe dev picks, K run [3]: largest K within 1 is 3" in (
        summary.format_largest_k(within))
    # at one rate each, two lines that say which rates they pair
    same = summary.format_largest_k(summary.largest_k_within(
        summary.paired_gaps(_two_rate_runs())))
    assert ("recycled-lora (lr 1e-03/1e-02) against full-lora (lr 1e-03/1e-02), K run [3]: "
            "no K within 1") in same
    assert "recycled-lora (lr 3e-03/3e-02) against full-lora (lr 3e-03/3e-02)" in same


def test_dev_table_has_a_column_per_field_that_tells_a_sides_recipes_apart():
    # recycled tries two widths and clipping on and off; lora_r is the same in all three
    runs = [_at_lr("recycled-bottleneck", s, 0.40, 3e-3, dev=d, bottleneck_size=w,
                   max_grad_norm=clip, lora_r=8)
            for w, clip, d in ((64, None, 0.40), (128, None, 0.46), (64, 1.0, 0.44))
            for s in (0, 1)]
    runs += [_at_lr("full-bottleneck", s, 0.41, 3e-3, dev=0.5, bottleneck_size=64, lora_r=8)
             for s in (0, 1, 2)]
    [found] = summary.paired_gaps(runs, by_dev=True)
    lines = summary.format_paired_gaps([found]).splitlines()
    assert lines[1] == ("  recycled-bottleneck: mean best dev by recipe, over seeds [0, 1], "
                        "the seeds every recipe ran")
    assert lines[2].split() == ["lr/head", "bottleneck_size", "max_grad_norm", "best", "dev"]
    assert [line.split() for line in lines[3:6]] == [
        ["3e-03/3e-02", "128", "off", "46.00", "picked"], ["3e-03/3e-02", "64", "1.0", "44.00"],
        ["3e-03/3e-02", "64", "off", "40.00"]]
    # the columns line up: each value starts under its header
    assert lines[3].index("128") == lines[2].index("bottleneck_size")
    assert lines[4].index("1.0") == lines[2].index("max_grad_norm")
    assert lines[6] == "  full-bottleneck: one recipe, mean best dev 50.00 over seeds [0, 1, 2]"
    assert len(lines) == 7


def test_dev_table_says_when_the_recipes_share_no_seed():
    pick = summary.DevPick(((3e-3, 3e-2), ()), {((1e-3, 1e-2), ()): 40.0,
                                                ((3e-3, 3e-2), ()): 41.0}, None)
    lines = summary.dev_table("recycled-lora", pick)
    assert lines[0] == ("  recycled-lora: mean best dev by recipe, each over its own seeds, "
                        "since the recipes share none")
    assert lines[2].split() == ["3e-03/3e-02", "41.00", "picked"]
    # no run recorded a dev score
    assert summary.dev_table("full-lora", summary.DevPick(None, {}, None)) == []


def _narrowed_runs(late_dev):
    """full-bottleneck at three widths: 64 and 128 on seeds 0-2, 256 on seeds 0-1 only, so the
    seeds every recipe ran are 0-1. Width 64's dev on seed 2 is `late_dev`."""
    devs = {64: (0.50, 0.50, late_dev), 128: (0.48, 0.48, 0.48), 256: (0.40, 0.40)}
    runs = [_at_lr("full-bottleneck", s, 0.40, 3e-3, dev=d, bottleneck_size=w)
            for w, by_seed in devs.items() for s, d in enumerate(by_seed)]
    runs += [_at_lr("recycled-bottleneck", s, 0.40, 3e-3, dev=0.4, bottleneck_size=64)
             for s in range(3)]
    [found] = summary.paired_gaps(runs, by_dev=True)
    return found["dev_picks"]["full"]


def test_a_pick_narrowed_to_two_seeds_is_rechecked_without_the_recipe_that_narrowed_it():
    same = _narrowed_runs(late_dev=0.50)
    assert same.seeds == [0, 1] and dict(same.recipe[1]) == {"bottleneck_size": "64"}
    assert same.recheck.seeds == [0, 1, 2] and same.recheck.recipe == same.recipe
    assert [dict(variant) for _, variant in same.left_out] == [{"bottleneck_size": "256"}]
    lines = summary.dev_table("full-bottleneck", same)
    assert [line.split() for line in lines[2:5]] == [
        ["3e-03/3e-02", "64", "50.00", "picked"], ["3e-03/3e-02", "128", "48.00"],
        ["3e-03/3e-02", "256", "40.00", "<", "3", "seeds"]]
    assert lines[5:] == [
        "    rechecked without the recipes marked < 3 seeds: the other 2 share seeds "
        "[0, 1, 2], and over those dev picks the same recipe, best dev 50.00"]
    # width 64 leads on seeds 0-1 (50 against 48) but not over 0-2 (40 against 48)
    other = _narrowed_runs(late_dev=0.20)
    assert other.recipe == same.recipe
    assert other.recheck.means[other.recheck.recipe] == pytest.approx(48.0)
    assert summary.dev_table("full-bottleneck", other)[-1].endswith(
        "dev picks another (lr 3e-03/3e-02; bottleneck_size=128), best dev 48.00")


def test_summary_reads_several_files_and_picks_by_dev(tmp_path, capsys):
    runs = _two_rate_runs()
    low, high = tmp_path / "low.jsonl", tmp_path / "high.jsonl"
    low.write_text("".join(json.dumps(r) + "\n" for r in runs if r["learning_rate"] == 1e-3),
                   encoding="utf-8")
    high.write_text("".join(json.dumps(r) + "\n" for r in runs if r["learning_rate"] == 3e-3),
                    encoding="utf-8")
    assert fidelity.main(["--summary", str(low), str(high), "--pick-by-dev"]) == 0
    out = capsys.readouterr().out
    assert ("recycled-lora (lr 3e-03/3e-02) - full-lora (lr 1e-03/1e-02) on seeds [0, 1]: "
            "-1.00") in out
    assert fidelity.main(["--summary", str(low), str(high)]) == 0
    out = capsys.readouterr().out
    assert ("recycled-lora (lr 1e-03/1e-02) - full-lora (lr 1e-03/1e-02) on seeds [0, 1]: "
            "-7.00") in out


def test_a_line_that_is_not_a_run_is_one_line_naming_file_and_line(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    runs.write_text(json.dumps(_record("full-lora", 0, 0.5)) + "\n\n" +
                    json.dumps({"config": "full-lora"}) + "\n", encoding="utf-8")
    assert fidelity.main(["--summary", str(runs)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {runs} line 3: not a bench.fidelity run record")
    assert captured.err.count("\n") == 1 and captured.out == ""
    runs.write_text('{"model": "m", "task"\n', encoding="utf-8")
    assert fidelity.main(["--summary", str(runs)]) == 2
    assert f"{runs} line 1: not a bench.fidelity run record" in capsys.readouterr().err
    assert fidelity.main(["--summary", str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.jsonl" in capsys.readouterr().err


def test_a_sweep_plot_of_two_learning_rates_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    records = [_at_lr("recycled-lora", 0, 0.40, 1e-3, layer=2),
               _at_lr("recycled-lora", 0, 0.42, 3e-3, layer=3), _at_lr("full-lora", 0, 0.45, 1e-3)]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    plot = tmp_path / "sweep.png"
    assert fidelity.main(["--summary", str(runs), "--plot", str(plot)]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --plot: recycled-lora was run with 2 recipes (lr/head 1e-03/1e-02 | "
                   "lr/head 3e-03/3e-02); plot one recipe's runs at a time\n")
    assert not plot.exists()


def test_a_sweep_plot_of_two_stored_precisions_is_refused_naming_them(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    records = [dict(_at_lr("recycled-lora", 0, 0.40, 1e-3, layer=k), cache_dtype=dtype)
               for k, dtype in ((2, "int8"), (3, "fp16"))] + [_at_lr("full-lora", 0, 0.45, 1e-3)]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert fidelity.main(["--summary", str(runs), "--plot", str(tmp_path / "sweep.png")]) == 2
    assert capsys.readouterr().err == (
        "error: --plot: recycled-lora was run with 2 recipes (lr/head 1e-03/1e-02; "
        "cache_dtype=fp16 | lr/head 1e-03/1e-02; cache_dtype=int8); plot one recipe's runs at a "
        "time\n")


def test_recycled_runs_of_two_stored_precisions_stay_apart_and_each_pairs_with_full():
    old = [_at_lr("recycled-lora", s, v, 1e-3, dev=0.40) for s, v in ((0, 0.40), (1, 0.42))]
    int8 = [dict(_at_lr("recycled-lora", 2, 0.44, 1e-3, dev=0.40), cache_dtype="int8")]
    fp16 = [dict(_at_lr("recycled-lora", s, v, 1e-3, dev=0.45), cache_dtype="fp16")
            for s, v in ((0, 0.44), (1, 0.46), (2, 0.45))]
    full = [_at_lr("full-lora", s, 0.45, 1e-3, dev=0.50) for s in (0, 1, 2)]
    rows = summary.summarize(old + int8 + fp16 + full)
    # a record from before the field reads as int8 and pools with an int8 one, never with fp16
    assert [(r["config"], dict(r["variant"]).get("cache_dtype"), r["n"]) for r in rows] == [
        ("recycled-lora", '"int8"', 3), ("recycled-lora", '"fp16"', 3), ("full-lora", "null", 3)]
    gaps = {dict(f["recipe"][1])["cache_dtype"]: f["mean_gap"]
            for f in summary.paired_gaps(old + int8 + fp16 + full)}
    assert gaps == {'"int8"': pytest.approx(-3.0), '"fp16"': pytest.approx(0.0)}
    # by dev the recycled side picks its precision, and still pairs with the full runs
    [picked] = summary.paired_gaps(old + int8 + fp16 + full, by_dev=True)
    assert dict(picked["recipe"][1])["cache_dtype"] == '"fp16"'
    assert picked["mean_gap"] == pytest.approx(0.0) and picked["seeds"] == [0, 1, 2]
    # runs of one precision alone print as before: no cache_dtype column
    assert "cache_dtype" not in summary.format_table(summary.summarize(old + full))


def test_probe_runs_of_two_stored_precisions_stay_apart_and_an_old_one_reads_as_int8():
    def probe(seed, score, **dtype):
        return {"model": "m", "task": "wnut16", "layer": 3, "config": "linear-probe",
                "seed": seed, "metrics": {"f1": score}, **dtype}

    rows = summary.summarize([probe(0, 0.20), probe(1, 0.22, cache_dtype="int8"),
                              probe(0, 0.30, cache_dtype="fp16")])
    assert [(dict(r["variant"]).get("cache_dtype"), r["n"], r["mean"]) for r in rows] == [
        ('"int8"', 2, pytest.approx(21.0)), ('"fp16"', 1, pytest.approx(30.0))]
    assert "cache_dtype" not in summary.format_table(summary.summarize([probe(0, 0.20)]))


def test_the_cache_share_pairs_recycled_with_frozen_at_its_k_recipe_and_seeds():
    frozen = [_at_lr("frozen-lora", s, v, 1e-3) for s, v in ((0, 0.40), (1, 0.44), (2, 0.50))]
    int8 = [dict(_at_lr("recycled-lora", s, v, 1e-3), cache_dtype="int8")
            for s, v in ((0, 0.38), (1, 0.45))]
    fp16 = [dict(_at_lr("recycled-lora", s, v, 1e-3), cache_dtype="fp16")
            for s, v in ((0, 0.40), (1, 0.44), (2, 0.50))]
    other_k = [_at_lr("recycled-lora", 0, 0.10, 1e-3, layer=2)]  # no frozen run at K=2
    other_rate = [_at_lr("recycled-lora", 0, 0.10, 3e-3)]  # no frozen run at 3e-3
    full = [_at_lr("full-lora", s, 0.50, 1e-3) for s in (0, 1, 2)]
    records = frozen + int8 + fp16 + other_k + other_rate + full
    shares = {(f["layer"], f["lr"], dict(f["recipe"][1]).get("cache_dtype")): f
              for f in summary.cache_shares(records)}
    assert sorted(shares) == [(3, (1e-3, 1e-2), '"fp16"'), (3, (1e-3, 1e-2), '"int8"')]
    int8_share = shares[(3, (1e-3, 1e-2), '"int8"')]
    assert int8_share["full_config"] == "frozen-lora" and int8_share["seeds"] == [0, 1]
    assert int8_share["gaps"] == pytest.approx([-2.0, 1.0])
    assert int8_share["mean_gap"] == pytest.approx(-0.5)
    assert int8_share["standard_error"] == pytest.approx(1.5)
    assert shares[(3, (1e-3, 1e-2), '"fp16"')]["gaps"] == pytest.approx([0.0, 0.0, 0.0])
    # the pairs with full are unchanged by it: frozen and each recycled recipe against full
    assert {f["config"] for f in summary.paired_gaps(records)} == {"frozen-lora",
                                                                   "recycled-lora"}


def test_summary_prints_the_cache_share_only_where_frozen_runs_pair(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    records = [_record("recycled-lora", 0, 0.40), _record("full-lora", 0, 0.45)]
    runs.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert fidelity.main(["--summary", str(runs)]) == 0
    assert "cache's share" not in capsys.readouterr().out
    with open(runs, "a", encoding="utf-8") as f:
        f.write(json.dumps(_record("frozen-lora", 0, 0.41)) + "\n")
    assert fidelity.main(["--summary", str(runs)]) == 0
    out = capsys.readouterr().out
    share = out[out.index("the cache's share"):]
    assert "m wnut16 K=3: recycled-lora - frozen-lora on seeds [0]: -1.00" in share
