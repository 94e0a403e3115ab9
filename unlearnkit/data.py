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

import gzip
import hashlib
import os
import pickle
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import profiles
from .cache import atomic_save, default_root  # noqa: F401  (kept importable from here)
from .profiles import get_device

TORCHVISION_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "cifar20", "svhn")
TOY_DATASETS = ("moons", "blobs", "circles")
DATASETS = ("digits", "digits-super") + TORCHVISION_DATASETS + TOY_DATASETS

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_STATS = {
    "digits": ((0.2,), (0.3,)), "mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": (CIFAR_MEAN, CIFAR_STD), "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
_STATS["cifar20"] = _STATS["cifar100"]
_STATS["digits-super"] = _STATS["digits"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Boot"]

# CIFAR-100: the 20 super-classes and their 5 fine classes each (Krizhevsky 2009, the dataset's meta file)
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR20_CLASSES = list(CIFAR100_SUPERCLASSES)                      # coarse label order of the dataset
CIFAR100_CLASSES = sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines)   # fine label order
CIFAR100_TO_CIFAR20 = [next(i for i, fines in enumerate(CIFAR100_SUPERCLASSES.values()) if f in fines)
                       for f in CIFAR100_CLASSES]                  # fine label -> coarse label

# digits-super: five super-classes of two digits each, the embedded stand-in for CIFAR-20
DIGITS_SUPERCLASSES = [(0, 6), (1, 7), (2, 3), (4, 9), (5, 8)]


class DatasetUnavailableError(RuntimeError):
    """The files are not on disk and could not be downloaded."""


@dataclass
class Dataset:
    """Train and test tensors on one device, with what a model needs to know about them."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list
    mean: tuple | None = None          # per-channel normalisation applied inside the model
    std: tuple | None = None
    augment: bool = False              # random crop + flip suit this data (natural images)
    fine_train: torch.Tensor | None = None   # CIFAR-20: the CIFAR-100 label of each sample
    fine_test: torch.Tensor | None = None
    fine_classes: list | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {split} has {len(x)} inputs but {len(y)} labels.")
            if len(x) == 0:
                raise ValueError(f"{self.name}: the {split} split is empty.")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    @property
    def fingerprint(self) -> str:
        """A short hash of the data, used to key cached models."""
        h = hashlib.sha256(self.name.encode())
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = t.detach().cpu().contiguous()
            h.update(str(tuple(a.shape)).encode())
            h.update(a.flatten()[:: max(1, a.numel() // 100_000)].numpy().tobytes())
        return h.hexdigest()[:16]

    def to(self, device) -> "Dataset":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, x_train=mv(self.x_train), y_train=mv(self.y_train), x_test=mv(self.x_test),
                       y_test=mv(self.y_test), fine_train=mv(self.fine_train), fine_test=mv(self.fine_test))

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A class-stratified random subset of about ``n_train`` / ``n_test`` samples (never more).

        Stratified over the finest labels the data has (the CIFAR-100 class for CIFAR-20), so
        every class keeps its share and at least one sample where the size allows it.
        """
        for arg, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
                raise ValueError(f"subset sizes must be positive integers, got {arg}={n!r}.")
        g = np.random.default_rng(seed)
        tr = stratified_indices(self.fine_train if self.fine_train is not None else self.y_train, n_train, seed=g)
        te = stratified_indices(self.fine_test if self.fine_test is not None else self.y_test, n_test, seed=g)
        f = lambda t, i: None if t is None else t[i.to(t.device)]  # noqa: E731
        return replace(self, x_train=f(self.x_train, tr), y_train=f(self.y_train, tr),
                       x_test=f(self.x_test, te), y_test=f(self.y_test, te),
                       fine_train=f(self.fine_train, tr), fine_test=f(self.fine_test, te),
                       name=f"{self.name}[{len(tr)}/{len(te)}]", meta=dict(self.meta))

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"classes={self.num_classes}, device={self.device})")


