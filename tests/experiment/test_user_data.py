"""The user's own data sets: image folders, tables, .npz and Python arrays; names; bad input; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _user_files import isolated_user_data, write_images, write_wine

from labelsmooth.cli import main
from labelsmooth.experiment import data, user_data
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.data import DataError
from labelsmooth.experiment.models import ModelError, build, default_model
from labelsmooth.experiment.store import Store
from labelsmooth.experiment.train import train
from labelsmooth.experiment.user_data import describe, register

private_cache = isolated_user_data(default_memory_limit=True)


@pytest.fixture
def wine(tmp_path):
    return write_wine(tmp_path / "wine.csv")


def _reference_standardise(train: np.ndarray, *others: np.ndarray):
    """float64 per-column (axis 1, per channel for images) standardisation with the training part's statistics."""
    axes = (0, *range(2, train.ndim))
    mean = train.astype(np.float64).mean(axis=axes, keepdims=True)
    std = train.astype(np.float64).std(axis=axes, keepdims=True) + 1e-8
    return [(a - mean) / std for a in (train, *others)]


# --- image folders ------------------------------------------------------------------------------------


def test_image_folder_classes_carved_test_part_and_pixels(tmp_path):
    from PIL import Image

    root = write_images(tmp_path / "imgs", {"cat": 10, "dog": 5}, size=(8, 6))
    d = data.load(register(root, standardise=False))
    assert d.classes == ("cat", "dog")
    assert d.input_shape == (3, 8, 6)
    # 20 % of 15 = 3 test images, stratified: 2 cats, 1 dog (sklearn's rounding); 12 to train on
    assert describe(d)["counts"] == {"train": [8, 4], "test": [2, 1]}
    assert describe(d)["imbalance"] == 2.0
    assert d.x_val is None and d.y_val is None
    # the pixels are the files' own, / 255, channels first
    every = {(0, i): np.asarray(Image.open(root / "cat" / f"{i:03d}.png")) for i in range(10)}
    every |= {(1, i): np.asarray(Image.open(root / "dog" / f"{i:03d}.png")) for i in range(5)}
    for x, y in zip(torch.cat([d.x_train, d.x_test]), torch.cat([d.y_train, d.y_test])):
        matches = [k for k, v in every.items() if k[0] == int(y) and np.allclose(v.transpose(2, 0, 1) / 255.0, x)]
        assert len(matches) == 1


def test_image_folder_with_train_test_val_parts_and_standardisation(tmp_path):
    root = tmp_path / "split"
    write_images(root / "train", {"a": 4, "b": 4}, seed=1)
    write_images(root / "test", {"a": 2, "b": 3}, seed=2)
    write_images(root / "val", {"a": 1, "b": 2}, seed=3)
    raw = data.load(register(root, standardise=False))
    d = data.load(register(root))
    assert describe(d)["counts"] == {"train": [4, 4], "test": [2, 3], "val": [1, 2]}
    ref_train, ref_test, ref_val = _reference_standardise(raw.x_train.numpy(), raw.x_test.numpy(), raw.x_val.numpy())
    np.testing.assert_allclose(d.x_train.numpy(), ref_train, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), ref_test, atol=1e-5)
    np.testing.assert_allclose(d.x_val.numpy(), ref_val, atol=1e-5)


def test_image_resize_and_grayscale(tmp_path):
    root = tmp_path / "mixed"
    write_images(root, {"a": 3}, size=(8, 6))
    write_images(root, {"b": 3}, size=(10, 10), seed=1)
    gray = data.load(register(root, image_size="4x5", image_mode="grayscale"))
    assert gray.input_shape == (1, 4, 5)
    assert data.info(register(root, image_size=(4, 5))).input_shape == (3, 4, 5)
    gray_files = write_images(tmp_path / "gray", {"a": 3, "b": 3}, mode="L")
    assert data.load(register(gray_files)).input_shape == (1, 8, 6)  # auto: every image is grayscale


# --- tables -------------------------------------------------------------------------------------------


