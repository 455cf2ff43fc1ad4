"""The harness's overhead: ``train()`` against a bare PyTorch loop doing the same work.

Both train the same model (same initialisation) on the same in-memory tensors with AdamW, a per-step
cosine schedule and shuffled batches, and compute the test accuracy after every epoch. ``train()`` adds
what a bare loop lacks: config validation, the library's loss, the per-step finiteness check, the
progress bar, deterministic algorithms and the final calibration metrics. The data set is loaded once
before timing (``train()`` keeps it in memory between runs), so the times compare the loops themselves.

Run (2-core CPU, 1 torch thread):
    PYTHONPATH=src python benchmarks/bench_train_overhead.py --repeats 41  (single runs vary by ±10 % here)
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import labelsmooth
from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.models import build
from labelsmooth.experiment.train import DEFAULT_LR, EVAL_BATCH, load_data, train

CASES = {
    "digits/mlp": dict(dataset="digits", model="mlp", epochs=20),
    "mnist1d/cnn1d": dict(dataset="mnist1d", model="cnn1d", epochs=5),
    "fashion-mnist/cnn (10k subset)": dict(dataset="fashion-mnist", model="cnn", epochs=1, train_size=10_000),
}


def bare_loop(config: RunConfig, loss_fn=F.cross_entropy) -> float:
    """The plain PyTorch loop (torch's own cross-entropy by default): returns the final test accuracy."""
    data = load_data(config.dataset, None, config.train_size, config.test_size)
    torch.manual_seed(config.seed)
    model = build(config.model, data.input_shape, data.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=DEFAULT_LR["adamw"], weight_decay=config.weight_decay)
    n = len(data.y_train)
    steps = math.ceil(n / config.batch_size)
    total = steps * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen = torch.Generator().manual_seed(config.seed)
    accuracy = 0.0
    for _ in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for begin in range(0, n, config.batch_size):
            idx = order[begin : begin + config.batch_size]
            loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            x = data.x_test
            logits = torch.cat([model(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
        accuracy = float((logits.argmax(1) == data.y_test).float().mean())
    return accuracy


def _time(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true", help="let train() draw its progress bar")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument(
        "--with-ls-loss", action="store_true", help="also time the bare loop with labelsmooth.cross_entropy"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"machine: {platform.platform()}, {threads} torch thread(s), torch {torch.__version__}")
    print(f"median of {args.repeats}, alternating, the order flipped (rotated) every repeat; wall / CPU seconds")
    print("ratio: median over repeats of train()/bare within the same repeat; CPU: [25th, 75th percentile]")
    names = ["bare", "bare+ls", "train"] if args.with_ls_loss else ["bare", "train"]
    print(f"{'case':<32} " + " ".join(f"{n:>13}" for n in names) + f" {'ratio wall':>10} {'ratio CPU':>21}")
    for name in args.cases:
        config = RunConfig(**CASES[name])
        load_data(config.dataset, None, config.train_size, config.test_size)  # load once, outside the timing
        runs = {
            "bare": lambda c=config: bare_loop(c),
            "bare+ls": lambda c=config: bare_loop(c, labelsmooth.cross_entropy),
            "train": lambda c=config: train(c, progress=args.progress, threads=args.threads),
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
        for rep in range(args.repeats):  # interleaved, so drifting machine load hits all alike, and the order
            for key in names[rep % len(names) :] + names[: rep % len(names)]:  # rotated: no variant always first
                times[key].append(_time(runs[key]))
        med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
        cells = " ".join(f"{med[k][0]:6.2f}/{med[k][1]:6.2f}" for k in names)
        ratio_wall = statistics.median(t[0] / b[0] for t, b in zip(times["train"], times["bare"]))
        paired = [t[1] / b[1] for t, b in zip(times["train"], times["bare"])]  # same repeat: same machine load
        q1, ratio_cpu, q3 = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
        print(f"{name:<32} {cells} {ratio_wall:10.3f} {ratio_cpu:7.3f} [{q1:.3f}, {q3:.3f}]", flush=True)


if __name__ == "__main__":
    main()