def _whole(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{name} must be positive (a whole number >= 1), got {v!r}.")
    return int(v)


def stratified_indices(y, n: int | None = None, n_per_class: int | None = None,
                       seed: int | np.random.Generator = 0) -> torch.Tensor:
    """Sorted indices of a class-stratified random sample of the labels ``y``.

    * ``n``: about ``n`` samples in all (never more), each class keeping its share of ``y``
      and at least one sample while ``n`` is at least the number of classes (with fewer,
      ``n`` classes drawn at random keep one sample each). ``n >= len(y)`` keeps everything.
    * ``n_per_class``: up to ``n_per_class`` samples of every class.
    * neither: every index.

    ``seed`` is an integer or a ``numpy`` generator (to draw several samples from one stream).
    Returns a CPU ``LongTensor``. Used by :meth:`Dataset.subset`, :meth:`Task.retain_subset`
    and the dry-run cap of :func:`load_dataset`.
    """
    if n is not None and n_per_class is not None:
        raise ValueError("Give n (the total number of samples) or n_per_class, not both.")
    if torch.is_tensor(y):
        yv = y.detach().cpu().numpy()
    else:
        yv = np.asarray(y)
    if yv.ndim != 1:
        raise ValueError(f"stratified_indices needs a 1-D vector of labels, got shape {tuple(yv.shape)}.")
    if len(yv) and yv.dtype.kind not in "iub":
        raise ValueError(f"Labels must be integers, got dtype {yv.dtype}.")
    n = None if n is None else _whole("n", n)
    n_per_class = None if n_per_class is None else _whole("n_per_class", n_per_class)
    N = len(yv)
    if (n is None and n_per_class is None) or (n is not None and n >= N):
        return torch.arange(N)
    if isinstance(seed, np.random.Generator):
        g = seed
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    else:
        g = np.random.default_rng(int(seed))
    classes, inverse = np.unique(yv, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(classes))]
    sizes = np.array([len(m) for m in members])
    if n_per_class is not None:
        k = np.minimum(n_per_class, sizes)
    else:
        quota = n * sizes / N
        k = np.minimum(np.maximum(1, np.round(quota)).astype(np.int64), sizes)
        while k.sum() > n:                         # rounding up overshot: trim the most over-served class
            big = np.flatnonzero(k > 1)
            if len(big):
                i = big[np.argmax((k - quota)[big])]
                k[i] -= 1
            else:                                  # fewer samples than classes: n classes keep one each
                keep = g.choice(len(k), size=n, replace=False)
                k = np.zeros_like(k)
                k[keep] = 1
    picks = [g.choice(m, size=int(c), replace=False) for m, c in zip(members, k) if c > 0]
    return torch.as_tensor(np.sort(np.concatenate(picks)), dtype=torch.long)


# ----------------------------------------------------------------------------- readers of the original formats

def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST ``idx`` file (optionally gzipped)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number).")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[raw[2]]
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(bytearray(raw), dtype=dtype, offset=4 + 4 * ndim)   # writable: torch warns otherwise
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {shape}, found {data.size} values.")
    return data.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


def _read_mnist_like(folder: Path):
    out = []
    for split in ("train", "t10k"):
        xi, yi = _find(folder, f"{split}-images-idx3-ubyte"), _find(folder, f"{split}-labels-idx1-ubyte")
        if xi is None or yi is None:
            return None
        out += [read_idx(xi), read_idx(yi)]
    xtr, ytr, xte, yte = out
    return xtr[:, None], ytr, xte[:, None], yte


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _read_cifar10(folder: Path):
    files = [folder / f"data_batch_{i}" for i in range(1, 6)] + [folder / "test_batch"]
    if not all(f.exists() for f in files):
        return None
    parts = [_unpickle(f) for f in files]
    x = lambda d: np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # noqa: E731
    xtr = np.concatenate([x(d) for d in parts[:5]])
    ytr = np.concatenate([np.asarray(d[b"labels"]) for d in parts[:5]])
    meta = folder / "batches.meta"
    names = ([n.decode() for n in _unpickle(meta)[b"label_names"]] if meta.exists()
             else [str(i) for i in range(10)])
    return xtr, ytr, x(parts[5]), np.asarray(parts[5][b"labels"]), names


