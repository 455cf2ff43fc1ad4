"""Harness faults (issue 16): a corrupt or read-only store, a full disk, bad data, bad configs and
report.md's escaping. Every case ends in the right result or one clear line naming the file, row,
argument, rule and value, with its own exit code; never a traceback, never a lost result."""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _harness_files import write_idx_set
from _harness_runs import TINY_ARGS, cli, stored_run
from _mounts import FullDiskFile, readonly_folder, tiny_disk
from test_report import _runs as report_runs

from labelsmooth.cli import EXIT_USAGE, EXIT_WRITE, main
from labelsmooth.experiment.atomic import WriteError, atomic_write
from labelsmooth.experiment.data import IDX_FILES, DataError, DataNotFoundError, load, write_idx
from labelsmooth.experiment.grid import SpecError, build_grid, read_toml
from labelsmooth.experiment.report import write_report
from labelsmooth.experiment.store import Store, StoreError, export_csv

TRAIN = ["train", "--dataset", "digits", *TINY_ARGS, "--no-progress", "--threads", "1"]


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"labelsmooth {command}: error: "), err
    assert "Traceback" not in err
    return lines[-1]


def _store_with_runs(path: Path, n: int = 12) -> Path:
    with Store(path) as s:
        for r in report_runs()[:n]:
            s.put(r)
    return path


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LABELSMOOTH_DATA", raising=False)


# --- 1. a corrupt store ---------------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _random_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    lo, hi = len(data) // 4, 3 * len(data) // 4
    data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:100] = b"\xff" * 100
    path.write_bytes(bytes(data))


def _text_file(path: Path) -> None:
    path.write_text("key,status\nabc,done\n")


CORRUPTIONS = {"truncated": _truncated, "random-middle": _random_middle, "header": _garbage_header, "text": _text_file}


def _big_store(path: Path) -> Path:
    """A store of many pages, so that each corruption lands on data the commands read."""
    with Store(path) as s:
        for i in range(300):
            r = stored_run("digits", i, {"accuracy": 0.9, "nll": 0.3, "ece": 0.02, "logit_gap": 4.0})
            s.put({**r, "curves": {"train_loss": [1.0] * 50}})
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    return path


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("command", ["report", "export", "sweep"])
def test_a_corrupt_store_is_one_line_naming_the_file(tmp_path, capsys, corruption, command):
    store = _big_store(tmp_path / "runs.sqlite")
    CORRUPTIONS[corruption](store)
    argv = {
        "report": ["report", "--store", str(store), "--out", str(tmp_path / "r")],
        "export": ["export", "--store", str(store), "--csv", str(tmp_path / "out.csv")],
        "sweep": ["sweep", "--datasets", "digits", "--models", "mlp", "--seeds", "1", *TINY_ARGS]
        + ["--store", str(store), "--workers", "1", "--no-progress"],
    }[command]
    assert main(argv) == EXIT_USAGE
    line = _one_line_error(capsys, command)
    assert str(store) in line and re.search("corrupt|not a labelsmooth store|Broken row", line), line
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "r" / "report.md").exists()


def _tamper_with_run(store: Path, index: int, assignment: str) -> str:
    """Rewrite one stored run's row behind the store's back (``UPDATE runs SET <assignment>``); its key."""
    key = report_runs()[index]["key"]
    db = sqlite3.connect(store)
    db.execute(f"UPDATE runs SET {assignment} WHERE key = ?", (key,))
    db.commit()
    db.close()
    return key


def test_a_row_with_an_unknown_data_set_names_the_row(tmp_path, capsys):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    key = _tamper_with_run(store, 0, "config = json_set(config, '$.dataset', 'imagenet')")
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    line = _one_line_error(capsys, "report")
    assert f"key={key!r}" in line and "`config`" in line and "'imagenet'" in line and str(store) in line


