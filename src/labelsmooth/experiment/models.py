"""Models by name, sized from the data set: ``build(name, input_shape, num_classes)``.

- ``mlp``: flatten, two hidden layers of 256 with ReLU, a linear head.
- ``cnn``: two 3×3 conv blocks (16, 32 channels, ReLU, 2×2 max-pool), a 128-unit hidden layer, a head.
- ``resnet``: ResNet-20 style (He et al. 2016, §4.2): a 3×3 stem, three stages of three basic blocks with
  16/32/64 channels and batch norm, global average pooling, a head. For 28×28 and 32×32 images.
- ``cnn1d``: for MNIST-1D: three 1-D conv layers (32, 64, 64 channels, ReLU), global max-pool, a head.

``default_model(dataset)`` is the ``auto`` choice: digits → mlp, mnist1d → cnn1d, fashion-mnist and
mnist → cnn, cifar → resnet; for a user data set by its input shape: tables (F,) → mlp, sequences (C, L)
→ cnn1d, images (C, H, W) → cnn.

The user's own model: ``"module:callable"`` names a function or an ``nn.Module`` class called as
``callable(input_shape, num_classes)`` and returning an ``nn.Module`` whose logits are (N, num_classes)
(checked on two zero inputs before training). In Python, :func:`register` turns a factory or class into
such a name. The name, not the code, goes into the run key: change the code, change the name (or the store).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable

import torch
from torch import Tensor, nn

MODELS = ("mlp", "cnn", "resnet", "cnn1d")
_DEFAULTS = {
    "digits": "mlp",
    "mnist1d": "cnn1d",
    "fashion-mnist": "cnn",
    "mnist": "cnn",
    "cifar10": "resnet",
    "cifar100": "resnet",
}


_USER_MODEL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_REGISTERED: dict[str, Callable[..., nn.Module]] = {}  # names of factories not importable by name


class ModelError(ValueError):
    """A user model that cannot be imported or built, or returns logits of the wrong shape."""


def is_user_model(name: object) -> bool:
    """Whether ``name`` has the ``module:callable`` form of a user model.

    Example:
        >>> is_user_model("mlp"), is_user_model("mypackage.nets:make_net")
        (False, True)
    """
    return isinstance(name, str) and _USER_MODEL.match(name) is not None


def register(factory: Callable[..., nn.Module]) -> str:
    """The ``module:callable`` name of a factory or ``nn.Module`` class, for ``RunConfig(model=...)``.

    A callable importable under that name (defined at the top level of a module) works in every process
    (sweep workers, Ray) and its runs resume in a later process. Another one (a lambda, a local function)
    is remembered in this process only, under a name holding its id: a sweep with worker processes or Ray
    refuses it before running anything, and a later process cannot rebuild it (:func:`check_portable`).

    Example:
        >>> register(MLP)
        'labelsmooth.experiment.models:MLP'
    """
    if not callable(factory):
        raise TypeError(
            f"Expected `factory` to be callable (input_shape, num_classes) -> nn.Module, but got {factory!r}"
        )
    name = f"{factory.__module__}:{factory.__qualname__}"
    if not is_user_model(name):  # '<lambda>', '<locals>'
        safe = re.sub(r"[^\w.]", "_", factory.__qualname__)
        name = f"{factory.__module__}:{safe}_{id(factory):x}"
    try:
        found = _resolve(name)
    except ModelError:
        found = None
    if found is not factory:
        _REGISTERED[name] = factory
    return name


#: The names :func:`register` gives a lambda or a local function: the qualname made safe, then the object's id.
_LOCAL_NAME = re.compile(r"[:.](?:_lambda_|_locals_)[\w.]*_[0-9a-f]{8,}$")
_DEFINE_AT_TOP = (
    "define the factory at the top level of a module (importable as module:callable) and register or name that instead"
)


def is_local(name: str) -> bool:
    """Whether ``name`` is one :func:`register` gave a lambda or a local function (valid in its process only).

    Example:
        >>> is_local("nets:small"), is_local("__main__:_lambda__7f2a9c1b3d50")
        (False, True)
    """
    return is_user_model(name) and _LOCAL_NAME.search(name) is not None


def check_portable(names, *, processes: str | None = None) -> None:
    """Raise :class:`ModelError` now, before anything runs, for a user model a run could not rebuild.

    - A name :func:`register` gave a lambda or local function in *this* process, when the runs go to
      ``processes`` (e.g. ``"the 2 worker processes of this sweep"``, or Ray tasks): they import models
      by name and cannot see it.
    - A name of that form that *this* process does not hold (it was registered in another process, e.g. a
      store being resumed): its factory is gone.
    - Any other user model that does not import (the import error, naming the model).

    Example:
        >>> check_portable(["mlp", "labelsmooth.experiment.models:MLP"], processes="2 workers")  # fine
        >>> check_portable(["__main__:_lambda__7f2a9c1b3d50"])
        Traceback (most recent call last):
        ...
        labelsmooth.experiment.models.ModelError: Model '__main__:_lambda__7f2a9c1b3d50' was registered ...
    """
    for name in dict.fromkeys(names):
        if not is_user_model(name):
            continue
        if name in _REGISTERED:
            if processes is not None and is_local(name):
                raise ModelError(
                    f"Model {name!r} is a lambda or local function registered in this process "
                    f"(models.register); {processes} import models by name and cannot rebuild it: "
                    f"{_DEFINE_AT_TOP}, or run in this process (workers=1, --workers 1)"
                )
            continue
        _resolve(name)


def _resolve(name: str) -> Callable[..., nn.Module]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    module, _, attr = name.partition(":")
    if is_local(name):
        raise ModelError(
            f"Model {name!r} was registered from a lambda or local function in another process (its name "
            f"holds that object's id), so it cannot be rebuilt here and its runs cannot be resumed: "
            f"{_DEFINE_AT_TOP}"
        )
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"Cannot import module {module!r} of model {name!r}: {exc}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"Module {module!r} has no {attr!r} (model {name!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"Expected {name!r} to be a callable (input_shape, num_classes) -> nn.Module, but got {obj!r}")
    return obj


def check_logits(model: nn.Module, name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise :class:`ModelError` unless ``model`` maps two zero inputs to logits of shape (2, num_classes).

    The check runs in eval mode without gradients (no batch-norm statistics change) and restores the mode.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise ModelError(
            f"Model {name!r} fails on a batch of inputs of shape {tuple(input_shape)}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelError(
            f"Expected model {name!r} to return logits of shape (N, {num_classes}) (N = 2 inputs of shape "
            f"{tuple(input_shape)}, {num_classes} classes), but got {got}"
        )


def default_model(dataset: str) -> str:
    """The model ``auto`` picks for a data set.

    Example:
        >>> default_model("digits"), default_model("fashion-mnist"), default_model("cifar100")
        ('mlp', 'cnn', 'resnet')
    """
    from labelsmooth.experiment import user_data

    if user_data.is_user_name(dataset):
        return {1: "mlp", 2: "cnn1d", 3: "cnn"}.get(len(user_data.info(dataset).input_shape), "mlp")
    if dataset not in _DEFAULTS:
        raise ValueError(f"Expected a data set name in {list(_DEFAULTS)}, but got {dataset!r}")
    return _DEFAULTS[dataset]


def build(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised model (uses torch's global RNG: seed it first).

    Args:
        name: one of :data:`MODELS`, or a user model ``"module:callable"`` (see the module docstring).
        input_shape: one example's shape without the batch dimension: (C, H, W) images, (C, L) sequences.
        num_classes: K, the width of the output logits (N, K).

    Example:
        >>> m = build("cnn", (1, 28, 28), 10)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    input_shape = tuple(input_shape)
    if is_user_model(name):
        factory = _resolve(name)
        try:
            model = factory(input_shape, num_classes)
        except Exception as exc:
            raise ModelError(
                f"Model {name!r} failed to build for input shape {input_shape} and {num_classes} classes: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(model, nn.Module):
            raise ModelError(f"Expected model {name!r} to return an nn.Module, but got {type(model).__name__}")
        check_logits(model, name, input_shape, num_classes)
        return model
    if name == "mlp":
        return MLP(math.prod(input_shape), num_classes)
    if name == "cnn":
        _need(name, input_shape, 3)
        return CNN(input_shape, num_classes)
    if name == "resnet":
        _need(name, input_shape, 3)
        return ResNet(input_shape[0], num_classes)
    if name == "cnn1d":
        _need(name, input_shape, 2)
        return CNN1d(input_shape, num_classes)
    raise ValueError(f"Expected a model name in {list(MODELS)} or 'module:callable', but got {name!r}")


def _need(name: str, shape: tuple[int, ...], ndim: int) -> None:
    if len(shape) != ndim:
        kind = "(C, H, W) images" if ndim == 3 else "(C, L) sequences"
        raise ValueError(f"Expected model {name!r} to get {kind}, but got inputs of shape {shape}")


class MLP(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class CNN(nn.Sequential):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, widths=(16, 32), hidden: int = 128) -> None:
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU()]
            if min(h, w) >= 4:  # keep 8×8 digits from vanishing
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = width
        layers += [nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)]
        super().__init__(*layers)


class CNN1d(nn.Sequential):
    def __init__(self, input_shape: tuple[int, int], num_classes: int, widths=(32, 64, 64)) -> None:
        c, _ = input_shape
        layers: list[nn.Module] = []
        for i, width in enumerate(widths):
            layers += [
                nn.Conv1d(c, width, 5 if i == 0 else 3, stride=1 if i == 0 else 2, padding=2 if i == 0 else 1),
                nn.ReLU(),
            ]
            c = width
        layers += [nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(c, num_classes)]
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a shortcut (a 1×1 conv-BN where the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet-(6n+2) for small images; n = 3 is ResNet-20 (0.27 M parameters for 10 classes)."""

    def __init__(self, in_channels: int, num_classes: int, n: int = 3, widths=(16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, c = [], widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(c, width, 2 if stage > 0 and i == 0 else 1))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))