def _read_cifar100(folder: Path):
    if not ((folder / "train").exists() and (folder / "test").exists()):
        return None
    tr, te = _unpickle(folder / "train"), _unpickle(folder / "test")
    x = lambda d: np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # noqa: E731
    meta = _unpickle(folder / "meta") if (folder / "meta").exists() else {}
    fine = [n.decode() for n in meta.get(b"fine_label_names", [])] or [str(i) for i in range(100)]
    coarse = [n.decode() for n in meta.get(b"coarse_label_names", [])] or [str(i) for i in range(20)]
    return (x(tr), np.asarray(tr[b"fine_labels"]), np.asarray(tr[b"coarse_labels"]),
            x(te), np.asarray(te[b"fine_labels"]), np.asarray(te[b"coarse_labels"]), fine, coarse)


def _read_svhn(folder: Path):
    tr, te = folder / "train_32x32.mat", folder / "test_32x32.mat"
    if not (tr.exists() and te.exists()):
        return None
    from scipy.io import loadmat
    out = []
    for f in (tr, te):
        m = loadmat(f)
        out += [np.transpose(m["X"], (3, 2, 0, 1)).astype(np.uint8), m["y"].reshape(-1).astype(np.int64) % 10]
    return tuple(out)


_TV_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100",
             "cifar20": "CIFAR100", "svhn": "SVHN"}


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd
    cls = getattr(tvd, _TV_CLASS[name])
    try:
        for split in (("train", "test") if name == "svhn" else (True, False)):
            if name == "svhn":
                cls(str(root), split=split, download=True)
            else:
                cls(str(root), train=split, download=True)
    except Exception as e:  # network errors come in many types
        raise DatasetUnavailableError(
            f"Dataset {name!r} is not under {root} and could not be downloaded ({type(e).__name__}: {e}).\n"
            f"Are you offline? Either copy the original files there (torchvision's layout), point "
            f"UNLEARNKIT_DATA at a folder that has them, load an ImageFolder directory with "
            f"load_dataset('/path/to/folder'), or use the embedded dataset: load_dataset('digits')."
        ) from e


def _from_uint8(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)


def _tv_folders(root: Path) -> dict:
    return {"mnist": root / "MNIST" / "raw", "fashion-mnist": root / "FashionMNIST" / "raw",
            "cifar10": root / "cifar-10-batches-py", "cifar100": root / "cifar-100-python",
            "cifar20": root / "cifar-100-python", "svhn": root}


_READERS = {"mnist": _read_mnist_like, "fashion-mnist": _read_mnist_like, "cifar10": _read_cifar10,
            "cifar100": _read_cifar100, "cifar20": _read_cifar100, "svhn": _read_svhn}


def _load_torchvision(name: str, root: Path, download: bool, stand_in: bool = False, seed: int = 0) -> Dataset:
    folder = _tv_folders(root)[name]
    got = _READERS[name](folder)
    if got is None and stand_in:                 # a dry run: no download, a generated stand-in instead
        print(f"[dry run] {name} is not on this machine: using a generated stand-in "
              f"(random images, same shape and labels)")
        return _stand_in(name, seed=seed)
    if got is None:
        if not download:
            raise DatasetUnavailableError(
                f"Dataset {name!r} is not under {folder} and download=False. Pass download=True "
                f"when online, copy the files there, or use the embedded dataset: load_dataset('digits').")
        _download(name, root)
        got = _READERS[name](folder)
        if got is None:
            raise DatasetUnavailableError(f"Download of {name!r} finished but its files are not in {folder}.")
    mean, std = _STATS[name]
    if name in ("mnist", "fashion-mnist"):
        xtr, ytr, xte, yte = got
        classes = [str(i) for i in range(10)] if name == "mnist" else list(FASHION_MNIST_CLASSES)
        return Dataset(name, _from_uint8(xtr), torch.as_tensor(ytr, dtype=torch.long), _from_uint8(xte),
                       torch.as_tensor(yte, dtype=torch.long), classes, mean, std, augment=False)
    if name == "cifar10":
        xtr, ytr, xte, yte, classes = got
        return Dataset(name, _from_uint8(xtr), torch.as_tensor(ytr, dtype=torch.long), _from_uint8(xte),
                       torch.as_tensor(yte, dtype=torch.long), classes, mean, std, augment=True)
    if name == "svhn":
        xtr, ytr, xte, yte = got
        return Dataset(name, _from_uint8(xtr), torch.as_tensor(ytr), _from_uint8(xte), torch.as_tensor(yte),
                       [str(i) for i in range(10)], mean, std, augment=False)
    xtr, ftr, ctr, xte, fte, cte, fine, coarse = got
    long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    if name == "cifar100":
        return Dataset(name, _from_uint8(xtr), long(ftr), _from_uint8(xte), long(fte), fine, mean, std,
                       augment=True)
    return Dataset(name, _from_uint8(xtr), long(ctr), _from_uint8(xte), long(cte), coarse, mean, std,
                   augment=True, fine_train=long(ftr), fine_test=long(fte), fine_classes=fine)


