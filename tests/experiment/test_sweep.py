"""Sweep reliability (issue 5 §7): metrics depend only on the config; SIGKILL then resume equals an
uninterrupted sweep; concurrent sweeps share a store; failures are recorded and retried only on request.

Tiny runs (digits, 200 training examples, 1 epoch) keep this fast.
"""

import signal
import sqlite3
import subprocess
import time

import pytest
from _harness_runs import TINY, TINY_ARGS, cli

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.runner import run_one, sweep
from labelsmooth.experiment.store import Store


def tiny(seed=0, **kw):
    return RunConfig("digits", "mlp", seed=seed, **{**TINY, **kw})


#: The default protocol's runs of ``_sweep_args(store, 4)``: 2 settings × 4 search points (seed 0) tuning trials,
#: then seeds 1-3 of each setting at its selected point.
PROTOCOL_RUNS = 2 * 4 + 2 * 3


def _sweep_args(store, seeds, *extra):
    fixed = "sweep --datasets digits --models mlp --gammas 0.9 --no-progress".split()
    return (*fixed, "--seeds", str(seeds), *TINY_ARGS, "--store", str(store), *extra)


def _table(path):
    with Store(path) as s:
        return {r["key"]: (r["status"], r["metrics"]) for r in s.runs()}


def test_a_run_stores_metrics_curves_and_reliability_bins():
    r = run_one(tiny().to_dict(), threads=1)
    assert r["status"] == "done" and r["key"] == tiny().key()
    assert sum(r["reliability"]["count"]) == TINY["test_size"]
    assert len(r["curves"]["train_loss"]) == 1 and 0 <= r["metrics"]["accuracy"] <= 1
    b = r["reliability"]  # the bins reproduce the run's own accuracy and (torchmetrics) ECE
    n = sum(b["count"])
    assert sum(a * c for a, c in zip(b["accuracy"], b["count"]) if c) / n == pytest.approx(r["metrics"]["accuracy"])
    ece = sum(c / n * abs(a - f) for a, f, c in zip(b["accuracy"], b["confidence"], b["count"]) if c)
    assert ece == pytest.approx(r["metrics"]["ece"], abs=1e-6)


def test_failing_run_is_recorded_sweep_continues_and_retries_only_on_request(tmp_path):
    store = str(tmp_path / "s.sqlite")
    grid = [tiny(lr=1e12), tiny(seed=1)]  # lr 1e12 diverges to NaN at the second step
    assert sweep(grid, store, workers=1, progress=False) == {"total": 2, "skipped": 0, "done": 1, "failed": 1}
    with Store(store) as s:
        failed = s.runs(status="failed")
    assert [r["key"] for r in failed] == [grid[0].key()]
    assert failed[0]["error"].startswith("TrainingDiverged: Training diverged: the loss is nan")
    assert sweep(grid, store, workers=1, progress=False)["skipped"] == 2  # not retried by default
    first = failed[0]["finished"]
    counts = sweep(grid, store, workers=1, progress=False, retry_failed=True)
    assert counts == {"total": 2, "skipped": 1, "done": 0, "failed": 1}
    with Store(store) as s:
        again = s.runs(status="failed")
        assert len(s.runs()) == 2
    assert again[0]["finished"] > first


@pytest.mark.slow
def test_same_config_same_metrics_in_process_and_in_a_worker_pool(tmp_path):
    grid = [tiny(seed=s, loss="ls", gamma=0.9) for s in range(2)]
    sweep(grid, str(tmp_path / "pool.sqlite"), workers=2, progress=False)  # 2 spawned workers, 1 thread each
    in_process = {c.key(): run_one(c.to_dict(), threads=1)["metrics"] for c in grid}
    assert {k: m for k, (_, m) in _table(tmp_path / "pool.sqlite").items()} == in_process


@pytest.mark.slow
def test_sigkill_mid_sweep_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    killed, clean = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    cmd, env = cli(*_sweep_args(killed, 4, "--workers", "1"))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # generous: a busy machine may take minutes to store two runs
    while time.time() < deadline:  # kill once some, but not all, runs are stored
        time.sleep(0.05)
        if killed.exists():
            with sqlite3.connect(killed) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] >= 2:
                        break
                except sqlite3.OperationalError:
                    pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = _table(killed)
    assert 2 <= len(stored) < PROTOCOL_RUNS, "the kill should land mid-sweep"
    for args in (_sweep_args(killed, 4, "--workers", "1"), _sweep_args(clean, 4, "--workers", "1")):
        cmd, env = cli(*args)
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    resumed = _table(killed)
    assert resumed == _table(clean) and len(resumed) == PROTOCOL_RUNS  # trials and final runs
    assert all(resumed[k] == v for k, v in stored.items())  # runs stored before the kill were kept, not redone
    with sqlite3.connect(killed) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone() == (PROTOCOL_RUNS,) * 2
        assert (
            db.execute("SELECT COUNT(*), COUNT(DISTINCT key || part) FROM predictions").fetchone()
            == (2 * PROTOCOL_RUNS,) * 2
        )  # every run's val and test predictions, written with its row
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.slow
def test_two_sweeps_write_one_store_at_once(tmp_path):
    store = tmp_path / "shared.sqlite"
    # overlapping grids: seeds 0-2 and 0-3 (trials and seeds 1-2 may run in both; the key keeps one row each)
    procs = []
    for seeds in (3, 4):
        cmd, env = cli(*_sweep_args(store, seeds, "--workers", "1"))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err.decode()
    table = _table(store)
    assert len(table) == PROTOCOL_RUNS and {s for s, _ in table.values()} == {"done"}
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone() == (PROTOCOL_RUNS,) * 2


def test_cli_errors_are_one_line(tmp_path):
    cmd, env = cli("sweep", "--store", str(tmp_path / "s.sqlite"))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--datasets" in r.stderr


def test_cli_sweep_from_toml_then_export_csv(tmp_path):
    (tmp_path / "grid.toml").write_text(
        '[sweep]\ndatasets = ["digits"]\nmodels = ["mlp"]\nbetas = [0.5]\nseeds = 1\nepochs = 1\n'
        "train_size = 200\ntest_size = 100\n"
    )
    store = tmp_path / "s.sqlite"
    cmd, env = cli("sweep", "--config", str(tmp_path / "grid.toml"), "--store", str(store), "--workers", "1")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (  # the default protocol: 2 settings × 4 search points; 1 seed, so no more
        f"8 tuning trials (0 already in {store}, 8 done, 0 failed); "
        "2 final runs (2 already there or trials, 0 done, 0 failed)"
    )
    assert "sweep: 100%" in r.stderr  # the progress bar
    cmd, env = cli("export", "--store", str(store), "--csv", str(tmp_path / "out.csv"))
    assert subprocess.run(cmd, env=env, capture_output=True, text=True).returncode == 0
    import csv

    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert sorted(row["loss"] for row in rows) == ["ce"] * 4 + ["cp"] * 4
    assert {row["key"] for row in rows} == set(_table(store))
