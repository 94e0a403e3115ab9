"""Dataset registry: everything a chapter trains and unlearns on.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

``load_dataset(name)`` returns a :class:`Dataset` whose tensors already live on
the device: images as float32 in ``[0, 1]`` with shape ``(N, C, H, W)`` (the
model normalises inside, so attacks can work in pixel space), labels as int64.

* ``digits``: scikit-learn's bundled 8x8 digits. No download: the embedded default.
* ``digits-super``: the digits grouped into five super-classes (0/6, 1/7, 2/3, 4/9, 5/8),
  the digit kept as the fine label: the embedded stand-in for CIFAR-20 sub-class forgetting.
* ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``cifar20`` (CIFAR-100
  super-classes; the fine label is kept for sub-class forgetting), ``svhn``: read
  from their original file formats under ``root``; missing files are downloaded
  through torchvision when online, otherwise a clear error names the embedded
  alternative. An ImageFolder copy can stand in for any of them (``folder=...`` or
  ``UNLEARNKIT_CIFAR10`` etc., see :func:`unlearnkit.profiles.dataset_folder`); a copy of
  CIFAR-100 with its 100 fine-class folders loads as ``cifar20`` too.
* any ``ImageFolder`` directory (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``),
  decoded once and cached as a tensor file.
* 2-D toys: ``moons``, ``blobs``, ``circles``.

In a dry run (:func:`unlearnkit.profiles.profile` with ``dry_run=True``) every split is cut
to :data:`~unlearnkit.profiles.DRY_RUN_IMAGES` images (class-stratified), nothing is
downloaded, and a dataset that is not on the machine is replaced by a generated stand-in
with the same image shape and labels.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import profiles
from .cache import atomic_save, default_root  # noqa: F401  (kept importable from here)

# the catalogue (names, classes, the Dataset record) is importable from here too
from .catalog import (  # noqa: F401
    _SHAPES,
    _STATS,
    CIFAR10_CLASSES,
    CIFAR20_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_SUPERCLASSES,
    CIFAR100_TO_CIFAR20,
    CIFAR_MEAN,
    CIFAR_STD,
    DATASETS,
    DIGITS_SUPERCLASSES,
    FASHION_MNIST_CLASSES,
    TORCHVISION_DATASETS,
    TOY_DATASETS,
    Dataset,
    DatasetUnavailableError,
    _stand_in,
    stratified_indices,
)
from .formats import _imagefolder_as_cifar20, _load_imagefolder, _load_torchvision, read_idx  # noqa: F401
from .profiles import get_device

# batching and augmentation live in :mod:`unlearnkit.training`; their old home keeps the names
from .training import augment, batches  # noqa: F401


def _dry_run_cap(data: Dataset, seed: int = 0) -> Dataset:
    """At most ``DRY_RUN_IMAGES`` training images (three per class for many classes,
    :func:`~unlearnkit.profiles.dry_run_images`), stratified over the finest labels, and the
    test split cut by the same factor (but to no fewer than three images per class). The factor
    is kept as ``meta["dry_run_scale"]``: a pass over the data would be that many times larger
    in the planned run (:mod:`unlearnkit.budget`)."""
    fine = data.fine_train if getattr(data, "fine_train", None) is not None else data.y_train
    n_classes = int(fine.max()) + 1 if len(fine) else 0
    cap = profiles.dry_run_images(n_classes)
    n_train, n_test = len(data.y_train), len(data.y_test)
    scale = max(1.0, n_train / cap)
    cap_test = min(n_test, max(round(n_test / scale), 3 * n_classes))
    if n_train > cap or n_test > cap_test:
        data = data.subset(min(cap, n_train), cap_test, seed=seed)
    # a generated stand-in knows the real dataset's size (catalog._stand_in)
    scale = data.meta.get("dry_run_scale", 1.0) * n_train / max(1, len(data.y_train))
    data.meta = {**data.meta, "dry_run": True, "dry_run_scale": scale}
    return data


# ----------------------------------------------------------------------------- embedded data


def _load_digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)
    mean, std = _STATS["digits"]
    return Dataset(
        "digits",
        torch.from_numpy(xtr),
        torch.as_tensor(ytr, dtype=torch.long),
        torch.from_numpy(xte),
        torch.as_tensor(yte, dtype=torch.long),
        [str(i) for i in range(10)],
        mean,
        std,
        augment=False,
    )


def _load_digits_super() -> Dataset:
    """The digits with five super-classes of two digits each; the digit is the fine label."""
    d = _load_digits()
    to_super = torch.empty(10, dtype=torch.long)
    for s, pair in enumerate(DIGITS_SUPERCLASSES):
        to_super[list(pair)] = s
    return replace(
        d,
        name="digits-super",
        y_train=to_super[d.y_train],
        y_test=to_super[d.y_test],
        classes=[f"{a}/{b}" for a, b in DIGITS_SUPERCLASSES],
        fine_train=d.y_train,
        fine_test=d.y_test,
        fine_classes=list(d.classes),
    )


def make_toy(
    name: str = "moons",
    n_train: int = 400,
    n_test: int = 400,
    noise: float | None = None,
    seed: int = 0,
    centers: int = 3,
) -> Dataset:
    """A 2-D toy problem (``moons``, ``blobs`` or ``circles``), standardised, for pictures of
    decision boundaries."""
    from sklearn import datasets as skd

    n = n_train + n_test
    if name == "moons":
        x, y = skd.make_moons(n, noise=0.2 if noise is None else noise, random_state=seed)
    elif name == "circles":
        x, y = skd.make_circles(n, noise=0.1 if noise is None else noise, factor=0.5, random_state=seed)
    elif name == "blobs":
        x, y = skd.make_blobs(
            n, centers=centers, cluster_std=1.0 if noise is None else noise, random_state=seed
        )
    else:
        raise ValueError(f"Unknown toy {name!r}: choose one of {TOY_DATASETS}.")
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return Dataset(
        name, t(x[:n_train]), t(y[:n_train]).long(), t(x[n_train:]), t(y[n_train:]).long(), classes
    )


# ----------------------------------------------------------------------------- the one entry point


def _override_folder(low: str, folder) -> Path | None:
    if folder is not None:
        return Path(folder).expanduser()
    found = profiles.dataset_folder(low)
    if found is None and low == "cifar20":  # a CIFAR-100 copy serves CIFAR-20 as well
        found = profiles.dataset_folder("cifar100")
    return found


def load_dataset(
    name: str,
    root: str | Path | None = None,
    device=None,
    download: bool = True,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    folder: str | Path | None = None,
    **toy_kwargs,
) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`) or from an ImageFolder directory path.

    ``n_train``/``n_test`` take a class-stratified subset. Tensors end up on ``device``
    (default: the active profile's device). ``folder`` points a named dataset (``cifar10``,
    ``cifar20``, ...) at an ImageFolder copy of it, as ``UNLEARNKIT_CIFAR10`` etc. do; a
    CIFAR-100 copy with its 100 fine-class folders loads as ``cifar20`` with both label levels.

    In a dry run every split keeps at most ``profiles.DRY_RUN_IMAGES`` images, nothing is
    downloaded, and a named dataset that is not on this machine is replaced by a generated
    stand-in of the same shape and labels (said in one printed line).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"load_dataset expects a dataset name or folder path, got {type(name).__name__}.")
    dry = profiles.active().dry_run
    root = Path(root) if root is not None else default_root()
    key = str(name).strip()
    low = key.lower().replace("_", "-")
    if low == "fashionmnist":
        low = "fashion-mnist"
    if folder is not None and low not in TORCHVISION_DATASETS:
        raise ValueError(
            f"folder=... stands in for one of {', '.join(TORCHVISION_DATASETS)}; for another "
            f"ImageFolder directory call load_dataset({str(folder)!r})."
        )
    override = _override_folder(low, folder) if low in TORCHVISION_DATASETS else None
    if override is not None:
        # an offline ImageFolder copy stands in for the torchvision download (e.g. CIFAR-10 as JPEGs)
        if not override.is_dir():
            raise ValueError(
                f"The ImageFolder copy of {low} at {override} does not exist (set by folder=... or "
                f"UNLEARNKIT_{low.upper().replace('-', '_')})."
            )
        data = _load_imagefolder(override, root)
        if low == "cifar20":
            data = _imagefolder_as_cifar20(data, override)
        data.name = f"{low}-imagefolder"
        data.mean, data.std = _STATS[low]
    elif low == "digits":
        data = _load_digits()
    elif low == "digits-super":
        data = _load_digits_super()
    elif low in TORCHVISION_DATASETS:
        data = _load_torchvision(low, root, download and not dry, stand_in=dry, seed=seed)
    elif low in TOY_DATASETS:
        # draw at least the sizes asked for (the default pool is 400 + 400), then subset as for any dataset
        sizes = {k: max(v, 400) for k, v in (("n_train", n_train), ("n_test", n_test)) if v is not None}
        data = make_toy(low, seed=seed, **{**sizes, **toy_kwargs})
    elif low.startswith("imagefolder:") or Path(key).expanduser().is_dir():
        path = Path(key.split(":", 1)[1] if low.startswith("imagefolder:") else key).expanduser()
        if not path.is_dir():
            raise ValueError(f"ImageFolder path {path} does not exist.")
        data = _load_imagefolder(path, root)
    else:
        raise ValueError(
            f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}, or the path of an "
            f"ImageFolder directory (train/<class>/..., test/<class>/...)."
        )
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test, seed=seed)
    if dry:
        data = _dry_run_cap(data, seed=seed)
    return data.to(get_device(device))
