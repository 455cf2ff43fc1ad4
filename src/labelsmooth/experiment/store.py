"""The experiment store: one SQLite file (standard library, WAL mode), one row per run.

Table ``runs`` (one row per :meth:`RunConfig.key`):

======================  =======================================================================
column                  content
======================  =======================================================================
key                     the config's stable hash (primary key, so never duplicated)
status                  ``done`` or ``failed``
config                  JSON of :meth:`RunConfig.to_dict`
metrics                 JSON of the metrics ``train()`` returns (accuracy, nll, ece, ...); NULL if failed
curves                  JSON: per-epoch ``train_loss`` and ``test_accuracy``
reliability             JSON: equal-width confidence bins (``count``, ``accuracy``, ``confidence``)
error                   the exception, ``Type: message`` (NULL when done)
timings, versions,      JSON, as ``train()`` returns them; ``extra`` holds ``settings`` and ``data``
machine, extra
backend                 ``local`` or ``ray``
created, finished       UNIX times (seconds) when the run started and when the row was written
======================  =======================================================================

Table ``sweeps`` records each sweep's command line, machine and wall time (for the report).

Table ``predictions`` (one row per run and part, ``part`` = ``val`` or ``test``) keeps each run's final
logits as float16 (``rows`` × ``cols`` little-endian, C order) and the labels as little-endian int16, so
accuracy, calibration and every test of :mod:`labelsmooth.experiment.stats` recompute from the store. It
is written in the same transaction as the run's row. Size per run: 2·K + 2 bytes per example, e.g.
digits (270 validation + 450 test examples, K = 10) 15.8 kB, Fashion-MNIST (12,000 + 10,000) 484 kB.
Stores written before it existed open normally; their runs simply have no predictions.

Every finished run is written in ONE transaction (an upsert on ``key``), so a process killed at any moment
leaves either the old row or the new one, never half of one. Writers wait for each other
(``busy_timeout``) and retry on ``database is locked``, so several sweeps can share a store.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    config TEXT NOT NULL,
    metrics TEXT,
    curves TEXT,
    reliability TEXT,
    error TEXT,
    timings TEXT,
    versions TEXT,
    machine TEXT,
    extra TEXT,
    backend TEXT,
    created REAL,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT,
    backend TEXT,
    workers INTEGER,
    runs INTEGER,
    machine TEXT,
    started REAL,
    finished REAL,
    wall_s REAL
);
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT NOT NULL,
    part TEXT NOT NULL CHECK (part IN ('val', 'test')),
    rows INTEGER NOT NULL,
    cols INTEGER NOT NULL,
    logits BLOB NOT NULL,
    labels BLOB NOT NULL,
    PRIMARY KEY (key, part)
);
"""
JSON_COLUMNS = ("config", "metrics", "curves", "reliability", "timings", "versions", "machine", "extra")
COLUMNS = ("key", "status", *JSON_COLUMNS[:4], "error", *JSON_COLUMNS[4:], "backend", "created", "finished")
BUSY_TIMEOUT_MS = 60_000
RETRIES = 20


