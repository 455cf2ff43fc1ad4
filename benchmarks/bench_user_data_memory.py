"""Peak resident memory of loading a user data set, as a multiple of its float32 inputs.

Writes a 25,000 × 1,000 float32 ``.npz`` (95 MiB), then registers it, loads it and takes the parts a run
gets (:func:`labelsmooth.experiment.splits.make_splits`), and prints the peak RSS above the resting size
(``ru_maxrss``) divided by the inputs' size. ``user_data.PEAK_FACTOR`` rounds this up.

    python benchmarks/bench_user_data_memory.py std     # with standardisation (the default)
    python benchmarks/bench_user_data_memory.py raw     # standardise=False
"""

import os
import resource
import sys
import tempfile

import numpy as np

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()
import torch  # noqa: E402

from labelsmooth.experiment import user_data  # noqa: E402
from labelsmooth.experiment.splits import make_splits  # noqa: E402


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(mode: str) -> None:
    torch.set_num_threads(1)
    n, f = 25_000, 1_000
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "big.npz")
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.standard_normal((n, f), dtype=np.float32), y_train=np.arange(n) % 10)
    base = rss()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # writing the file (freed)
    name = user_data.register(path, standardise=mode == "std")
    make_splits(user_data.load(name), 0, 0.2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = 4 * n * f
    print(
        f"standardise={mode == 'std'}: inputs {size / 2**20:.0f} MiB; resting RSS {base / 2**20:.0f} MiB "
        f"(peak before loading {peak_before / 2**20:.0f} MiB); peak {peak / 2**20:.0f} MiB: "
        f"{(peak - base) / size:.2f}x the inputs above rest; held after {(rss() - base) / size:.2f}x"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "std")