# ----------------------------------------------------------------------------- dry-run stand-ins

_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32),
           "cifar20": (3, 32, 32), "svhn": (3, 32, 32)}


def _stand_in(name: str, seed: int = 0, n: int | None = None) -> Dataset:
    """A generated dataset shaped like ``name``: same image shape, classes, names and label levels.

    Images are noise around one random pattern per (fine) class, so a model can learn them and
    the code path of the real experiment runs end to end. Only a dry run uses it.
    """
    n = profiles.DRY_RUN_IMAGES if n is None else n
    shape = _SHAPES[name]
    classes = {"mnist": [str(i) for i in range(10)], "fashion-mnist": list(FASHION_MNIST_CLASSES),
               "cifar10": list(CIFAR10_CLASSES), "cifar100": list(CIFAR100_CLASSES),
               "cifar20": list(CIFAR100_CLASSES), "svhn": [str(i) for i in range(10)]}[name]
    g = torch.Generator().manual_seed(10_007 + seed)
    patterns = torch.rand(len(classes), *shape, generator=g)

    def split():
        fine = torch.arange(n) % len(classes)
        fine = fine[torch.randperm(n, generator=g)]
        x = (0.6 * patterns[fine] + 0.4 * torch.rand(n, *shape, generator=g)).clamp_(0, 1)
        return x, fine
    xtr, ftr = split()
    xte, fte = split()
    mean, std = _STATS[name]
    meta = {"stand_in": True, "dry_run": True}
    augment = name.startswith("cifar")
    if name == "cifar20":
        to_coarse = torch.tensor(CIFAR100_TO_CIFAR20)
        return Dataset(f"{name}[stand-in]", xtr, to_coarse[ftr], xte, to_coarse[fte], list(CIFAR20_CLASSES),
                       mean, std, augment=augment, fine_train=ftr, fine_test=fte,
                       fine_classes=list(CIFAR100_CLASSES), meta=meta)
    return Dataset(f"{name}[stand-in]", xtr, ftr, xte, fte, classes, mean, std, augment=augment, meta=meta)


def _dry_run_cap(data: Dataset, seed: int = 0) -> Dataset:
    """At most ``DRY_RUN_IMAGES`` images per split, stratified over the finest labels."""
    cap = profiles.DRY_RUN_IMAGES
    if len(data.y_train) > cap or len(data.y_test) > cap:
        data = data.subset(cap, cap, seed=seed)
    data.meta = {**data.meta, "dry_run": True}
    return data


# ----------------------------------------------------------------------------- embedded data

def _load_digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)
    mean, std = _STATS["digits"]
    return Dataset("digits", torch.from_numpy(xtr), torch.as_tensor(ytr, dtype=torch.long),
                   torch.from_numpy(xte), torch.as_tensor(yte, dtype=torch.long),
                   [str(i) for i in range(10)], mean, std, augment=False)