def test_csv_table_is_the_wine_data_standardised_with_training_statistics(wine):
    from sklearn.datasets import load_wine

    bunch = load_wine()
    name = register(wine, label_column="target")
    d = data.load(name)
    raw = data.load(register(wine, label_column="target", standardise=False))
    assert d.classes == ("0", "1", "2") and d.input_shape == (13,)
    assert len(d.y_train) + len(d.y_test) == 178
    counts = describe(d)["counts"]
    assert [a + b for a, b in zip(counts["train"], counts["test"])] == np.bincount(bunch.target).tolist()
    # every row of the data set is a row of the table, with its own label
    table = {tuple(np.round(row, 4)): int(t) for row, t in zip(bunch.data, bunch.target)}
    for x, y in zip(torch.cat([raw.x_train, raw.x_test]).numpy(), torch.cat([raw.y_train, raw.y_test])):
        assert table[tuple(np.round(x.astype(np.float64), 4))] == int(y)
    ref_train, ref_test = _reference_standardise(raw.x_train.numpy(), raw.x_test.numpy())
    np.testing.assert_allclose(d.x_train.numpy(), ref_train, atol=1e-5)
    np.testing.assert_allclose(d.x_test.numpy(), ref_test, atol=1e-5)


def test_parquet_gives_the_same_data_set_as_csv(wine, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.read_csv(wine).to_parquet(tmp_path / "wine.parquet")
    a = data.load(register(wine, label_column="target"))
    b = data.load(register(tmp_path / "wine.parquet", label_column="target"))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test) and a.classes == b.classes


def test_categorical_columns_are_refused_by_name_or_one_hot_encoded(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("size,colour,label\n1.0,red,a\n2.0,blue,b\n3.0,red,a\n4.0,green,b\n5,red,a\n6,blue,b\n")
    with pytest.raises(DataError, match=r"t.csv has non-numeric feature columns \['colour'\].*--one-hot"):
        register(path, label_column="label")
    d = data.load(register(path, label_column="label", categorical="onehot", standardise=False, test_fraction=0.34))
    assert d.input_shape == (4,)  # size + colour_blue, colour_green, colour_red (sorted)
    rows = torch.cat([d.x_train, d.x_test])
    assert sorted(map(tuple, rows.tolist())) == [
        (1, 0, 0, 1), (2, 1, 0, 0), (3, 0, 0, 1), (4, 0, 1, 0), (5, 0, 0, 1), (6, 1, 0, 0)
    ]  # fmt: skip
    assert d.classes == ("a", "b")


# --- npz and Python data ------------------------------------------------------------------------------


def test_npz_with_and_without_a_test_part_and_python_arrays_agree(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3, 5)).astype(np.float32), np.arange(40) % 4
    np.savez(tmp_path / "given.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    given = data.load(register(tmp_path / "given.npz", standardise=False))
    assert torch.equal(given.x_test, torch.from_numpy(x[30:])) and torch.equal(given.y_train, torch.from_numpy(y[:30]))
    np.savez(tmp_path / "one.npz", x_train=x, y_train=y)
    carved = data.load(register(tmp_path / "one.npz"))
    assert describe(carved)["counts"] == {"train": [8, 8, 8, 8], "test": [2, 2, 2, 2]}
    from_numpy = register((x, y))
    from_torch = register(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)))
    from_tensors = register((torch.from_numpy(x), torch.from_numpy(y)))
    assert from_numpy == from_torch == from_tensors  # the same content: the same name (and run keys)
    arrays = data.load(from_numpy)
    assert torch.equal(arrays.x_train, carved.x_train) and torch.equal(arrays.y_test, carved.y_test)


def test_python_data_with_string_labels_test_and_val_parts():
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    y = np.array(["b", "a"] * 6)
    d = data.load(register((x[:6], y[:6]), test=(x[6:9], y[6:9]), val=(x[9:], y[9:]), standardise=False))
    assert d.classes == ("a", "b")
    assert d.y_train.tolist() == [1, 0, 1, 0, 1, 0] and d.y_test.tolist() == [1, 0, 1]
    assert torch.equal(d.x_val, torch.from_numpy(x[9:]))


# --- names and keys -----------------------------------------------------------------------------------


