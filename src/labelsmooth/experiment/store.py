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

Table ``claims`` holds the runs that sweeps are training now: ``key``, ``owner`` (``host:pid:random``, one
per sweep) and ``expires`` (a UNIX time). A sweep claims a run before it starts it and renews its claims
while it runs (:meth:`Store.claim`, :meth:`Store.renew`); storing the result deletes the claim in the same
transaction. A claim whose lease has expired, or whose owner is a dead process on this machine, is free
again, so several sweeps on one store split the work without duplicates, and nothing is lost when one of
them is killed (even with SIGKILL).

Every finished run is written in ONE transaction (an upsert on ``key``), so a process killed at any moment
leaves either the old row or the new one, never half of one. Writers wait for each other
(``busy_timeout``) and retry on ``database is locked``, so several sweeps can share a store.

``Store(path, readonly=True)`` only reads: it opens the file read-only and changes nothing (no journal
mode, no tables), so a store on a read-only mount can be reported and exported. A file that is not a
store (corrupt, truncated, not SQLite, no ``runs`` table) raises :class:`StoreError` naming the file; a
row that cannot be decoded raises it naming the file, the row's key and the column.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator

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
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
"""
JSON_COLUMNS = ("config", "metrics", "curves", "reliability", "timings", "versions", "machine", "extra")
COLUMNS = ("key", "status", *JSON_COLUMNS[:4], "error", *JSON_COLUMNS[4:], "backend", "created", "finished")
BUSY_TIMEOUT_MS = 60_000
RETRIES = 20


class StoreError(ValueError):
    """A store file that cannot be read as a store, or a broken row in it; the message names the file
    (and the row's key and column)."""


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def owner_id() -> str:
    """A claim owner for this process: ``host:pid:random`` (the random part tells apart reused pids)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def _owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is a process on this machine that no longer runs (its claims are free)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's sweep: only its lease can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but is not ours (EPERM)
        return False
    return False


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

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        if readonly:
            if not os.path.isfile(self.path):
                raise StoreError(f"No store at {self.path} (no such file)")
            self._db = self._connect_readonly()
            self._check_schema()
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise self._write_error(exc) from None
        for target in (parent, self.path):  # SQLite needs to write the file and its -wal/-shm next to it
            if os.path.exists(target) and not os.access(target, os.W_OK):
                import errno

                readonly = os.statvfs(target).f_flag & os.ST_RDONLY
                raise self._write_error(
                    OSError(errno.EROFS if readonly else errno.EACCES, f"{target} cannot be written")
                )
        if os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            self._db = self._connect(self.path)
            try:  # before writing anything into a file that may not be a store; a file with no tables yet
                self._check_schema(allow_empty=True)  # is a store another sweep is creating right now
            finally:
                self._db.close()
        self._db = self._connect(self.path)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL"))
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._transaction():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._tables = {"runs", "sweeps", "predictions", "claims"}
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._error(exc) from None

    @staticmethod
    def _connect(target: str, **kwargs) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, **kwargs)
        db.row_factory = sqlite3.Row
        return db

    def _connect_readonly(self) -> sqlite3.Connection:
        """Open read-only. A WAL store in a read-only folder without its -shm file cannot be opened with
        ``mode=ro`` (SQLite needs to create -shm); then it is opened ``immutable`` (nobody can write there)."""
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        db = self._connect(uri + "?mode=ro", uri=True)
        try:
            db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.DatabaseError as exc:
            db.close()
            if not isinstance(exc, sqlite3.OperationalError) or (
                "unable to open" not in str(exc) and "readonly" not in str(exc)
            ):
                raise self._error(exc) from None
        wal = self.path + "-wal"
        if os.path.isfile(wal) and os.path.getsize(wal) > 0:  # immutable would silently skip its runs
            raise StoreError(
                f"Cannot read the store {self.path} read-only: its last writes are still in {wal}, which SQLite "
                "can only merge where it may write; copy the store and its -wal file to a writable folder"
            )
        return self._connect(uri + "?mode=ro&immutable=1", uri=True)

    def _error(self, exc: BaseException, what: str = "") -> StoreError:
        return StoreError(
            f"Cannot read the store {self.path}{what}: {exc} (a corrupt or truncated file, or not a "
            "labelsmooth store; a store is the SQLite file `labelsmooth sweep --store` writes)"
        )

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Run a read, turning SQLite's errors on a broken file into a :class:`StoreError` naming it."""

        def read():
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
                    raise
                raise self._error(exc) from None

        return self._retry(read)

    def _check_schema(self, allow_empty: bool = False) -> None:
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if allow_empty and not tables:
            return
        if "runs" not in tables:
            raise StoreError(
                f"Expected a labelsmooth store (an SQLite file with a `runs` table) at {self.path}, but it holds "
                f"{'no tables' if not tables else 'the tables ' + ', '.join(sorted(tables))}"
            )
        columns = {r[1] for r in self._query("PRAGMA table_info(runs)")}
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise StoreError(f"Expected the `runs` table of {self.path} to have the columns {missing}, but it has not")
        self._tables = tables

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
                if not _is_busy(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _write(self, fn):
        """Run ``fn`` (a transaction) with retries; a full disk or a read-only file becomes a WriteError."""
        if self.readonly:
            raise StoreError(f"The store {self.path} was opened read-only")
        try:
            return self._retry(fn)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "full" in text or "readonly" in text or "disk I/O" in text:
                import errno

                code = errno.ENOSPC if "full" in text else errno.EROFS if "readonly" in text else errno.EIO
                raise self._write_error(OSError(code, text)) from None
            raise
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def _write_error(self, exc: OSError):
        from labelsmooth.experiment.atomic import write_error

        return write_error(self.path, exc, f"the store {self.path}")

    def put(self, record: dict, owner: str | None = None) -> None:
        """Write one run (insert, or replace the row with the same key) in one transaction; with
        ``owner``, release that owner's claim on the run in the same transaction."""
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
                if owner is not None:
                    self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (row["key"], owner))

        self._write(write)

    def predictions(self, keys: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
        """``{key: {part: {"logits": float16 (n, K), "labels": int64 (n,)}}}`` of the stored runs.

        ``keys`` restricts it to those runs (default: every run with predictions).
        """
        import numpy as np

        wanted = None if keys is None else set(keys)
        out: dict[str, dict[str, dict]] = {}
        if "predictions" not in getattr(self, "_tables", {"predictions"}):
            return out  # a read-only store written before predictions were kept
        for key, part, rows, cols, logits, labels in self._query(
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
        return {r[0]: r[1] for r in self._query("SELECT key, status FROM runs")}

    def runs(self, status: str | None = None, *, validate: bool = False) -> list[dict]:
        """Every stored run as a dict (JSON columns decoded), ordered by key.

        A row that cannot be decoded raises :class:`StoreError` naming the file, the row's key and the
        column; with ``validate``, so does a config that :meth:`RunConfig.validate` refuses (e.g. an
        unknown data set).
        """
        sql, args = "SELECT * FROM runs", ()
        if status is not None:
            sql, args = sql + " WHERE status = ?", (status,)
        out = []
        for r in self._query(sql + " ORDER BY key", args):
            d = dict(r)
            for c in JSON_COLUMNS:
                if d.get(c) is not None:
                    try:
                        d[c] = json.loads(d[c])
                    except (TypeError, ValueError) as exc:
                        raise self._row_error(d, c, f"is not valid JSON ({exc}): {str(d[c])[:60]!r}") from None
            self._check_row(d, validate)
            out.append(d)
        return out

    def _row_error(self, row: dict, column: str, problem: str) -> StoreError:
        return StoreError(
            f"Broken row in the store {self.path}: row key={row.get('key')!r}, column `{column}` {problem}"
        )

    def _check_row(self, d: dict, validate: bool) -> None:
        if d["status"] not in ("done", "failed"):
            raise self._row_error(d, "status", f"should be 'done' or 'failed', but is {d['status']!r}")
        if not isinstance(d["config"], dict):
            raise self._row_error(d, "config", f"should be a JSON object, but is {type(d['config']).__name__}")
        if d["status"] == "done":
            metrics = d.get("metrics")
            if not isinstance(metrics, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
            ):
                raise self._row_error(d, "metrics", f"should be a JSON object of numbers, but is {metrics!r}"[:300])
        if validate:
            from labelsmooth.experiment.config import RunConfig

            try:
                RunConfig.from_dict(d["config"]).validate()
            except (TypeError, ValueError) as exc:
                raise self._row_error(d, "config", f"is not a valid run: {exc}") from None

    def start_sweep(self, command: str, backend: str, workers: int, runs: int, machine: dict) -> int:
        def write():
            with self._transaction():
                cur = self._db.execute(
                    "INSERT INTO sweeps (command, backend, workers, runs, machine, started) VALUES (?, ?, ?, ?, ?, ?)",
                    (command, backend, workers, runs, json.dumps(machine), time.time()),
                )
            return cur.lastrowid

        return self._write(write)

    def finish_sweep(self, sweep_id: int) -> None:
        now = time.time()

        def write():
            with self._transaction():
                self._db.execute(
                    "UPDATE sweeps SET finished = ?, wall_s = ? - started WHERE id = ?", (now, now, sweep_id)
                )

        self._write(write)

    def sweeps(self) -> list[dict]:
        """Every recorded sweep (none in a store written before the table existed)."""
        if "sweeps" not in getattr(self, "_tables", {"sweeps"}):
            return []
        out = []
        for r in self._query("SELECT * FROM sweeps ORDER BY id"):
            d = dict(r)
            try:
                d["machine"] = json.loads(d["machine"]) if d["machine"] else None
            except ValueError as exc:
                raise StoreError(
                    f"Broken row in the store {self.path}: sweep id={d.get('id')}, column `machine` is not valid "
                    f"JSON ({exc})"
                ) from None
            out.append(d)
        return out

    # --- claims: which sweep trains which run now ---------------------------------------------------

    def claim(self, key: str, owner: str, lease_s: float, *, retry_before: float | None = None) -> str:
        """Try to claim the run ``key`` for ``owner`` for ``lease_s`` seconds, in one transaction.

        Returns ``"claimed"`` (run it), ``"stored"`` (it is in the store already: done, or failed and
        not to be retried; with ``retry_before``, a failed run finished before that time is retried) or
        ``"taken"`` (another live sweep holds an unexpired claim on it).
        """

        def attempt():
            now = time.time()
            with self._transaction():
                row = self._db.execute("SELECT status, finished FROM runs WHERE key = ?", (key,)).fetchone()
                if row is not None and (
                    row["status"] == "done" or retry_before is None or (row["finished"] or 0) >= retry_before
                ):
                    return "stored"
                held = self._db.execute("SELECT owner, expires FROM claims WHERE key = ?", (key,)).fetchone()
                if held is not None and held["owner"] != owner and held["expires"] > now:
                    if not _owner_is_dead(held["owner"]):
                        return "taken"
                self._db.execute(
                    "INSERT INTO claims (key, owner, expires) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
                    (key, owner, now + lease_s),
                )
                return "claimed"

        return self._write(attempt)

    def renew(self, owner: str, lease_s: float) -> int:
        """Extend every claim of ``owner`` to ``lease_s`` seconds from now; returns how many it holds."""

        def write():
            with self._transaction():
                return self._db.execute(
                    "UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease_s, owner)
                ).rowcount

        return self._write(write)

    def release(self, owner: str, keys: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims (all of them, or those on ``keys``)."""

        def write():
            with self._transaction():
                if keys is None:
                    self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
                else:
                    self._db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", [(k, owner) for k in keys])

        self._write(write)

    def claims(self) -> dict[str, tuple[str, float]]:
        """``{key: (owner, expires)}`` of every claim (expired ones included)."""
        if "claims" not in getattr(self, "_tables", {"claims"}):
            return {}
        return {r[0]: (r[1], r[2]) for r in self._query("SELECT key, owner, expires FROM claims")}


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
    """Write runs as CSV (config fields and metrics flattened to columns); returns the number of rows.

    The file is written atomically: a failure (e.g. a full disk) raises
    :class:`~labelsmooth.experiment.atomic.WriteError` and leaves no partial file.
    """
    import csv

    from labelsmooth.experiment.atomic import atomic_write

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
    with atomic_write(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def distinct_sweeps(sweeps: Iterable[dict]) -> list[dict]:
    """The sweeps of several stores, each once, in the order they started, numbered from 1 (``id``).

    One sweep is one command line started at one time: stores merged or exported from one another hold
    copies of the same rows (:func:`copy_for_report` keeps each once by the same rule).

    Example:
        >>> a = {"id": 7, "command": "labelsmooth sweep", "started": 2.0}
        >>> b = {"id": 3, "command": "labelsmooth reproduce", "started": 1.0}
        >>> [(s["id"], s["command"]) for s in distinct_sweeps([a, b, dict(a, id=1)])]
        [(1, 'labelsmooth reproduce'), (2, 'labelsmooth sweep')]
    """
    seen: dict[tuple, dict] = {}
    for s in sweeps:
        seen.setdefault((s.get("command"), s.get("started")), s)
    ordered = sorted(seen.values(), key=lambda s: (s.get("started") is None, s.get("started") or 0.0))
    return [dict(s, id=i) for i, s in enumerate(ordered, 1)]


def copy_for_report(
    stores: Store | list[Store],
    path: str | os.PathLike,
    keep: Iterable[str],
    parts: tuple[str, ...] = ("test",),
    runs: Iterable[str] | None = None,
) -> dict:
    """Copy one or more stores into one at ``path`` with only the predictions a report reads.

    Every run and sweep row of ``stores`` is copied (a key in several stores: the first store's row), or
    only the runs ``runs`` names when given. The predictions kept are those of the runs ``keep`` names,
    for ``parts`` (the statistics read the test part of the final runs only); claims are dropped. The copy
    is a store like any other (``labelsmooth report`` reads it, a sweep resumes into it) and much smaller:
    the stored logits are almost all of a store's size. Written to a temporary file beside ``path`` and
    moved into place, so a failure leaves no partial store.

    Returns ``{"runs", "predictions", "bytes"}`` of the copy.
    """
    import tempfile

    stores = [stores] if isinstance(stores, Store) else list(stores)
    if not stores:
        raise ValueError("Expected at least one store to copy, but got none")
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-store-", suffix=".sqlite", dir=folder)
    os.close(fd)
    os.unlink(tmp)  # VACUUM INTO wants a new file
    sweep_columns = "command, backend, workers, runs, machine, started, finished, wall_s"
    try:
        stores[0]._db.execute("VACUUM INTO ?", (tmp,))
        from urllib.parse import quote

        db = sqlite3.connect(f"file:{quote(tmp)}", uri=True, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = DELETE")
            for other in stores[1:]:
                db.execute("ATTACH DATABASE ? AS other", (f"file:{quote(os.path.abspath(other.path))}?mode=ro",))
                db.execute("INSERT OR IGNORE INTO runs SELECT * FROM other.runs")
                db.execute("INSERT OR IGNORE INTO predictions SELECT * FROM other.predictions")
                db.execute(
                    f"INSERT INTO sweeps ({sweep_columns}) SELECT {sweep_columns} FROM other.sweeps AS o WHERE NOT "
                    "EXISTS (SELECT 1 FROM sweeps AS s WHERE s.command IS o.command AND s.started IS o.started)"
                )
                db.execute("DETACH DATABASE other")
            db.execute("CREATE TEMP TABLE keep (key TEXT PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", [(k,) for k in keep])
            if runs is not None:
                db.execute("CREATE TEMP TABLE chosen (key TEXT PRIMARY KEY)")
                db.executemany("INSERT OR IGNORE INTO chosen VALUES (?)", [(k,) for k in runs])
                db.execute("DELETE FROM runs WHERE key NOT IN (SELECT key FROM chosen)")
                db.execute("DELETE FROM keep WHERE key NOT IN (SELECT key FROM chosen)")
            marks = ",".join("?" * len(parts))
            db.execute(
                f"DELETE FROM predictions WHERE key NOT IN (SELECT key FROM keep) OR part NOT IN ({marks})", parts
            )
            db.execute("DELETE FROM claims")
            db.execute("VACUUM")
            counts = {
                "runs": db.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
                "predictions": db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0],
            }
        finally:
            db.close()
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            from labelsmooth.experiment.atomic import write_error

            raise write_error(target, exc, f"the report store {target}") from None
        raise stores[0]._error(exc, f" (copying it to {target})") from None
    return counts | {"bytes": os.path.getsize(target)}