def _load_digits_super() -> Dataset:
    """The digits with five super-classes of two digits each; the digit is the fine label."""
    d = _load_digits()
    to_super = torch.empty(10, dtype=torch.long)
    for s, pair in enumerate(DIGITS_SUPERCLASSES):
        to_super[list(pair)] = s
    return replace(d, name="digits-super", y_train=to_super[d.y_train], y_test=to_super[d.y_test],
                   classes=[f"{a}/{b}" for a, b in DIGITS_SUPERCLASSES], fine_train=d.y_train,
                   fine_test=d.y_test, fine_classes=list(d.classes))


def make_toy(name: str = "moons", n_train: int = 400, n_test: int = 400, noise: float | None = None,
             seed: int = 0, centers: int = 3) -> Dataset:
    """A 2-D toy problem (``moons``, ``blobs`` or ``circles``), standardised, for decision-boundary pictures."""
    from sklearn import datasets as skd
    n = n_train + n_test
    if name == "moons":
        x, y = skd.make_moons(n, noise=0.2 if noise is None else noise, random_state=seed)
    elif name == "circles":
        x, y = skd.make_circles(n, noise=0.1 if noise is None else noise, factor=0.5, random_state=seed)
    elif name == "blobs":
        x, y = skd.make_blobs(n, centers=centers, cluster_std=1.0 if noise is None else noise, random_state=seed)
    else:
        raise ValueError(f"Unknown toy {name!r}: choose one of {TOY_DATASETS}.")
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return Dataset(name, t(x[:n_train]), t(y[:n_train]).long(), t(x[n_train:]), t(y[n_train:]).long(), classes)


# ----------------------------------------------------------------------------- ImageFolder

_IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".gif", ".tif", ".tiff"}


