"""The `labelsmooth explain` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelsmooth.cli import main

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_explain_shows_every_convention_and_the_sign(capsys):
    assert main(["explain", "--classes", "10", "--gamma", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "ε = 0.111111" in out and "ε = 0.1" in out and "γ = 0.9" in out
    assert "fairseq" in out and "torch" in out
    assert "with +KL (correct)" in out and "difference 0.0e+00" in out
    assert "4.39445" in out  # log(1 + 10·(1 − 1/9)/(1/9)) = log 81


def test_explain_from_a_framework_setting(capsys):
    assert main(["explain", "-K", "1000", "--smoothing", "0.1", "--convention", "torch"]) == 0
    assert "9.10" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["explain", "-K", "10", "--gamma", "0.05"], ["explain", "-K", "1", "--smoothing", "0.1"]]
)
def test_explain_bad_arguments_give_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("labelsmooth explain: error:")


def test_python_dash_m_works():
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run(
        [sys.executable, "-m", "labelsmooth", "explain", "-K", "3", "--gamma", "0.8"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert "others" in r.stdout


def test_explain_prints_how_each_framework_normalises(capsys):
    from labelsmooth.cli.explain import NORMALISATION
    from labelsmooth.conventions import FRAMEWORKS

    assert main(["explain", "-K", "10", "--smoothing", "0.1", "--convention", "fairseq"]) == 0
    out = capsys.readouterr().out
    assert set(NORMALISATION) == set(FRAMEWORKS)  # a note for every framework convert_smoothing knows
    for setting, note in NORMALISATION.values():
        assert f"{setting}: {note}" in out
    assert "sample_size" in out and "num_items_in_batch" in out


@pytest.mark.parametrize(
    "argv, flag, value",
    [
        (["-K", "1", "--smoothing", "0.1"], "--classes", "got 1"),
        (["-K", "10", "--gamma", "0.05"], "--gamma", "got 0.05"),
        (["-K", "10", "--gamma", "1.5"], "--gamma", "got 1.5"),
        (["-K", "10", "--smoothing", "-0.1"], "--smoothing", "got -0.1"),
        (["-K", "10", "--smoothing", "0.95", "--convention", "fairseq"], "--smoothing", "[0, 0.9)"),
        (["-K", "10", "--smoothing", "nan"], "--smoothing", "got nan"),
        (["-K", "10", "--smoothing", "0.1", "--convention", "bogus"], "--convention", "got 'bogus'"),
        (["-K", "10", "--smoothing", "0.1", "--convention", "gamma"], "--convention", "use --gamma"),
        (["-K", "10", "--gamma", "0.9", "--convention", "torch"], "--convention", "not to --gamma"),
    ],
)
def test_explain_errors_name_the_flag_not_an_internal_argument(argv, flag, value, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("labelsmooth explain: error:")
    assert flag in err and value in err
    for internal in ("`value`", "`num_classes`", "`source`", "`target`"):
        assert internal not in err
