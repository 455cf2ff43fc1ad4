"""Per-example predictions in the store: a bit-exact round trip, metrics that recompute from them, and
stores written before them."""

import json
import sqlite3

import numpy as np
import pytest
import torch

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.metrics import protocol_metrics
from labelsmooth.experiment.runner import run_one
from labelsmooth.experiment.stats import analyse
from labelsmooth.experiment.store import Store


def test_predictions_survive_a_round_trip_and_the_metrics_recompute_from_them(tmp_path):
    config = RunConfig("digits", "mlp", epochs=1, train_size=200, test_size=100)
    record = run_one(config.to_dict(), threads=1)
    with Store(tmp_path / "s.sqlite") as s:
        s.put(record)
        stored = s.predictions()[config.key()]
        (row,) = s.runs()
    for part in ("val", "test"):
        sent = record["predictions"][part]
        assert stored[part]["logits"].dtype == np.float16 and stored[part]["logits"].shape == sent["logits"].shape
        assert stored[part]["logits"].tobytes() == np.asarray(sent["logits"], dtype=np.float16).tobytes()
        assert np.array_equal(stored[part]["labels"], sent["labels"])
    v, t = stored["val"], stored["test"]
    again = protocol_metrics(
        torch.from_numpy(v["logits"]), torch.from_numpy(v["labels"]),
        torch.from_numpy(t["logits"]), torch.from_numpy(t["labels"]),
    )  # fmt: skip
    assert again == row["metrics"]  # exactly: the run's metrics were computed from the same float16 logits


def test_predictions_cost_two_bytes_per_logit_and_per_label(tmp_path):
    z = np.random.default_rng(0).normal(size=(450, 10)).astype(np.float16)
    record = {
        "key": "k",
        "status": "done",
        "config": {},
        "predictions": {"test": {"logits": z, "labels": np.zeros(450)}},
    }
    with Store(tmp_path / "s.sqlite") as s:
        s.put(record)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        sizes = db.execute("SELECT length(logits), length(labels) FROM predictions").fetchone()
    assert sizes == (450 * 10 * 2, 450 * 2)


def test_bad_predictions_are_refused_naming_the_part(tmp_path):
    record = {
        "key": "k",
        "status": "done",
        "config": {},
        "predictions": {"train": {"logits": np.zeros((2, 2)), "labels": np.zeros(2)}},
    }
    with Store(tmp_path / "s.sqlite") as s:
        with pytest.raises(ValueError, match="parts 'val' and 'test', but got 'train'"):
            s.put(record)
        assert s.runs() == []  # nothing half-written: the run's row is not stored without its predictions


def test_a_store_written_before_the_protocol_still_loads_and_says_so(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the schema and a row as the harness wrote them before this change
        db.execute(
            "CREATE TABLE runs (key TEXT PRIMARY KEY, status TEXT NOT NULL, config TEXT NOT NULL, metrics TEXT, "
            "curves TEXT, reliability TEXT, error TEXT, timings TEXT, versions TEXT, machine TEXT, extra TEXT, "
            "backend TEXT, created REAL, finished REAL NOT NULL)"
        )
        old = {k: v for k, v in RunConfig("digits", "mlp").to_dict().items() if k not in ("split", "val_fraction")}
        for seed, loss, gamma, acc in ((0, "ce", None, 0.96), (0, "ls", 0.9, 0.97)):
            cfg = {**old, "seed": seed, "loss": loss, "gamma": gamma}
            db.execute(
                "INSERT INTO runs (key, status, config, metrics, finished) VALUES (?, 'done', ?, ?, 1.0)",
                (f"{loss}{seed}", json.dumps(cfg), json.dumps({"accuracy": acc, "nll": 0.1, "ece": 0.02})),
            )
    with Store(path) as s:
        runs, preds = s.runs(), s.predictions()
    assert len(runs) == 2 and preds == {}
    a = analyse(runs, preds)
    assert a.legacy == 2
    assert a.verdicts["digits"].startswith("digits: no verdict: the runs have no stored test predictions")


def test_an_old_store_with_several_learning_rates_is_refused_with_a_clear_message():
    old = {k: v for k, v in RunConfig("digits", "mlp").to_dict().items() if k not in ("split", "val_fraction")}
    runs = [
        {"key": str(lr), "status": "done", "config": {**old, "lr": lr}, "metrics": {"accuracy": 0.9}}
        for lr in (1e-3, 2e-3)
    ]
    with pytest.raises(ValueError, match="written before the validation split"):
        analyse(runs)
