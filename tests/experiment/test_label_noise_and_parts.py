"""Symmetric label noise, the MNIST-1D pool of the regime map, and the full protocol's parts."""

import dataclasses

import numpy as np
import pytest
import torch

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.data import Dataset
from labelsmooth.experiment.reproduce import FULL, MAP_EPOCHS, MAP_NOISE, MAP_SIZES, parts, report_keys
from labelsmooth.experiment.splits import make_splits, with_label_noise
from labelsmooth.experiment.tuning import search_points, trial_configs


def _splits(n_train=500, n_test=200, k=5):
    g = torch.Generator().manual_seed(0)
    d = Dataset(
        name="synthetic",
        x_train=torch.randn(n_train, 3, generator=g),
        y_train=torch.arange(n_train) % k,
        x_test=torch.randn(n_test, 3, generator=g),
        y_test=torch.arange(n_test) % k,
        classes=tuple(str(i) for i in range(k)),
        source="test",
    )
    return make_splits(d, split=0, val_fraction=0.2)


# --- label noise --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5])
def test_noise_makes_exactly_the_stated_fraction_of_train_and_validation_labels_wrong(rate):
    clean = _splits()
    noisy = with_label_noise(clean, rate)
    for part in ("y_train", "y_val"):
        before, after = getattr(clean, part), getattr(noisy, part)
        assert int((before != after).sum()) == round(rate * len(before))
        assert after.min() >= 0 and after.max() < len(clean.classes)


def test_noise_never_touches_the_test_labels_or_the_inputs():
    clean = _splits()
    noisy = with_label_noise(clean, 0.3)
    assert torch.equal(noisy.y_test, clean.y_test)
    for part in ("x_train", "x_val", "x_test"):
        assert torch.equal(getattr(noisy, part), getattr(clean, part))


def test_the_wrong_labels_are_spread_uniformly_over_the_other_classes():
    k = 4
    clean = _splits(n_train=20_000, n_test=10, k=k)
    noisy = with_label_noise(clean, 0.5)
    changed = clean.y_train != noisy.y_train
    shift = (noisy.y_train[changed] - clean.y_train[changed]) % k  # 1..K-1, each ~1/(K-1) of the time
    counts = np.bincount(shift.numpy(), minlength=k)
    assert counts[0] == 0
    share = counts[1:] / counts[1:].sum()
    assert np.all(np.abs(share - 1 / (k - 1)) < 0.02), share


def test_the_noise_depends_on_the_split_only_so_every_seed_sees_the_same_labels():
    clean = _splits()
    a, b = with_label_noise(clean, 0.2, split=0), with_label_noise(clean, 0.2, split=0)
    c = with_label_noise(clean, 0.2, split=1)
    assert torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, c.y_train)
    assert with_label_noise(clean, 0.0) is clean


@pytest.mark.parametrize("rate", [-0.1, 0.8, 1.0, float("nan"), True, "0.2"])
def test_a_noise_rate_outside_0_to_1_minus_1_over_k_is_refused_by_name(rate):
    with pytest.raises(ValueError, match=r"`rate` \(label noise\)"):
        with_label_noise(_splits(k=5), rate)