def test_names_identify_content_and_options_and_refuse_changed_files(wine, tmp_path):
    name = register(wine, label_column="target")
    assert register(wine, label_column="target") == name
    assert register(wine, label_column="target", test_fraction=0.3) != name
    assert data.info(name).num_classes == 3 and data.info(name).input_shape == (13,)
    a = write_images(tmp_path / "a", {"x": 3, "y": 3}, seed=0)
    b = write_images(tmp_path / "b", {"x": 3, "y": 3}, seed=1)
    keys = {RunConfig(register(p), "mlp").key() for p in (a, b)}
    assert len(keys) == 2  # different folders never share a run key
    wine.write_text(wine.read_text().replace("14.23", "14.24", 1))
    user_data._FULL.clear()  # as in a fresh process
    with pytest.raises(DataError, match="wine.csv changed since it was registered"):
        data.load(name)


def test_memory_limit_refuses_before_reading(tmp_path, monkeypatch):
    root = write_images(tmp_path / "imgs", {"a": 3, "b": 3})
    monkeypatch.setenv("LABELSMOOTH_MAX_DATA_BYTES", "1000")
    message = (
        r"imgs needs 3.4 KiB in memory \(6 examples of shape 3x8x6 as float32\), more than the limit of 1000 bytes"
    )
    with pytest.raises(DataError, match=message):
        register(root)
    monkeypatch.setenv("LABELSMOOTH_MAX_DATA_BYTES", "10000")
    assert data.info(register(root)).num_classes == 2  # 6 × 3 × 8 × 6 × 4 = 3,456 bytes fit


# --- bad input ----------------------------------------------------------------------------------------


def test_corrupt_image_names_the_file(tmp_path):
    root = write_images(tmp_path / "imgs", {"a": 3, "b": 3})
    (root / "b" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"Cannot read image .*b/001.png"):
        register(root)