def test_a_non_json_metrics_cell_names_the_row_and_column(tmp_path, capsys):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    key = _tamper_with_run(store, 3, "metrics = '{accuracy: 0.9'")
    for argv in (["export", "--store", str(store), "--csv", str(tmp_path / "o.csv")],):
        assert main(argv) == EXIT_USAGE
        line = _one_line_error(capsys, "export")
        assert f"key={key!r}" in line and "column `metrics` is not valid JSON" in line and str(store) in line
    with Store(store) as s, pytest.raises(StoreError, match=f"key={key!r}, column `metrics`"):
        s.runs()


def test_a_sqlite_file_that_is_not_a_store_is_refused_untouched(tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match=r"Expected a labelsmooth store .*other.sqlite.*the tables t"):
        Store(other)
    assert other.read_bytes() == before  # no tables were added to somebody else's database


def test_a_missing_store_is_one_line(tmp_path, capsys):
    assert main(["report", "--store", str(tmp_path / "nope.sqlite"), "--out", str(tmp_path / "r")]) == EXIT_USAGE
    assert "No store at" in _one_line_error(capsys, "report")
    assert not (tmp_path / "nope.sqlite").exists()  # reading never creates a store


# --- 2. a read-only store ------------------------------------------------------------------------------


def test_reading_a_store_changes_nothing_in_it(tmp_path):
    path = tmp_path / "legacy.sqlite"  # a store in rollback-journal mode without the newer tables
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (" + ", ".join(f"{c}" for c in _columns()) + ")")
    r = report_runs()[0]
    db.execute(
        "INSERT INTO runs (key, status, config, metrics, finished) VALUES (?, ?, ?, ?, ?)",
        (r["key"], "done", json.dumps(r["config"]), json.dumps(r["metrics"]), 1.0),
    )
    db.commit()
    db.close()
    before = path.read_bytes()
    with Store(path, readonly=True) as s:
        assert [x["key"] for x in s.runs(validate=True)] == [r["key"]]
        assert s.sweeps() == [] and s.claims() == {}
        with pytest.raises(StoreError, match="read-only"):
            s.put(r)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legacy.sqlite"]  # no -wal, no -shm
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def _columns():
    from labelsmooth.experiment.store import COLUMNS

    return COLUMNS


