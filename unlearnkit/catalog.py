"""The catalogue of datasets: names, class lists, normalisation statistics, and the
:class:`Dataset` record every loader returns.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``). The loaders live in
:mod:`unlearnkit.data` (which dataset to read, and the dry run's cut) and
:mod:`unlearnkit.formats` (the file formats); both build on this module, which imports neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import profiles

TORCHVISION_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "cifar20", "svhn")
TOY_DATASETS = ("moons", "blobs", "circles")
DATASETS = ("digits", "digits-super") + TORCHVISION_DATASETS + TOY_DATASETS

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_STATS = {
    "digits": ((0.2,), (0.3,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": (CIFAR_MEAN, CIFAR_STD),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
_STATS["cifar20"] = _STATS["cifar100"]
_STATS["digits-super"] = _STATS["digits"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = [
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
]

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
CIFAR20_CLASSES = list(CIFAR100_SUPERCLASSES)  # coarse label order of the dataset
CIFAR100_CLASSES = sorted(f for fines in CIFAR100_SUPERCLASSES.values() for f in fines)  # fine label order
CIFAR100_TO_CIFAR20 = [
    next(i for i, fines in enumerate(CIFAR100_SUPERCLASSES.values()) if f in fines) for f in CIFAR100_CLASSES
]  # fine label -> coarse label

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
    mean: tuple | None = None  # per-channel normalisation applied inside the model
    std: tuple | None = None
    augment: bool = False  # random crop + flip suit this data (natural images)
    fine_train: torch.Tensor | None = None  # CIFAR-20: the CIFAR-100 label of each sample
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
        return replace(
            self,
            x_train=mv(self.x_train),
            y_train=mv(self.y_train),
            x_test=mv(self.x_test),
            y_test=mv(self.y_test),
            fine_train=mv(self.fine_train),
            fine_test=mv(self.fine_test),
        )

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A class-stratified random subset of about ``n_train`` / ``n_test`` samples (never more).

        Stratified over the finest labels the data has (the CIFAR-100 class for CIFAR-20), so
        every class keeps its share and at least one sample where the size allows it.
        """
        for arg, n in (("n_train", n_train), ("n_test", n_test)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
                raise ValueError(f"subset sizes must be positive integers, got {arg}={n!r}.")
        g = np.random.default_rng(seed)
        tr = stratified_indices(
            self.fine_train if self.fine_train is not None else self.y_train, n_train, seed=g
        )
        te = stratified_indices(self.fine_test if self.fine_test is not None else self.y_test, n_test, seed=g)
        f = lambda t, i: None if t is None else t[i.to(t.device)]  # noqa: E731
        return replace(
            self,
            x_train=f(self.x_train, tr),
            y_train=f(self.y_train, tr),
            x_test=f(self.x_test, te),
            y_test=f(self.y_test, te),
            fine_train=f(self.fine_train, tr),
            fine_test=f(self.fine_test, te),
            name=f"{self.name}[{len(tr)}/{len(te)}]",
            meta=dict(self.meta),
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"classes={self.num_classes}, device={self.device})"
        )


def _whole(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
        raise ValueError(f"{name} must be positive (a whole number >= 1), got {v!r}.")
    return int(v)


def stratified_indices(
    y, n: int | None = None, n_per_class: int | None = None, seed: int | np.random.Generator = 0
) -> torch.Tensor:
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
        while k.sum() > n:  # rounding up overshot: trim the most over-served class
            big = np.flatnonzero(k > 1)
            if len(big):
                i = big[np.argmax((k - quota)[big])]
                k[i] -= 1
            else:  # fewer samples than classes: n classes keep one each
                keep = g.choice(len(k), size=n, replace=False)
                k = np.zeros_like(k)
                k[keep] = 1
    picks = [g.choice(m, size=int(c), replace=False) for m, c in zip(members, k) if c > 0]
    return torch.as_tensor(np.sort(np.concatenate(picks)), dtype=torch.long)


# ----------------------------------------------------------------------------- dry-run stand-ins

_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "cifar20": (3, 32, 32),
    "svhn": (3, 32, 32),
}


def _stand_in(name: str, seed: int = 0, n: int | None = None) -> Dataset:
    """A generated dataset shaped like ``name``: same image shape, classes, names and label levels.

    Images are noise around one random pattern per (fine) class, so a model can learn them and
    the code path of the real experiment runs end to end. Only a dry run uses it.
    """
    shape = _SHAPES[name]
    classes = {
        "mnist": [str(i) for i in range(10)],
        "fashion-mnist": list(FASHION_MNIST_CLASSES),
        "cifar10": list(CIFAR10_CLASSES),
        "cifar100": list(CIFAR100_CLASSES),
        "cifar20": list(CIFAR100_CLASSES),
        "svhn": [str(i) for i in range(10)],
    }[name]
    n = profiles.dry_run_images(len(classes)) if n is None else n
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
    # the real dataset's training split: a dry run counts a pass over the stand-in as one over it
    real = {"mnist": 60_000, "fashion-mnist": 60_000, "svhn": 73_257}.get(name, 50_000)
    meta = {"stand_in": True, "dry_run": True, "dry_run_scale": real / n}
    augment = name.startswith("cifar")
    if name == "cifar20":
        to_coarse = torch.tensor(CIFAR100_TO_CIFAR20)
        return Dataset(
            f"{name}[stand-in]",
            xtr,
            to_coarse[ftr],
            xte,
            to_coarse[fte],
            list(CIFAR20_CLASSES),
            mean,
            std,
            augment=augment,
            fine_train=ftr,
            fine_test=fte,
            fine_classes=list(CIFAR100_CLASSES),
            meta=meta,
        )
    return Dataset(f"{name}[stand-in]", xtr, ftr, xte, fte, classes, mean, std, augment=augment, meta=meta)
