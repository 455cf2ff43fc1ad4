"""``labelsmooth train``: one training run on a real data set, summarised and optionally written as JSON."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Train one model on one data set with cross-entropy (ce), label smoothing (ls: --gamma G, the probability on
the true class, or --smoothing E --convention uniform|others) or the confidence penalty (cp: --beta B), then
report accuracy, NLL, ECE, adaptive ECE, Brier score, mean confidence and the mean logit gap on the test
set."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from labelsmooth.experiment.config import DEFAULT_EPOCHS, DEFAULT_LR, USER_DEFAULT_EPOCHS, RunConfig

    d = RunConfig("digits", "mlp")
    p = sub.add_parser(
        "train", help="one training run: data set, model, loss; metrics as JSON", description=_DESCRIPTION
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", help="digits, mnist1d, fashion-mnist, mnist, cifar10 or cifar100")
    which.add_argument("--data", metavar="PATH", help="your own data: an image folder, .csv, .parquet or .npz")
    add_data_options(p)
    p.add_argument(
        "--model", default="auto", help="mlp, cnn, resnet, cnn1d, module:callable (your own) or auto (default: auto)"
    )
    p.add_argument("--loss", default="ce", help="ce, ls or cp (default: ce)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gamma", type=float, help="ls: probability on the true class, in (1/K, 1]")
    g.add_argument("--smoothing", type=float, help="ls: ε in --convention's terms")
    p.add_argument("--convention", default=None, help="ls with --smoothing: uniform (default) or others")
    p.add_argument("--beta", type=float, help="cp: weight β of the confidence penalty")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPOCHS.items())
        + "; your own data "
        + str(USER_DEFAULT_EPOCHS)
        + ")",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed (default: {d.seed})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default: {d.batch_size})")
    p.add_argument("--optimizer", default=d.optimizer, help=f"adamw or sgd (default: {d.optimizer})")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default: " + ", ".join(f"{v:g} {k}" for k, v in DEFAULT_LR.items()) + ")",
    )
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default: {d.weight_decay:g})")
    p.add_argument("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default: {d.momentum:g})")
    p.add_argument("--schedule", default=d.schedule, help=f"cosine or constant (default: {d.schedule})")
    p.add_argument("--augment", action="store_true", help="random crop (and flip where it makes sense)")
    p.add_argument("--train-size", type=int, default=None, help="stratified subset of the training split")
    p.add_argument(
        "--label-noise",
        type=float,
        default=0.0,
        help="replace this fraction of the training and validation labels by another class (test stays clean)",
    )
    p.add_argument("--test-size", type=int, default=None, help="stratified subset of the test split")
    p.add_argument("--data-dir", default=None, help="folder holding the data files (see docs/harness.md)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the run (default: torch's)")
    p.add_argument("--out", default=None, help="write the full record (config, metrics, curves, ...) as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def add_data_options(p: argparse.ArgumentParser) -> None:
    """The options of ``--data PATH`` (see :func:`labelsmooth.experiment.user_data.register`)."""
    g = p.add_argument_group("your own data (--data)")
    g.add_argument("--label-column", help="tables: the column holding the class")
    g.add_argument("--one-hot", action="store_true", help="tables: one-hot encode non-numeric feature columns")
    g.add_argument("--image-size", metavar="HxW", help="images: resize every image to H×W (bilinear)")
    g.add_argument("--image-mode", choices=("auto", "rgb", "grayscale"), default="auto", help="images (default: auto)")
    g.add_argument("--no-standardise", action="store_true", help="keep inputs as read (default: standardise)")
    g.add_argument("--test-fraction", type=float, default=None, help="test share carved out if none is given (0.2)")


def check_data_options(args: argparse.Namespace) -> None:
    """Refuse --data's options without --data (they would be ignored silently)."""
    from labelsmooth.cli import CLIError

    given = [
        flag
        for flag, value in (
            ("--label-column", args.label_column),
            ("--one-hot", args.one_hot),
            ("--image-size", args.image_size),
            ("--image-mode", args.image_mode != "auto"),
            ("--no-standardise", args.no_standardise),
            ("--test-fraction", args.test_fraction is not None),
        )
        if value
    ]
    if given and not getattr(args, "data", None):
        raise CLIError(f"{', '.join(given)} need --data PATH (your own data set)")


def user_dataset(args: argparse.Namespace, path: str) -> str:
    """Register ``--data PATH`` with the data options; returns the data set's name (ValueError/DataError naming the problem)."""
    from labelsmooth.experiment import user_data

    options = dict(
        label_column=args.label_column,
        image_size=args.image_size,
        image_mode=args.image_mode,
        categorical="onehot" if args.one_hot else "error",
        standardise=not args.no_standardise,
    )
    if args.test_fraction is not None:
        options["test_fraction"] = args.test_fraction
    import re

    try:
        return user_data.register(path, **options)
    except ImportError as exc:  # pandas or pyarrow missing: the message says what to install
        from labelsmooth.cli import CLIError

        raise CLIError(str(exc)) from None
    except ValueError as exc:  # DataError too; options named as on the command line
        raise type(exc)(re.sub(r"`(\w+)`", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))) from None