def test_report_and_export_read_a_store_on_a_read_only_mount(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _store_with_runs(src / "runs.sqlite")
    with readonly_folder(src, tmp_path / "ro") as ro:
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")  # really read-only
        store = str(ro / "runs.sqlite")
        assert main(["report", "--store", store, "--out", str(tmp_path / "r")]) == 0
        assert main(["export", "--store", store, "--csv", str(tmp_path / "o.csv")]) == 0
    assert (tmp_path / "r" / "report.md").is_file() and len((tmp_path / "o.csv").read_text().splitlines()) == 13


def test_a_read_only_store_never_silently_drops_the_runs_in_its_wal_file(tmp_path):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    live = Store(tmp_path / "live.sqlite")  # a writer that has not checkpointed: the runs sit in -wal
    live._db.execute("PRAGMA wal_autocheckpoint = 0")
    for r in report_runs()[:5]:
        live.put(r)
    assert (tmp_path / "live.sqlite-wal").stat().st_size > 0
    shutil.copy(tmp_path / "live.sqlite", src / "runs.sqlite")
    shutil.copy(tmp_path / "live.sqlite-wal", src / "runs.sqlite-wal")
    live.close()
    with readonly_folder(src, tmp_path / "ro") as ro:
        try:
            with Store(ro / "runs.sqlite", readonly=True) as s:
                assert len(s.runs()) == 5  # read with its -wal, or ...
        except StoreError as exc:  # ... refused with advice, never read without them
            assert "runs.sqlite-wal" in str(exc) and "writable folder" in str(exc)


def test_sweeping_into_a_read_only_store_is_a_write_error(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    _store_with_runs(src / "runs.sqlite")
    with readonly_folder(src, tmp_path / "ro") as ro:
        argv = ["sweep", "--datasets", "digits", "--models", "mlp", "--seeds", "1", *TINY_ARGS]
        code = main([*argv, "--store", str(ro / "runs.sqlite"), "--workers", "1", "--no-progress"])
    assert code == EXIT_WRITE
    line = _one_line_error(capsys, "sweep")
    assert "runs.sqlite" in line and "read-only" in line


# --- 3. a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """Writes through atomic_write fail with ENOSPC after ``room`` bytes (set ``full_disk.room``)."""

    class State:
        room = 0

    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDiskFile(real(fd, *a, **k), State.room))
    return State


def test_atomic_write_leaves_the_old_file_and_no_temporary_on_a_full_disk(tmp_path, full_disk):
    target = tmp_path / "out.txt"
    target.write_text("old")
    full_disk.room = 3
    with pytest.raises(WriteError, match=r"Cannot write .*out.txt: the disk is full"), atomic_write(target) as f:
        f.write("new content")
        f.flush()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_train_out_on_a_full_disk_keeps_the_record_and_exits_3(tmp_path, capsys, full_disk):
    out = tmp_path / "run.json"
    full_disk.room = 100
    assert main([*TRAIN, "--out", str(out)]) == EXIT_WRITE
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("labelsmooth train: error: Cannot write") and str(out) in line and "disk is full" in line
    record = json.loads(captured.out[: captured.out.rindex("}") + 1])  # the finished run, not lost
    assert record["config"]["dataset"] == "digits" and 0 <= record["metrics"]["accuracy"] <= 1
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no 0-byte run.json, no temporary


def test_train_out_into_a_missing_folder_fails_before_training(tmp_path, capsys, monkeypatch):
    import labelsmooth.experiment.train as train_module

    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("trained although --out is unwritable"))
    assert main([*TRAIN, "--out", str(tmp_path / "no" / "run.json")]) == EXIT_WRITE
    assert "the folder does not exist" in _one_line_error(capsys, "train")


def test_train_out_naming_a_folder_fails_before_training(tmp_path, capsys):
    assert main([*TRAIN, "--out", str(tmp_path)]) == EXIT_USAGE
    assert "is a folder" in _one_line_error(capsys, "train")


def test_export_on_a_full_disk_leaves_no_csv(tmp_path, capsys, full_disk):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    full_disk.room = 50
    assert main(["export", "--store", str(store), "--csv", str(tmp_path / "out.csv")]) == EXIT_WRITE
    assert "out.csv: the disk is full" in _one_line_error(capsys, "export")
    assert not (tmp_path / "out.csv").exists()


def test_report_on_a_full_disk_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    store = _store_with_runs(tmp_path / "runs.sqlite")
    real, calls = Figure.savefig, []

    def savefig(self, fname, *a, **k):  # the second figure hits a full disk half-way
        calls.append(fname)
        if len(calls) == 2:
            Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    out = tmp_path / "r"
    assert main(["report", "--store", str(store), "--out", str(out)]) == EXIT_WRITE
    assert "disk is full" in _one_line_error(capsys, "report")
    assert sorted(p.name for p in out.iterdir()) == ["digits-accuracy.png"]  # complete files only
    assert (out / "digits-accuracy.png").read_bytes().endswith(b"IEND\xaeB`\x82")


def test_a_full_store_is_a_write_error_with_exit_3(tmp_path, capsys, monkeypatch):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    real = Store.put

    def put(self, record, owner=None):  # the file cannot grow any more: SQLite's own "disk is full"
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        self._db.execute(f"PRAGMA max_page_count = {pages}")
        return real(self, {**record, "extra": {"pad": "x" * 100_000}}, owner)

    monkeypatch.setattr(Store, "put", put)
    argv = ["sweep", "--datasets", "digits", "--models", "mlp", "--seeds", "1", *TINY_ARGS]
    assert main([*argv, "--store", str(store), "--workers", "1", "--no-progress"]) == EXIT_WRITE
    captured = capsys.readouterr()
    line = captured.err.strip().splitlines()[-1]
    assert "Traceback" not in captured.err and line.startswith("labelsmooth sweep: error: ")
    assert "Cannot write the store" in line and "runs.sqlite" in line and "disk is full" in line
    record = json.loads(captured.out.strip().splitlines()[-1])  # the finished run is handed over, not lost
    assert record["status"] == "done" and record["config"]["dataset"] == "digits"


