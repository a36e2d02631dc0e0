"""bench.cli and the bench commands' edges: one line and exit 2 for bad input, before any work."""

import pytest

from bench import precision, report, roofline, scale
from bench.cli import at_least, layer_list, output_file_problem, output_folder_problem


def test_at_least_parses_integers_from_its_bound():
    import argparse

    assert at_least(1)("1") == 1 and at_least(0)("0") == 0
    for text, message in [("0", "must be at least 1, got 0"), ("x", "invalid int value: 'x'"),
                          ("1.5", "invalid int value: '1.5'")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            at_least(1)(text)


def test_layer_list_parses_k_ranges_and_all():
    import argparse

    assert layer_list("3,6,9") == (3, 6, 9)
    assert layer_list("1-3, 8,2") == (1, 2, 3, 8)  # sorted, each K once
    assert layer_list("5") == (5,) and layer_list("all") == "all"
    for text, message in [("0", "'0': K must be at least 1"), ("3-1", "'3-1': a range runs "
                          "low-high"), ("x", "'x' is not K or a range K-K"),
                          ("2,", "'' is not K"), ("-1", "'-1' is not K")]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            layer_list(text)


def test_output_file_problem_names_the_flag_and_what_is_wrong(tmp_path):
    assert output_file_problem("--out", str(tmp_path / "new.json")) is None
    assert output_file_problem("--out", str(tmp_path)) == (
        f"--out {tmp_path}: is a folder; pass a file name")
    assert "is not a folder this user can write to" in output_file_problem(
        "--out", str(tmp_path / "no" / "x.json"))


def test_unwritable_paths_are_named(tmp_path, monkeypatch):
    """Tests run as root, for whom os.access always says yes: a user without write access is
    played by os.access saying no for the one path."""
    import os

    locked = str(tmp_path / "locked")
    os.makedirs(locked)
    (tmp_path / "kept.json").write_text("{}")
    refused = {locked, str(tmp_path / "kept.json")}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: p not in refused and real_access(p, mode))
    assert output_folder_problem("--work", locked) == (
        f"--work {locked}: this user cannot write to it")
    assert output_folder_problem("--work", locked + "/runs") == (
        f"--work {locked}/runs: {locked} is not a folder this user can write to")
    assert output_file_problem("--out", str(tmp_path / "kept.json")) == (
        f"--out {tmp_path / 'kept.json'}: this user cannot write to it")
    assert output_folder_problem("--work", str(tmp_path / "new")) is None


@pytest.mark.parametrize("command, argv, message", [
    (precision, ["--docs", "0"], "python -m bench.precision: error: argument --docs: must be at "
                                 "least 1, got 0 (see --help)"),
    (precision, ["--threads", "-1"], "python -m bench.precision: error: argument --threads: must "
                                     "be at least 1, got -1 (see --help)"),
    (roofline, ["--layer", "2", "--docs", "0"], "python -m bench.roofline: error: argument --docs: "
                                                "must be at least 1, got 0 (see --help)"),
    (scale, ["corpus", "--docs", "-1", "--out", "c.jsonl"], "python -m bench.scale corpus: error: "
     "argument --docs: must be at least 1, got -1 (see --help)"),
    (scale, ["open", "--records", "0", "--dir", "d"], "python -m bench.scale open: error: argument "
     "--records: must be at least 1, got 0 (see --help)"),
    (scale, ["build", "--seconds", "0", "--out", "o"], "python -m bench.scale build: error: "
     "argument --seconds: must be at least 1, got 0 (see --help)"),
    # bench.report checked these by hand after parsing, in other words than the others
    (report, ["--threads", "-2"], "python -m bench.report: error: argument --threads: must be "
                                  "at least 1, got -2 (see --help)"),
    (report, ["--threads", "0"], "python -m bench.report: error: argument --threads: must be "
                                 "at least 1, got 0 (see --help)"),
    (report, ["--docs", "19"], "python -m bench.report: error: argument --docs: must be at "
                               "least 20, got 19 (see --help)"),
    (report, ["--accuracy-docs", "1"], "python -m bench.report: error: argument --accuracy-docs: "
                                       "must be at least 20, got 1 (see --help)"),
    (report, ["--layers", "0,3"], "python -m bench.report: error: argument --layers: '0': K must "
                                  "be at least 1 (see --help)"),
    (report, ["--accuracy-epochs", "0"], "python -m bench.report: error: argument "
                                         "--accuracy-epochs: must be at least 1, got 0 (see "
                                         "--help)"),
])
def test_a_bad_number_is_a_usage_line(command, argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        command.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == message + "\n"


def test_report_refuses_a_k_the_model_lacks_before_any_build(capsys, monkeypatch):
    import bench.endtoend

    monkeypatch.setattr(bench.endtoend, "build_timed", lambda *a, **k: pytest.fail("built"))
    assert report.main(["--layers", "2,6", "--no-accuracy"]) == 2
    assert capsys.readouterr().err == "error: --layers 6: K must be 1 .. 5 for a 6-layer model\n"


def test_precision_at_layer_0_is_refused_not_measured(capsys):
    # K = 0 once loaded a model of no layers and reported its "bf16 error"
    assert precision.main(["--layer", "0", "--docs", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: layer K=0 is out of range for this 6-layer")


def test_scale_paths_that_fail_are_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert scale.main(["corpus", "--docs", "2", "--out", str(tmp_path / "no" / "c.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/no/c.jsonl: no such file or folder\n"
    assert scale.main(["open", "--records", "2", "--dir", str(tmp_path / "f")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("returncode, exit_code", [(0, 0), (130, 0), (2, 2)])
def test_scale_build_exits_with_the_build_s_failure(returncode, exit_code, monkeypatch, tmp_path):
    # 130 is the SIGINT the watch sends when its time is up: a measurement, not a failure
    monkeypatch.setattr(scale, "watch_build", lambda *a: {"returncode": returncode})
    assert scale.main(["build", "--out", str(tmp_path / "o"), "--", "--layer", "3"]) == exit_code
