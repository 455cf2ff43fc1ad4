"""The SQLite store: one row per key, upserts, JSON round trips, concurrent writers, CSV export."""

import csv
import multiprocessing as mp
import sqlite3

import pytest

from labelsmooth.experiment.store import Store, export_csv


def _record(key, status="done", acc=0.5, seed=0):
    return {
        "key": key,
        "status": status,
        "config": {"dataset": "digits", "seed": seed},
        "metrics": {"accuracy": acc} if status == "done" else None,
        "error": None if status == "done" else "TrainingDiverged: boom",
    }


def test_put_round_trips_json_and_replaces_by_key(tmp_path):
    path = tmp_path / "runs.sqlite"
    with Store(path) as s:
        s.put(_record("a", "failed"))
        s.put(_record("b", acc=0.25))
        s.put(_record("a", acc=0.75))  # the retried run replaces the failed row
        rows = s.runs()
    assert [(r["key"], r["status"], r["metrics"]) for r in rows] == [
        ("a", "done", {"accuracy": 0.75}),
        ("b", "done", {"accuracy": 0.25}),
    ]
    assert rows[0]["config"] == {"dataset": "digits", "seed": 0}
    with Store(path) as s:  # reopened: still there, still one row per key
        assert s.status() == {"a": "done", "b": "done"}
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM runs").fetchone() == (2, 2)


def test_status_must_be_done_or_failed(tmp_path):
    with Store(tmp_path / "s.sqlite") as s, pytest.raises(ValueError, match="`status`"):
        s.put(_record("a", status="running"))


def _writer(path, prefix, n):
    with Store(path) as s:
        for i in range(n):
            s.put(_record(f"{prefix}{i}", acc=i / n))
            s.put(_record("shared", acc=0.5))  # both processes also hammer one common key


def test_several_processes_write_one_store_at_once(tmp_path):
    path = str(tmp_path / "s.sqlite")
    Store(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, p, 40)) for p in ("x", "y", "z")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)  # generous: spawned writers import torch, slow on a busy machine
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with Store(path) as s:
        keys = [r["key"] for r in s.runs()]
    assert len(keys) == len(set(keys)) == 3 * 40 + 1


def test_export_csv_flattens_config_and_metrics(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.put(_record("a", acc=0.5, seed=3))
        s.put(_record("b", "failed"))
        n = export_csv(s.runs(), tmp_path / "out.csv")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert n == 2
    assert rows[0]["key"] == "a" and rows[0]["seed"] == "3" and rows[0]["metric_accuracy"] == "0.5"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "TrainingDiverged: boom"