def test_on_a_real_tiny_disk_every_output_fails_cleanly(tmp_path, capsys):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    with tiny_disk(tmp_path / "disk", "64k") as disk:
        with open(disk / "filler", "wb", buffering=0) as f:  # fill it up to the last block
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert main(["export", "--store", str(store), "--csv", str(disk / "out.csv")]) == EXIT_WRITE
        assert "disk is full" in _one_line_error(capsys, "export")
        assert main([*TRAIN, "--out", str(disk / "run.json")]) == EXIT_WRITE
        capsys.readouterr()
        assert main(["report", "--store", str(store), "--out", str(disk / "r")]) == EXIT_WRITE
        assert "disk is full" in _one_line_error(capsys, "report")
        leftovers = [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"]
        assert all(p.suffix == ".png" and p.read_bytes().endswith(b"IEND\xaeB`\x82") for p in leftovers), leftovers


# --- 4. data -------------------------------------------------------------------------------------------


def test_test_images_of_another_size_than_the_training_images_are_refused(tmp_path, clean_env):
    write_idx_set(tmp_path)
    write_idx(tmp_path / IDX_FILES["test_images"], np.zeros((20, 14, 56), dtype=np.uint8))
    with pytest.raises(DataError, match=r"training images' size \(28, 28\).*t10k-images.*but got \(14, 56\)"):
        load("mnist", data_dir=str(tmp_path))


def test_images_of_another_size_than_the_data_set_are_refused(tmp_path, clean_env):
    write_idx_set(tmp_path)
    for key, n in (("train_images", 40), ("test_images", 20)):
        write_idx(tmp_path / IDX_FILES[key], np.zeros((n, 14, 56), dtype=np.uint8))
    with pytest.raises(DataError, match=r"mnist images of shape \(1, 28, 28\).*but got \(1, 14, 56\)"):
        load("mnist", data_dir=str(tmp_path))


def test_negative_labels_are_refused(tmp_path, clean_env):
    write_idx_set(tmp_path)
    labels = (np.arange(40) % 10).astype(np.int8)
    labels[7] = -1  # an int8 IDX file (type 0x09) can hold -1
    blob = bytes([0, 0, 0x09, 1]) + np.asarray([40], dtype=">u4").tobytes() + labels.tobytes()
    (tmp_path / IDX_FILES["train_labels"]).write_bytes(blob)
    with pytest.raises(DataError, match=r"labels in \[0, 10\) in .*train-labels-idx1-ubyte, but got -1"):
        load("mnist", data_dir=str(tmp_path))


def test_a_named_data_dir_missing_one_file_is_refused_not_replaced(tmp_path, clean_env, monkeypatch):
    complete, partial = tmp_path / "complete", tmp_path / "partial"
    write_idx_set(complete)
    write_idx_set(partial)
    (partial / IDX_FILES["test_labels"]).unlink()
    monkeypatch.setenv("LABELSMOOTH_DATA", str(complete))  # a complete folder elsewhere must not be used
    assert load("mnist").source == str(complete)
    with pytest.raises(DataNotFoundError, match=r"partial holds .* but not t10k-labels-idx1-ubyte"):
        load("mnist", data_dir=str(partial))


def test_fashion_mnist_with_a_named_empty_folder_does_not_fall_back(tmp_path, clean_env):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError, match=r"No Fashion-MNIST IDX files .* in --data-dir '.*empty'"):
        load("fashion-mnist", data_dir=str(empty))