def _read_image(f: Path, size: int | None) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(f) as im:
            im = im.convert("RGB")
            if size:
                im = im.resize((size, size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError (truncated), SyntaxError, ...
        raise ValueError(f"The image {f} cannot be read ({type(e).__name__}: {e}). The file is damaged or not "
                         f"an image: delete it (or re-extract the dataset) and load again.") from e


def _load_imagefolder(path: Path, root: Path, size: int | None = None) -> Dataset:
    splits = [p for p in ("train", "test") if (path / p).is_dir()]
    if splits != ["train", "test"]:
        raise ValueError(f"{path} is not an ImageFolder dataset: it needs train/<class>/*.jpg and "
                         f"test/<class>/*.jpg sub-folders.")
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{path}/train has no class folders.")
    files = {s: [(f, i) for i, c in enumerate(classes) for f in sorted((path / s / c).glob("*"))
                 if f.suffix.lower() in _IMAGE_EXTS] for s in splits}
    for s in splits:
        if not files[s]:
            raise ValueError(f"{path}/{s} holds no images.")
    stamp = hashlib.sha256(str(path.resolve()).encode())
    for s in splits:
        stamp.update(f"{s}:{len(files[s])}:{max(f.stat().st_mtime_ns for f, _ in files[s])}:{size}".encode())
    cache = root / "cache" / f"imagefolder-{path.name}-{stamp.hexdigest()[:12]}.pt"
    blob = None
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            if not all(k in blob for k in ("x_train", "y_train", "x_test", "y_test")):
                blob = None
        except Exception:                          # a damaged cache is rebuilt from the images
            blob = None
        if blob is None:
            cache.unlink(missing_ok=True)
    if blob is None:
        from concurrent.futures import ThreadPoolExecutor
        blob = {}
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as ex:
            for s in splits:
                imgs = list(ex.map(lambda f: _read_image(f, size), [f for f, _ in files[s]]))
                shapes = {a.shape for a in imgs}
                if len(shapes) != 1:
                    raise ValueError(f"{path}/{s}: images differ in size {sorted(shapes)[:3]}; pass size=...")
                blob[f"x_{s}"] = torch.from_numpy(np.stack(imgs))
                blob[f"y_{s}"] = torch.tensor([i for _, i in files[s]], dtype=torch.long)
        atomic_save(blob, cache)
    xtr, xte = blob["x_train"].float().div_(255), blob["x_test"].float().div_(255)
    mean = tuple(xtr.mean((0, 2, 3)).tolist())
    std = tuple(xtr.std((0, 2, 3)).tolist())
    return Dataset(f"imagefolder:{path.name}", xtr, blob["y_train"], xte, blob["y_test"], classes,
                   mean, std, augment=True, meta={"path": str(path)})


def _norm_name(c: str) -> str:
    return c.strip().lower().replace(" ", "_")


def _imagefolder_as_cifar20(data: Dataset, path: Path) -> Dataset:
    """Relabel an ImageFolder copy of CIFAR-100 (one folder per fine class) with the 20 super-classes,
    keeping the CIFAR-100 class as the fine label (indexed as in the original dataset)."""
    names = [_norm_name(c) for c in data.classes]
    coarse_index = {c: i for i, c in enumerate(CIFAR20_CLASSES)}
    if all(c in coarse_index for c in names):      # already one folder per super-class: no fine labels
        to = torch.tensor([coarse_index[c] for c in names])
        return replace(data, y_train=to[data.y_train], y_test=to[data.y_test], classes=list(CIFAR20_CLASSES))
    fine_index = {c: i for i, c in enumerate(CIFAR100_CLASSES)}
    unknown = [c for c, n in zip(data.classes, names) if n not in fine_index]
    if unknown:
        raise ValueError(
            f"{path} cannot load as cifar20: its class folder{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
            f"{'are not' if len(unknown) > 1 else 'is not a'} CIFAR-100 fine class name"
            f"{'s' if len(unknown) > 1 else ''}. cifar20 needs one folder per CIFAR-100 class, named as in the "
            f"dataset ({', '.join(CIFAR100_CLASSES[:4])}, ...), so that every image's super-class and sub-class "
            f"are known; rename or remove the other folders.")
    to_fine = torch.tensor([fine_index[c] for c in names])
    to_coarse = torch.tensor(CIFAR100_TO_CIFAR20)
    ftr, fte = to_fine[data.y_train], to_fine[data.y_test]
    return replace(data, y_train=to_coarse[ftr], y_test=to_coarse[fte], classes=list(CIFAR20_CLASSES),
                   fine_train=ftr, fine_test=fte, fine_classes=list(CIFAR100_CLASSES))


# ----------------------------------------------------------------------------- the one entry point

def _override_folder(low: str, folder) -> Path | None:
    if folder is not None:
        return Path(folder).expanduser()
    found = profiles.dataset_folder(low)
    if found is None and low == "cifar20":         # a CIFAR-100 copy serves CIFAR-20 as well
        found = profiles.dataset_folder("cifar100")
    return found


def load_dataset(name: str, root: str | Path | None = None, device=None, download: bool = True,
                 n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                 folder: str | Path | None = None, **toy_kwargs) -> Dataset:
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
        raise ValueError(f"folder=... stands in for one of {', '.join(TORCHVISION_DATASETS)}; for another "
                         f"ImageFolder directory call load_dataset({str(folder)!r}).")
    override = _override_folder(low, folder) if low in TORCHVISION_DATASETS else None
    if override is not None:
        # an offline ImageFolder copy stands in for the torchvision download (e.g. CIFAR-10 as JPEGs)
        if not override.is_dir():
            raise ValueError(f"The ImageFolder copy of {low} at {override} does not exist (set by folder=... or "
                             f"UNLEARNKIT_{low.upper().replace('-', '_')}).")
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
        raise ValueError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}, or the path of an "
                         f"ImageFolder directory (train/<class>/..., test/<class>/...).")
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test, seed=seed)
    if dry:
        data = _dry_run_cap(data, seed=seed)
    return data.to(get_device(device))


def class_names(data: Dataset, classes: Sequence[int]) -> list[str]:
    return [data.classes[c] for c in classes]


# batching and augmentation live in :mod:`unlearnkit.training`; their old home keeps the names
from .training import augment, batches  # noqa: E402,F401