def test_the_run_config_checks_label_noise_and_keeps_old_keys_at_its_default():
    old = RunConfig("digits", "mlp")
    blob = {k: v for k, v in old.to_dict().items() if k != "label_noise"}
    import hashlib
    import json

    before = hashlib.sha256(json.dumps(blob, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert old.key() == before, "a run stored before label_noise existed keeps its key"
    noisy = dataclasses.replace(old, label_noise=0.2)
    assert noisy.validate().key() != old.key()
    with pytest.raises(ValueError, match="`label_noise`.*K = 10.*0.95"):
        dataclasses.replace(old, label_noise=0.95).validate()


def test_a_noisy_run_trains_on_noisy_labels_and_is_scored_on_clean_ones():
    from labelsmooth.experiment.train import load_splits

    base = RunConfig("digits", "mlp", epochs=1)
    clean, noisy = load_splits(base), load_splits(dataclasses.replace(base, label_noise=0.2))
    assert int((clean.y_train != noisy.y_train).sum()) == round(0.2 * len(clean.y_train))
    assert torch.equal(clean.y_test, noisy.y_test)


# --- the MNIST-1D pool --------------------------------------------------------------------------------


def test_mnist1d_sizes_beyond_the_standard_split_share_one_test_set_and_nest_their_training_sets(tmp_path, monkeypatch):
    import labelsmooth.experiment.data as data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(data, "MNIST1D_POOL", 3000)  # a small pool keeps the test fast
    small = data.load("mnist1d", train_size=500, test_size=1200)
    large = data.load("mnist1d", train_size=1500, test_size=1200)
    assert np.array_equal(np.asarray(small.x_test), np.asarray(large.x_test))
    assert np.array_equal(np.asarray(small.y_test), np.asarray(large.y_test))
    assert np.array_equal(np.asarray(large.x_train)[:500], np.asarray(small.x_train))
    # the unsplit pool and the paper's split have their own cache files
    assert (tmp_path / "labelsmooth" / "mnist1d-pool-3000.npz").is_file()


# --- the parts of the full protocol -------------------------------------------------------------------


def test_the_full_protocol_has_the_issue_grid_and_every_map_cell():
    names = [name for name, _ in parts(full=True)]
    assert names[:2] == ["digits", "mnist1d"] and names[-2:] == ["fashion-mnist", "resnet"]
    cells = [n for n in names if n.startswith("map")]
    assert len(cells) == len(MAP_SIZES) * len(MAP_NOISE) * len(MAP_EPOCHS) == 12
    for name in ("digits", "mnist1d", "fashion-mnist"):
        assert FULL[name]["gammas"] == [0.99, 0.97, 0.95, 0.9, 0.85, 0.8, 0.7]
        assert FULL[name]["betas"] == [0.1, 0.5, 1.0]
    assert FULL["digits"]["seeds"] == FULL["mnist1d"]["seeds"] == 10 and FULL["fashion-mnist"]["seeds"] >= 5
    assert FULL["resnet"]["models"] == ["resnet"] and FULL["resnet"]["augment"] is True


def test_parts_select_by_name_or_prefix_and_refuse_unknown_names():
    assert [n for n, _ in parts(full=True, only=["resnet"])] == ["resnet"]
    assert len(parts(full=True, only=["map"])) == 12
    with pytest.raises(ValueError, match="Expected part names.*'nope'"):
        parts(full=True, only=["nope"])


def test_cells_of_the_map_are_different_experiments_not_search_points():
    configs = [c for _, spec in parts(full=True, only=["map n=1000 noise=0 "]) for c in trial_configs(spec)]
    assert {c.epochs for c in configs} == set(MAP_EPOCHS)
    with pytest.raises(ValueError, match="search-space fields among"):
        search_points({"epochs": [10, 50]})


def test_the_report_covers_finished_parts_only(tmp_path):
    spec = {"datasets": ["digits"], "models": ["mlp"], "seeds": 2, "epochs": 1, "train_size": 100, "test_size": 50}
    other = {**spec, "epochs": 2}
    from labelsmooth.experiment.store import Store
    from labelsmooth.experiment.tuning import run_protocol

    path = str(tmp_path / "runs.sqlite")
    run_protocol(spec, path, workers=1, progress=False)
    with Store(path) as s:
        runs = s.runs()
    keys = report_keys([spec, other], runs)
    assert keys == {r["key"] for r in runs} and len(keys) == 2


# --- the command line and the report ------------------------------------------------------------------


def test_reproduce_part_needs_full_and_names_unknown_parts(tmp_path, capsys):
    from labelsmooth.cli import EXIT_USAGE, main

    base = ["reproduce", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "r"), "--no-progress"]
    assert main([*base, "--part", "digits"]) == EXIT_USAGE
    assert "--part needs --full" in capsys.readouterr().err
    assert main([*base, "--full", "--part", "cifar"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--part" in err and "'cifar'" in err and "resnet" in err


def test_train_refuses_a_label_noise_rate_naming_the_option(capsys):
    from labelsmooth.cli import EXIT_USAGE, main

    assert main(["train", "--dataset", "digits", "--label-noise", "0.95", "--epochs", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--label-noise" in err and "0.95" in err


def test_the_report_opens_with_an_overview_row_per_experiment(tmp_path):
    from labelsmooth.experiment.report import write_report
    from labelsmooth.experiment.store import Store
    from labelsmooth.experiment.tuning import run_protocol

    spec = {"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9, 0.8], "betas": [0.5, 1.0], "seeds": 2,
            "epochs": 1, "train_size": 200, "test_size": 100}  # fmt: skip
    path = str(tmp_path / "runs.sqlite")
    run_protocol(spec, path, workers=1, progress=False)
    run_protocol({**spec, "label_noise": 0.2}, path, workers=1, progress=False)
    with Store(path) as s:
        runs, sweeps, predictions = s.runs(), s.sweeps(), s.predictions()
    out = write_report(runs, sweeps, str(tmp_path / "report"), predictions=predictions)
    md = open(out["markdown"]).read()
    overview = md.split("## Overview", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in overview.splitlines() if line.startswith("| digits")]
    assert len(rows) == 2 and any("label_noise=0.2" in r for r in rows), rows
    assert "γ selected on validation" in overview and "β selected on validation" in overview
    assert "Overview" in open(out["html"]).read()


def test_the_report_store_keeps_every_run_and_only_the_predictions_the_report_reads(tmp_path, capsys):
    from labelsmooth.cli import main
    from labelsmooth.experiment.stats import analyse
    from labelsmooth.experiment.store import Store
    from labelsmooth.experiment.tuning import finals, run_protocol

    spec = {"datasets": ["digits"], "models": ["mlp"], "gammas": [0.9], "seeds": 2, "epochs": 1,
            "train_size": 200, "test_size": 100, "search": {"lr": [0.001, 0.003]}}  # fmt: skip
    full, slim = str(tmp_path / "full.sqlite"), str(tmp_path / "slim.sqlite")
    run_protocol(spec, full, workers=1, progress=False)
    assert main(["export", "--store", full, "--report-store", slim]) == 0
    assert "MiB" in capsys.readouterr().out
    with Store(full, readonly=True) as a, Store(slim, readonly=True) as b:
        runs_a, runs_b = a.runs(), b.runs()
        pred_a, pred_b = a.predictions(), b.predictions()
    assert [r["key"] for r in runs_a] == [r["key"] for r in runs_b]
    final_keys = {r["key"] for r in finals(runs_a)[0]}
    assert set(pred_b) == final_keys < set(pred_a), "trials that are not finals lose their predictions"
    assert all(set(parts) == {"test"} for parts in pred_b.values())
    va, vb = analyse(runs_a, pred_a), analyse(runs_b, pred_b)
    assert va.verdicts == vb.verdicts
    ca, cb = va.comparisons["digits"][0], vb.comparisons["digits"][0]
    assert (ca.diff_points, ca.ci_points, ca.calibration) == (cb.diff_points, cb.ci_points, cb.calibration)


def test_per_part_report_stores_merge_back_into_one_that_reports_and_resumes_the_same(tmp_path, capsys, monkeypatch):
    import labelsmooth.experiment.reproduce as reproduce
    from labelsmooth.cli import main
    from labelsmooth.experiment.store import Store
    from labelsmooth.experiment.tuning import run_protocol

    tiny = {"models": ["mlp"], "gammas": [0.9], "seeds": 2, "epochs": 1, "train_size": 200, "test_size": 100}
    monkeypatch.setattr(reproduce, "FULL", {"a": {**tiny, "datasets": ["digits"]}, "b": {**tiny, "epochs": 2,
                                                                                         "datasets": ["digits"]}})  # fmt: skip
    full = str(tmp_path / "full.sqlite")
    for spec in reproduce.FULL.values():
        run_protocol(spec, full, workers=1, progress=False)
    a, b, merged = (str(tmp_path / f"{n}.sqlite") for n in ("a", "b", "merged"))
    assert main(["export", "--store", full, "--part", "a", "--report-store", a]) == 0
    assert main(["export", "--store", full, "--part", "b", "--report-store", b]) == 0
    assert main(["export", "--store", a, "--store", b, "--report-store", merged]) == 0
    with Store(full, readonly=True) as f, Store(a, readonly=True) as sa, Store(merged, readonly=True) as m:
        assert {r["config"]["epochs"] for r in sa.runs()} == {1}
        assert sorted(r["key"] for r in m.runs()) == sorted(r["key"] for r in f.runs())
    for out, stores in (("r1", [full]), ("r2", [a, b]), ("r3", [merged])):
        argv = ["report", "--out", str(tmp_path / out)] + [x for s in stores for x in ("--store", s)]
        assert main(argv) == 0
    capsys.readouterr()
    pages = [(tmp_path / r / "report.md").read_text() for r in ("r1", "r2", "r3")]
    assert pages[0] == pages[1] == pages[2], "the same report, provenance included: each sweep listed once"
    with Store(full, readonly=True) as f:
        n_sweeps = len(f.sweeps())
    listed = [line for line in pages[1].splitlines() if line.startswith("- Sweep ")]
    assert [line.split(":")[0] for line in listed] == [f"- Sweep {i}" for i in range(1, n_sweeps + 1)]
    assert "- Wall time with at least one run training: " in pages[1]
    again = run_protocol(reproduce.FULL["a"], merged, workers=1, progress=False)
    assert again["trials"]["done"] == again["finals"]["done"] == 0, "the merged store resumes: nothing to train"
    assert main(["export", "--store", a, "--store", b, "--csv", str(tmp_path / "x.csv")]) == 2
    assert "--csv takes one --store" in capsys.readouterr().err


def test_the_report_says_when_the_selection_sits_at_the_edge_of_the_search_space():
    from labelsmooth.experiment.report import edge_note
    from labelsmooth.experiment.stats import analyse

    def run(seed, lr, acc):
        cfg = RunConfig("digits", "mlp", seed=seed, lr=lr, epochs=1).to_dict()
        metrics = {"accuracy": acc, "val_accuracy": acc, "val_nll": 0.1, "nll": 0.1, "ece": 0.01,
                   "ts_nll": 0.1, "ts_ece": 0.01, "temperature": 1.0}  # fmt: skip
        return {"key": f"{seed}-{lr}", "status": "done", "config": cfg, "metrics": metrics}

    top = analyse([run(0, 0.001, 0.8), run(0, 0.004, 0.9), run(1, 0.004, 0.9)])
    assert edge_note("digits", top) == (
        "Selected at the edge of the search space: lr (largest) in 1 of 1 choices (setting × split). "
        "Where that is most of them, the best value may lie outside the space searched, for every setting alike."
    )
    inside = analyse([run(0, 0.001, 0.8), run(0, 0.002, 0.9), run(0, 0.004, 0.85)])
    assert edge_note("digits", inside) is None


def test_experiments_are_listed_with_their_numbers_in_numeric_order():
    from labelsmooth.experiment.stats import _natural

    names = ["mnist1d (epochs=50, train_size=1000)", "mnist1d (epochs=10, train_size=16000)", "digits",
             "mnist1d (epochs=10, train_size=4000)", "mnist1d (epochs=10, train_size=1000)"]  # fmt: skip
    assert sorted(names, key=_natural) == [
        "digits", "mnist1d (epochs=10, train_size=1000)", "mnist1d (epochs=10, train_size=4000)",
        "mnist1d (epochs=10, train_size=16000)", "mnist1d (epochs=50, train_size=1000)",
    ]  # fmt: skip
