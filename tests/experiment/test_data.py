"""Data sets: IDX and CIFAR readers on files written in the official formats, broken files, subsets."""

from __future__ import annotations

import gzip
import http.server
import os
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from _harness_files import write_cifar, write_idx_set

from labelsmooth.experiment import data
from labelsmooth.experiment.data import IDX_FILES, DataError, load, read_idx, write_idx


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No $LABELSMOOTH_DATA, a private cache folder, and no Debian Fashion-MNIST folder."""
    monkeypatch.delenv("LABELSMOOTH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))
    return tmp_path


# --- IDX ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_plain_and_gzip(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"a-idx3-ubyte{suffix}", array)
    np.testing.assert_array_equal(read_idx(tmp_path / f"a-idx3-ubyte{suffix}"), array)


def test_idx_header_is_the_documented_layout(tmp_path):
    write_idx(tmp_path / "l", np.array([7, 8], dtype=np.uint8))
    raw = (tmp_path / "l").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 8])  # magic 0x00000801, size 2 big-endian, data


def test_idx_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00\x00\x00\x01" + b"\x00")
    with pytest.raises(DataError, match="magic number.*bad-idx1-ubyte"):
        read_idx(path)


def test_idx_truncated_names_the_file(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    write_idx(path, np.zeros((4, 5, 5), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"short-idx3-ubyte has 109 bytes, but its header .* says 116 \(truncated\)"):
        read_idx(path)


def test_idx_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut-idx3-ubyte.gz"
    write_idx(path, np.zeros((40, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="cut-idx3-ubyte.gz"):
        read_idx(path)


def test_mnist_folder_loads_images_and_labels(tmp_path, clean_env):
    arrays = write_idx_set(tmp_path / "mnist", n_train=30, n_test=20, gz=True)
    d = load("mnist", data_dir=str(tmp_path))
    assert d.x_train.shape == (30, 1, 28, 28) and d.x_test.shape == (20, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    np.testing.assert_array_equal(d.y_train.numpy(), arrays["train_labels"])
    # standardised with the training set's statistics: an affine map of the raw pixels
    raw = arrays["train_images"].astype(np.float64) / 255
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), expected, atol=1e-5)
    raw_test = arrays["test_images"].astype(np.float64) / 255
    np.testing.assert_allclose(d.x_test[:, 0].numpy(), (raw_test - raw.mean()) / raw.std(), atol=1e-5)
    assert d.classes == tuple("0123456789") and d.input_shape == (1, 28, 28)


def test_labelsmooth_data_env_is_searched(tmp_path, clean_env, monkeypatch):
    write_idx_set(tmp_path / "somewhere", n_train=20, n_test=10)
    monkeypatch.setenv("LABELSMOOTH_DATA", str(tmp_path / "somewhere"))
    assert load("mnist").x_train.shape[0] == 20


def test_labels_out_of_range_name_the_file(tmp_path, clean_env):
    write_idx_set(tmp_path, n_train=20, n_test=10)
    write_idx(tmp_path / IDX_FILES["test_labels"], np.full(10, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels in \[0, 10\) in .*t10k-labels-idx1-ubyte, but got 10"):
        load("mnist", data_dir=str(tmp_path))


def test_image_and_label_counts_must_agree(tmp_path, clean_env):
    write_idx_set(tmp_path, n_train=20, n_test=10)
    write_idx(tmp_path / IDX_FILES["train_labels"], np.zeros(19, dtype=np.uint8))
    with pytest.raises(DataError, match="holds 20 images but .*train-labels-idx1-ubyte holds 19 labels"):
        load("mnist", data_dir=str(tmp_path))


def test_missing_mnist_says_where_it_looked(tmp_path, clean_env):
    with pytest.raises(FileNotFoundError, match="No MNIST IDX files .*--data-dir"):
        load("mnist", data_dir=str(tmp_path))


# --- Fashion-MNIST -------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is


def test_fashion_mnist_download_failure_is_a_clear_error(clean_env, monkeypatch):
    monkeypatch.setenv("LABELSMOOTH_FASHION_MNIST_URL", f"http://127.0.0.1:{_closed_port()}/")
    with pytest.raises(
        FileNotFoundError,
        match="No Fashion-MNIST IDX files.*download from http://127.0.0.1.*failed.*dataset-fashion-mnist",
    ):
        load("fashion-mnist")


def test_fashion_mnist_downloads_into_the_cache(tmp_path, clean_env, monkeypatch):
    served = tmp_path / "served"
    arrays = write_idx_set(served, n_train=20, n_test=10, gz=True)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    handler_cls = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler_cls(*a, directory=str(served)))
    del handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("LABELSMOOTH_FASHION_MNIST_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        d = load("fashion-mnist")
    finally:
        server.shutdown()
        server.server_close()
    np.testing.assert_array_equal(d.y_test.numpy(), arrays["test_labels"])
    assert d.classes[0] == "T-shirt/top"
    assert sorted(os.listdir(tmp_path / "cache" / "labelsmooth" / "fashion-mnist")) == sorted(
        n + ".gz" for n in IDX_FILES.values()
    )


DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not DEBIAN.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_debian_files():
    d = load("fashion-mnist", train_size=1000, test_size=500)
    assert d.x_train.shape == (1000, 1, 28, 28) and d.x_test.shape == (500, 1, 28, 28)
    assert torch.bincount(d.y_train).tolist() == [100] * 10  # the official split is balanced: 6,000 per class
    assert torch.bincount(d.y_test).tolist() == [50] * 10
    with gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
    assert len(labels) == 10_000 and labels.max() == 9


# --- CIFAR ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_batches(tmp_path, clean_env, hundred):
    sub = "cifar-100-python" if hundred else "cifar-10-batches-py"
    batches = write_cifar(tmp_path / sub, hundred=hundred)
    d = load("cifar100" if hundred else "cifar10", data_dir=str(tmp_path))
    n_train = 12 if hundred else 60
    assert d.x_train.shape == (n_train, 3, 32, 32) and d.x_test.shape == (12, 3, 32, 32)
    assert d.num_classes == (100 if hundred else 10) and d.classes[3] == "class3"
    test_data, test_labels = batches["test" if hundred else "test_batch"]
    assert d.y_test.tolist() == test_labels
    # the row layout is 1024 red, then 1024 green, then 1024 blue values, each row-major 32×32
    raw = test_data.reshape(-1, 3, 32, 32).astype(np.float64) / 255
    ratio = np.corrcoef(d.x_test.numpy().ravel(), raw.ravel())[0, 1]
    assert ratio > 0.999  # per-channel standardisation is affine per channel
    assert d.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4


def test_cifar_corrupt_batch_names_the_file(tmp_path, clean_env):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes((tmp_path / "data_batch_3").read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        load("cifar10", data_dir=str(tmp_path))


def test_cifar_labels_out_of_range(tmp_path, clean_env):
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": [0, 10]}, f, protocol=2)
    with pytest.raises(DataError, match=r"labels in \[0, 10\) in .*test_batch"):
        load("cifar10", data_dir=str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path, clean_env):
    write_cifar(tmp_path)
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": _Evil()}, f, protocol=2)
    with pytest.raises(DataError, match="batches.meta.*refusing to load"):
        load("cifar10", data_dir=str(tmp_path))


def test_missing_cifar_says_how_to_get_it(tmp_path, clean_env):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*--data-dir"):
        load("cifar10", data_dir=str(tmp_path))


# --- digits, MNIST-1D, subsets -------------------------------------------------------------------------


def test_digits_split_is_fixed_and_stratified():
    a, b = load("digits"), load("digits")
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert len(a.y_train) + len(a.y_test) == 1797
    share = torch.bincount(a.y_test) / len(a.y_test)
    assert (share - 0.1).abs().max() < 0.01
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-3


def test_subset_is_stratified_and_seed_free():
    d = load("digits", train_size=100, test_size=50)
    assert d.x_train.shape == (100, 1, 8, 8) and d.x_test.shape == (50, 1, 8, 8)
    assert torch.bincount(d.y_train, minlength=10).tolist() == [10] * 10
    assert torch.equal(d.y_train, load("digits", train_size=100, test_size=50).y_train)


def test_subset_larger_than_the_split_is_refused():
    with pytest.raises(ValueError, match="Expected `train_size` <= 1347"):
        load("digits", train_size=5000)


def test_unknown_data_set():
    with pytest.raises(ValueError, match="Expected a data set name in .*'nope'"):
        load("nope")


def test_mnist1d_subset_shapes():
    d = load("mnist1d", train_size=200, test_size=100)
    assert d.x_train.shape == (200, 1, 40) and d.x_test.shape == (100, 1, 40) and d.num_classes == 10


@pytest.mark.slow
def test_mnist1d_default_split_is_make_dataset_defaults(tmp_path, monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = load("mnist1d")
    ref = make_dataset(get_dataset_args())
    np.testing.assert_allclose(d.x_train[:, 0].numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(d.y_test.numpy(), ref["y_test"])
    assert (tmp_path / "labelsmooth" / "mnist1d-5000.npz").is_file()
    assert torch.equal(load("mnist1d").x_test, d.x_test)  # from the cache now