def test_sweep_with_a_missing_data_dir_is_refused(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    argv = ["sweep", "--datasets", "digits", "--models", "mlp", "--seeds", "1", *TINY_ARGS, "--store", str(store)]
    assert main([*argv, "--data-dir", str(tmp_path / "nonexistent"), "--no-progress"]) == EXIT_USAGE
    line = _one_line_error(capsys, "sweep")
    assert "--data-dir" in line and "nonexistent" in line and "is not a folder" in line
    with pytest.raises(DataNotFoundError, match="Expected `data_dir` to be a folder"):
        load("mnist", data_dir=str(tmp_path / "nonexistent"))


def test_reproduce_checks_every_data_set_before_it_runs_anything(tmp_path, capsys, clean_env, monkeypatch):
    import labelsmooth.experiment.data as data_module
    import labelsmooth.experiment.runner as runner

    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))
    monkeypatch.setenv("LABELSMOOTH_FASHION_MNIST_URL", "http://127.0.0.1:9/")  # discard port: refused
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("a run started before the data check"))
    store = tmp_path / "quick.sqlite"
    code = main(
        ["reproduce", "--full", "--store", str(store), "--out", str(tmp_path / "r"), "--workers", "1", "--no-progress"]
    )
    assert code == EXIT_USAGE
    line = _one_line_error(capsys, "reproduce")
    assert "nothing was run" in line and "fashion-mnist" in line and "apt-get install dataset-fashion-mnist" in line
    with Store(store) as s:
        assert s.runs() == []


# --- 5. config -----------------------------------------------------------------------------------------

BASE = {"datasets": ["digits"], "models": ["mlp"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"seeds": "10"}, r"`seeds` to be a number of seeds N .* but got '10' \(str\)"),
        ({"seeds": [1.7]}, r"every seed in `seeds` to be an integer >= 0, but got 1.7 \(float\)"),
        ({"seeds": 2.5}, r"`seeds` to be a number of seeds N .* but got 2.5 \(float\)"),
        ({"seeds": [True]}, r"every seed in `seeds` to be an integer >= 0, but got True"),
        ({"seeds": 0}, r"`seeds` to be >= 1"),
        ({"epochs": {"digitz": 1}}, r"keys of `epochs` to be data sets of the grid \['digits'\], but got \['digitz'\]"),
        ({"gammas": [0.9], "convention": "uniforn"}, r"`convention` to be one of .* but got 'uniforn'"),
        ({"gammas": ["a"]}, r"`gammas` to be a list of numbers, but got 'a' \(str\)"),
        ({"betas": [True]}, r"`betas` to be a list of numbers, but got True \(bool\)"),
        ({"datasets": [1]}, r"`datasets` to be a list of names, but got 1 \(int\)"),
        ({"gammas": {"x": 1}}, r"`gammas` to be a list, but got \{'x': 1\} \(dict\)"),
    ],
)
def test_a_bad_spec_is_a_clear_error(spec, message):
    with pytest.raises(SpecError, match=message):
        build_grid({**BASE, **spec})