class Store:
    """An open experiment store.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "runs.sqlite")
        >>> with Store(path) as s:
        ...     s.put({"key": "k1", "status": "done", "config": {"seed": 0}, "metrics": {"accuracy": 0.9}})
        ...     s.put({"key": "k1", "status": "done", "config": {"seed": 0}, "metrics": {"accuracy": 0.8}})
        ...     [(r["key"], r["metrics"]["accuracy"]) for r in s.runs()]
        [('k1', 0.8)]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _retry(self, fn):
        for attempt in range(RETRIES):
            try:
                return fn()
            except sqlite3.OperationalError as exc:  # "database is locked" beyond busy_timeout
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(self, record: dict) -> None:
        """Write one run (insert, or replace the row with the same key) in one transaction."""
        if record.get("status") not in ("done", "failed"):
            raise ValueError(f"Expected `status` to be 'done' or 'failed', but got {record.get('status')!r}")
        row = dict(record)
        row.setdefault("finished", time.time())
        values = [
            json.dumps(row.get(c), sort_keys=True) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c)
            for c in COLUMNS
        ]
        sql = (
            f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            f"ON CONFLICT(key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[1:])}"
        )

        predictions = _prediction_rows(row["key"], row.get("predictions"))

        def write():
            with self._transaction():
                self._db.execute(sql, values)
                if predictions:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO predictions (key, part, rows, cols, logits, labels) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        predictions,
                    )

        self._retry(write)

    def predictions(self, keys: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
        """``{key: {part: {"logits": float16 (n, K), "labels": int64 (n,)}}}`` of the stored runs.

        ``keys`` restricts it to those runs (default: every run with predictions).
        """
        import numpy as np

        wanted = None if keys is None else set(keys)
        out: dict[str, dict[str, dict]] = {}
        for key, part, rows, cols, logits, labels in self._db.execute(
            "SELECT key, part, rows, cols, logits, labels FROM predictions ORDER BY key, part"
        ):
            if wanted is not None and key not in wanted:
                continue
            z = np.frombuffer(logits, dtype="<f2")
            y = np.frombuffer(labels, dtype="<i2")
            if z.size != rows * cols or y.size != rows:
                raise ValueError(
                    f"Expected {rows}×{cols} logits and {rows} labels for run {key} ({part}) in {self.path}, "
                    f"but the stored blobs hold {z.size} and {y.size} values: the store is damaged"
                )
            out.setdefault(key, {})[part] = {
                "logits": z.reshape(rows, cols).astype(np.float16),
                "labels": y.astype(np.int64),
            }
        return out

    def status(self) -> dict[str, str]:
        """``{key: status}`` of every stored run."""
        return {r[0]: r[1] for r in self._db.execute("SELECT key, status FROM runs")}

    def runs(self, status: str | None = None) -> list[dict]:
        """Every stored run as a dict (JSON columns decoded), ordered by key."""
        sql, args = "SELECT * FROM runs", ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        out = []
        for r in self._db.execute(sql + " ORDER BY key", args):
            d = dict(r)
            for c in JSON_COLUMNS:
                if d.get(c) is not None:
                    d[c] = json.loads(d[c])
            out.append(d)
        return out

    def start_sweep(self, command: str, backend: str, workers: int, runs: int, machine: dict) -> int:
        def write():
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO sweeps (command, backend, workers, runs, machine, started) VALUES (?, ?, ?, ?, ?, ?)",
                    (command, backend, workers, runs, json.dumps(machine), time.time()),
                )
            return cur.lastrowid

        return self._retry(write)

    def finish_sweep(self, sweep_id: int) -> None:
        now = time.time()

        def write():
            with self._transaction():
                self._db.execute(
                    "UPDATE sweeps SET finished = ?, wall_s = ? - started WHERE id = ?", (now, now, sweep_id)
                )

        self._retry(write)

    def sweeps(self) -> list[dict]:
        out = []
        for r in self._db.execute("SELECT * FROM sweeps ORDER BY id"):
            d = dict(r)
            d["machine"] = json.loads(d["machine"]) if d["machine"] else None
            out.append(d)
        return out


def _prediction_rows(key: str, predictions: dict | None) -> list[tuple]:
    """The ``predictions`` rows of one record: float16 logits and int16 labels as little-endian bytes."""
    import numpy as np

    rows = []
    for part, p in (predictions or {}).items():
        if part not in ("val", "test"):
            raise ValueError(f"Expected prediction parts 'val' and 'test', but got {part!r}")
        z = np.asarray(p["logits"])
        y = np.asarray(p["labels"])
        if z.ndim != 2 or y.shape != z.shape[:1]:
            raise ValueError(
                f"Expected {part} logits (n, K) and labels (n,), but got {z.shape} and {y.shape} for run {key}"
            )
        if z.shape[1] > 32767:
            raise ValueError(f"Expected at most 32,767 classes for int16 labels, but got {z.shape[1]}")
        rows.append((key, part, z.shape[0], z.shape[1], z.astype("<f2").tobytes(), y.astype("<i2").tobytes()))
    return rows


def export_csv(runs: Iterable[dict], path: str | os.PathLike) -> int:
    """Write runs as CSV (config fields and metrics flattened to columns); returns the number of rows."""
    import csv

    rows = []
    for r in runs:
        row = {"key": r["key"], "status": r["status"]}
        row.update(r.get("config") or {})
        row.update({f"metric_{k}": v for k, v in (r.get("metrics") or {}).items()})
        row["train_s"] = (r.get("timings") or {}).get("total")
        row["error"] = r.get("error")
        rows.append(row)
    fields: list[str] = []
    for row in rows:
        fields += [f for f in row if f not in fields]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return len(rows)