def test_truncated_image_names_the_file(tmp_path):
    root = write_images(tmp_path / "imgs", {"a": 3, "b": 3}, size=(64, 64))
    blob = (root / "a" / "002.png").read_bytes()
    (root / "a" / "002.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"Cannot read image .*a/002.png"):
        register(root)


def test_table_without_the_label_column_or_with_nan_features(wine, tmp_path):
    with pytest.raises(DataError, match=r"wine.csv has no column 'kind' \(--label-column\); its columns: \['alcohol'"):
        register(wine, label_column="kind")
    with pytest.raises(ValueError, match="Expected `label_column` naming the class column of the table"):
        register(wine)
    bad = tmp_path / "nan.csv"
    bad.write_text("a,b,label\n1,2,x\n3,,y\n4,nan,x\n5,6,y\n")
    with pytest.raises(
        DataError, match=r"nan.csv: feature column 'b' has 2 missing, NaN or infinite values \(data rows \[2, 3\]"
    ):
        register(bad, label_column="label")


def test_one_class_is_refused(tmp_path):
    root = write_images(tmp_path / "only", {"cats": 4})
    with pytest.raises(DataError, match=r"only holds 1 class \('cats'\): a classifier needs at least 2"):
        register(root)


def test_class_too_small_to_stratify_names_the_class(tmp_path):
    root = write_images(tmp_path / "imgs", {"a": 5, "rare": 1})
    with pytest.raises(DataError, match=r"class 'rare' has 1 example: too few to stratify a test part"):
        register(root)


def test_mixed_image_sizes_need_a_resize(tmp_path):
    root = tmp_path / "mixed"
    write_images(root, {"a": 2}, size=(8, 6))
    write_images(root, {"b": 2}, size=(10, 10))
    with pytest.raises(DataError, match=r"differ in size .*a/000.png is 8x6, .*b/000.png is 10x10.*--image-size"):
        register(root)


def test_model_with_the_wrong_number_of_logits(wine):
    name = register(wine, label_column="target")
    with pytest.raises(
        ModelError, match=r"model '_user_files:wrong_head' to return logits of shape \(N, 3\).*got \(2, 4\)"
    ):
        train(RunConfig(name, "_user_files:wrong_head", epochs=1), progress=False)


# --- models and the CLI -------------------------------------------------------------------------------


def test_default_models_and_user_models(wine, tmp_path):
    table = register(wine, label_column="target")
    images = register(write_images(tmp_path / "imgs", {"a": 3, "b": 3}))
    assert default_model(table) == "mlp" and default_model(images) == "cnn"
    for model in ("_user_files:make_mlp", "_user_files:TinyNet"):
        assert build(model, (13,), 3)(torch.zeros(5, 13)).shape == (5, 3)
    with pytest.raises(ModelError, match="Cannot import module 'no_such_module'"):
        build("no_such_module:net", (13,), 3)


def test_cli_train_and_python_give_the_same_run(wine, tmp_path, capsys):
    out = tmp_path / "run.json"
    argv = ["train", "--data", str(wine), "--label-column", "target", "--epochs", "1", "--threads", "1"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "classes: 3 (0 47, 1 57, 2 38 in training; imbalance 1.50)" in printed
    cli = json.loads(out.read_text())
    config = RunConfig(register(wine, label_column="target"), "mlp", epochs=1)
    python = train(config, progress=False, threads=1)
    assert cli["key"] == config.key()
    assert cli["metrics"] == python["metrics"]
    # the run trains on the training part less the validation part carved from it (the protocol)
    assert cli["data"] == python["data"]
    assert sum(cli["data"]["class_counts"]) == cli["data"]["train_size"] < 47 + 57 + 38


def test_cli_sweep_on_user_data_resumes_and_refuses_a_bad_model(wine, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    argv = ["sweep", "--data", str(wine), "--label-column", "target", "--gammas", "0.9", "--seeds", "1"]
    argv += ["--epochs", "1", "--workers", "1", "--no-progress", "--no-search", "--store", str(store)]
    assert main(argv) == 0
    assert main(argv) == 0
    assert "2 tuning trials (2 already in" in capsys.readouterr().out
    with Store(store) as s:
        runs = s.runs()
    keys = {r["key"] for r in runs}
    name = register(wine, label_column="target")
    assert keys == {RunConfig(name, "mlp", epochs=1).key(), RunConfig(name, "mlp", "ls", gamma=0.9, epochs=1).key()}
    from labelsmooth.experiment.report import data_lines

    assert data_lines(runs) == [
        f"Data wine.csv ({wine}): 3 classes, 113 train / 29 validation / 36 test; training examples per class: 0 38, 1 45, 2 30; "
        "imbalance (largest / smallest) 1.50"
    ]
    bad = tmp_path / "bad.sqlite"
    assert main([*argv[:-1], str(bad), "--models", "_user_files:wrong_head"]) == 2
    assert "to return logits of shape (N, 3)" in capsys.readouterr().err
    assert not bad.exists()  # nothing stored as if it had worked


def test_cli_bad_data_is_one_line_naming_the_file(tmp_path, capsys):
    root = write_images(tmp_path / "imgs", {"a": 2, "b": 2})
    (root / "a" / "000.png").write_bytes(b"junk")
    assert main(["train", "--data", str(root), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labelsmooth train: error: Cannot read image") and "a/000.png" in err
    assert main(["train", "--data", str(tmp_path / "nope.csv"), "--label-column", "y"]) == 2
    assert "No file or folder at" in capsys.readouterr().err
    assert main(["train", "--dataset", "digits", "--label-column", "y", "--image-size", "8x8"]) == 2
    assert "error: --label-column, --image-size need --data PATH" in capsys.readouterr().err


def test_tables_without_pandas_say_what_to_install(wine, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match=r"Tables \(CSV, Parquet\) need pandas: pip install 'labelsmooth\[tables\]'"):
        register(wine, label_column="target")
    assert main(["train", "--data", str(wine), "--label-column", "target", "--no-progress"]) == 2
    assert "need pandas: pip install 'labelsmooth[tables]'" in capsys.readouterr().err


def test_python_model_factories_and_classes_train(wine):
    from _user_files import TinyNet

    from labelsmooth.experiment import models

    name = register(wine, label_column="target")
    assert models.register(TinyNet) == "_user_files:TinyNet"  # importable: works in every process
    local = models.register(lambda input_shape, num_classes: TinyNet(input_shape, num_classes))
    assert local.startswith(f"{__name__}:") and "lambda" in local  # this process only
    for model in ("_user_files:TinyNet", local):
        record = train(RunConfig(name, model, epochs=1), progress=False, threads=1)
        assert record["settings"]["num_parameters"] == 13 * 3 + 3