def test_keys_outside_the_sweep_table_are_refused(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('seeds = 1\n[sweep]\ndatasets = ["digits"]\n')
    with pytest.raises(SpecError, match=r"grid.toml inside its \[sweep\] table, but got \['seeds'\] outside"):
        read_toml(str(path))
    path.write_text('[sweep]\ndatasets = ["digits"\n')
    with pytest.raises(SpecError, match="grid.toml, but it does not parse"):
        read_toml(str(path))
    with pytest.raises(SpecError, match="Cannot read the sweep config .*missing.toml"):
        read_toml(str(tmp_path / "missing.toml"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: expected an integer >= 1, but got 0"),
        (["--gammas", ",,"], "argument --gammas: expected comma-separated numbers, but got ',,'"),
        (["--gammas", "0.9,a"], "argument --gammas: expected comma-separated numbers, but got 'a' in '0.9,a'"),
        (["--seeds", "0"], "argument --seeds: expected an integer >= 1, but got 0"),
        (["--datasets", "digits,,mnist1d"], "argument --datasets: expected comma-separated names"),
    ],
)
def test_bad_sweep_options_are_argparse_errors(tmp_path, capsys, args, message):
    base = {"--datasets": "digits", "--store": str(tmp_path / "s.sqlite")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    with pytest.raises(SystemExit) as exc:
        main(["sweep", *[a for kv in base.items() for a in kv]])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()


def test_sweep_workers_zero_is_refused_in_python():
    from labelsmooth.experiment.runner import sweep

    with pytest.raises(ValueError, match="`workers` to be an integer >= 1 or None .* but got 0"):
        sweep([], "unused.sqlite", workers=0)


# --- 7. report.md escapes HTML as report.html does ----------------------------------------------------


def test_report_markdown_escapes_html_from_the_store(tmp_path):
    evil = "<img src=x onerror=alert(1)>"
    runs = report_runs()
    failed = dict(runs[0], key="f" * 16, status="failed", metrics=None, error=f"RuntimeError: {evil}")
    failed["config"] = dict(runs[0]["config"], seed=99)
    sweeps = [
        {
            "id": 1,
            "command": f"labelsmooth sweep <script>alert(1)</script> | {evil}",
            "backend": "<b>local</b>",
            "workers": 1,
            "runs": 1,
            "machine": {"cpu": "<i>cpu</i>", "cpu_count": 2, "platform": "<u>linux</u>", "threads_per_run": 1},
            "wall_s": 1.0,
        }
    ]
    out = write_report([*runs, failed], sweeps, str(tmp_path), title="<h1>title</h1>")
    md = Path(out["markdown"]).read_text()
    assert re.findall(r"<[a-zA-Z/!]", md) == []  # no raw tag of any kind
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "\\| &lt;img" in md  # a | from the store cannot split a table cell
    page = Path(out["html"]).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


# --- the CLI: our validation errors are one line, our bugs keep their traceback -----------------------


def test_a_bug_is_not_reported_as_a_user_error(tmp_path, monkeypatch):
    import labelsmooth.cli.export as export

    store = _store_with_runs(tmp_path / "runs.sqlite")

    def buggy(args):
        return {}["missing"]

    monkeypatch.setattr(export, "run", buggy)
    with pytest.raises(KeyError):
        main(["export", "--store", str(store), "--csv", str(tmp_path / "o.csv")])

    def value_bug(args):
        return int("not a number")  # a ValueError from Python itself, not our validation

    monkeypatch.setattr(export, "run", value_bug)
    with pytest.raises(ValueError, match="invalid literal"):
        main(["export", "--store", str(store), "--csv", str(tmp_path / "o.csv")])


def test_our_validation_errors_are_one_line(tmp_path, capsys):
    assert main(["explain", "-K", "1", "--smoothing", "0.1"]) == EXIT_USAGE  # the core's "Expected ..."
    _one_line_error(capsys, "explain")
    assert main(["train", "--dataset", "digits", "--loss", "ls", "--gamma", "2", *TINY_ARGS]) == EXIT_USAGE
    assert "--gamma" in _one_line_error(capsys, "train")


def test_a_user_error_in_a_subprocess_is_one_line_without_a_traceback(tmp_path):
    store = _store_with_runs(tmp_path / "runs.sqlite")
    cmd, env = cli("export", "--store", str(store), "--csv", str(tmp_path / "o.csv"))
    assert subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600).returncode == 0
    cmd, env = cli("export", "--store", str(tmp_path / "missing.sqlite"), "--csv", str(tmp_path / "o.csv"))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == EXIT_USAGE and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_export_csv_is_atomic_in_python_too(tmp_path, full_disk):
    full_disk.room = 10
    with pytest.raises(WriteError, match="out.csv"):
        export_csv(report_runs(), tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []
