"""``labelsmooth train``: a run end to end, and bad arguments as one line with a non-zero exit."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from _harness_runs import TINY_ARGS, cli

from labelsmooth.cli import main

TINY = ["--dataset", "digits", *TINY_ARGS, "--no-progress", "--threads", "1"]


def test_train_writes_json_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["train", *TINY, "--loss", "ls", "--gamma", "0.9", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "digits/mlp γ=0.9 seed=0" in text and "accuracy" in text and "logit_gap" in text
    record = json.loads(out.read_text())
    assert record["config"]["gamma"] == 0.9 and record["config"]["model"] == "mlp"  # auto resolved
    assert set(record) >= {"config", "metrics", "curves", "timings", "versions"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "imagenet"], "unknown data set 'imagenet'"),
        (["--model", "vgg"], "Expected --model to be one of"),
        (["--loss", "ls", "--gamma", "0.1"], r"Expected --gamma .* \(1/K, 1\] = \(0.1, 1\]"),
        (["--loss", "ls"], "exactly one of --gamma and --smoothing"),
        (["--gamma", "0.9"], "need --loss ls"),
        (["--loss", "ls", "--gamma", "0.9", "--convention", "others"], "--convention goes with --smoothing"),
        (["--beta", "0.5"], "--beta needs --loss cp"),
        (["--batch-size", "0"], "Expected --batch-size to be an integer >= 1"),
        (["--data-dir", "/nonexistent/folder"], "--data-dir '/nonexistent/folder' is not a folder"),
        (["--optimizer", "sgd", "--lr", "1e10"], "Training diverged"),
    ],
)
def test_bad_arguments_are_one_line(args, message, capsys):
    argv = [a for a in TINY if a not in ("--dataset", "digits")] if "--dataset" in args else TINY
    assert main(["train", *argv, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labelsmooth train: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_missing_data_folder_in_a_subprocess_has_no_traceback(tmp_path):
    args = ("train", "--dataset", "cifar10", "--data-dir", str(tmp_path))
    cmd, env = cli(*args, XDG_CACHE_HOME=str(tmp_path), LABELSMOOTH_DATA="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "No cifar10 batches" in proc.stderr