def config_from_args(args: argparse.Namespace):
    """The :class:`RunConfig` the arguments describe, validated (ValueError naming the option)."""
    import re

    from labelsmooth.cli import CLIError
    from labelsmooth.experiment.config import RunConfig, default_epochs
    from labelsmooth.experiment.data import DATASETS
    from labelsmooth.experiment.models import default_model

    check_data_options(args)
    if args.data is not None:
        args.dataset = user_dataset(args, args.data)
    elif args.dataset not in DATASETS:
        raise CLIError(f"unknown data set {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    model = default_model(args.dataset) if args.model == "auto" else args.model
    if args.loss != "ls" and (args.gamma is not None or args.smoothing is not None or args.convention):
        raise CLIError(f"--gamma, --smoothing and --convention need --loss ls, but got --loss {args.loss}")
    if args.loss != "cp" and args.beta is not None:
        raise CLIError(f"--beta needs --loss cp, but got --loss {args.loss}")
    if args.convention and args.smoothing is None:
        raise CLIError("--convention goes with --smoothing")
    fields = dict(
        dataset=args.dataset, model=model, loss=args.loss, gamma=args.gamma, smoothing=args.smoothing,
        convention=args.convention or "uniform", beta=args.beta, seed=args.seed, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, momentum=args.momentum,
        schedule=args.schedule, augment=args.augment, train_size=args.train_size, test_size=args.test_size,
        label_noise=args.label_noise,
    )  # fmt: skip
    fields["epochs"] = default_epochs(args.dataset) if args.epochs is None else args.epochs
    try:
        return RunConfig(**fields).validate()
    except (ValueError, TypeError) as exc:
        message = re.sub(r"`(\w+)`", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
        raise CLIError(message) from None


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    from labelsmooth.cli import CLIError

    config = config_from_args(args)
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise CLIError(f"--data-dir {args.data_dir!r} is not a folder")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, but got {args.threads}")
    from labelsmooth.experiment import splits
    from labelsmooth.experiment.atomic import WriteError, atomic_write, write_error
    from labelsmooth.experiment.data import DataError
    from labelsmooth.experiment.models import ModelError
    from labelsmooth.experiment.train import TrainingDiverged, load_data, train

    if args.out:  # a folder that cannot take the file is an error before training, not after
        if os.path.isdir(args.out):
            raise CLIError(f"--out {args.out!r} is a folder; give the JSON file to write")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise write_error(args.out, FileNotFoundError(2, "No such file or directory", folder))
        if not os.access(folder, os.W_OK):
            raise write_error(args.out, PermissionError(13, "Permission denied", folder))
    try:
        if args.data is not None:
            from labelsmooth.experiment.user_data import describe_line, short_name

            dataset = load_data(config.dataset, None, config.train_size, config.test_size)
            print(f"{short_name(config.dataset)} ({dataset.source}): {describe_line(dataset)}")
        record = train(config, data_dir=args.data_dir, progress=not args.no_progress, threads=args.threads)
    except (DataError, ModelError, TrainingDiverged) as exc:
        raise CLIError(str(exc)) from None
    if args.out:
        # the predictions arrays stay out of the JSON: the store keeps them
        text = json.dumps({k: v for k, v in record.items() if k != "predictions"}, indent=2) + "\n"
        try:
            with atomic_write(args.out) as f:
                f.write(text)
        except WriteError:  # the run is finished: hand its record over on stdout rather than lose it
            print(text, end="")
            print("labelsmooth train: the record above could not be written to --out; it is not lost", file=sys.stderr)
            raise
    m, t = record["metrics"], record["timings"]
    shown = args.data if args.data is not None else config.dataset
    print(
        f"{shown}/{config.model} {config.label()} seed={config.seed}, {config.epochs} epochs "
        f"({splits.part_sizes(record['data'])}): "
        f"train {t['train']:.1f} s, total {t['total']:.1f} s"
    )
    print(
        f"  accuracy {m['accuracy']:.4f}  nll {m['nll']:.4f}  ece {m['ece']:.4f}  "
        f"adaptive_ece {m['adaptive_ece']:.4f}  "
        f"brier {m['brier']:.4f}  confidence {m['confidence']:.4f}  logit_gap {m['logit_gap']:.3f}"
    )
    if args.out:
        print(f"  written to {args.out}")
    return 0
