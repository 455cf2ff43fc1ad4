"""Data sets larger than the memory limit are refused before they are read, with the size, the limit and
what to do (nothing is streamed: docs/own-data.md, "Memory")."""

from __future__ import annotations

import numpy as np
import pytest
from _user_files import isolated_user_data

from labelsmooth.experiment import user_data
from labelsmooth.experiment.data import DataError

private_cache = isolated_user_data()


def test_an_npz_counts_all_its_parts_together(tmp_path, monkeypatch):
    """x_train and x_test are held at once: 800 + 400 bytes against a limit of 1,000 is refused."""
    path = tmp_path / "a.npz"
    y = np.arange(20) % 2
    np.savez(path, x_train=np.zeros((20, 10), np.float32), y_train=y, x_test=np.zeros((10, 10), np.float32),
             y_test=y[:10])  # fmt: skip
    monkeypatch.setenv("LABELSMOOTH_MAX_DATA_BYTES", "1000")
    with pytest.raises(DataError) as e:
        user_data.register(path)
    message = str(e.value)
    assert message.startswith(f"x_train, x_test in {path} needs ")
    assert "more than the limit of 1000 bytes ($LABELSMOOTH_MAX_DATA_BYTES)" in message
    assert "not read lazily, and loading one takes up to 8 times its inputs at the peak" in message
    assert "resize the images (--image-size, image_size=) or use a part of the data" in message
    monkeypatch.setenv("LABELSMOOTH_MAX_DATA_BYTES", "2000")  # 1,200 bytes of arrays plus their headers fit
    assert user_data.info(user_data.register(path)).num_classes == 2


def test_the_default_limit_is_the_available_memory_over_the_peak_factor(monkeypatch):
    monkeypatch.delenv("LABELSMOOTH_MAX_DATA_BYTES", raising=False)
    import builtins
    import io

    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/meminfo":
            return io.StringIO("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert user_data.PEAK_FACTOR == 8
    assert user_data.memory_limit() == 8_000_000 * 1024 // 8
