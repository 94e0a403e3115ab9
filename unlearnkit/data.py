"""Dataset registry: everything a chapter trains and unlearns on.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

``load_dataset(name)`` returns a :class:`Dataset` whose tensors already live on
the device: images as float32 in ``[0, 1]`` with shape ``(N, C, H, W)`` (the
model normalises inside, so attacks can work in pixel space), labels as int64.

* ``digits``: scikit-learn's bundled 8x8 digits. No download: the embedded default.
* ``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``cifar20`` (CIFAR-100
  super-classes; the fine label is kept for sub-class forgetting), ``svhn``: read
  from their original file formats under ``root``; missing files are downloaded
  through torchvision when online, otherwise a clear error names the embedded
  alternative.
* any ``ImageFolder`` directory (``train/<class>/*.jpg`` and ``test/<class>/*.jpg``),
  decoded once and cached as a tensor file.
* 2-D toys: ``moons``, ``blobs``, ``circles``.
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

from .profiles import get_device

TORCHVISION_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "cifar20", "svhn")
TOY_DATASETS = ("moons", "blobs", "circles")
DATASETS = ("digits",) + TORCHVISION_DATASETS + TOY_DATASETS

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_STATS = {
    "digits": ((0.2,), (0.3,)), "mnist": ((0.1307,), (0.3081,)), "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": (CIFAR_MEAN, CIFAR_STD), "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
_STATS["cifar20"] = _STATS["cifar100"]


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
        """A class-stratified random subset (for the quick and smoke profiles)."""
        g = np.random.default_rng(seed)

        def pick(y, n):
            if n is None or n >= len(y):
                return torch.arange(len(y))
            if n <= 0:
                raise ValueError(f"subset sizes must be positive, got {n}.")
            yc = y.cpu().numpy()
            idx = []
            for c in np.unique(yc):
                members = np.flatnonzero(yc == c)
                k = max(1, round(n * len(members) / len(yc)))
                idx.extend(g.choice(members, size=min(k, len(members)), replace=False))
            return torch.as_tensor(np.sort(np.array(idx)), dtype=torch.long)

        tr, te = pick(self.y_train, n_train), pick(self.y_test, n_test)
        f = lambda t, i: None if t is None else t[i.to(t.device)]  # noqa: E731
        return replace(self, x_train=f(self.x_train, tr), y_train=f(self.y_train, tr),
                       x_test=f(self.x_test, te), y_test=f(self.y_test, te),
                       fine_train=f(self.fine_train, tr), fine_test=f(self.fine_test, te),
                       name=f"{self.name}[{len(tr)}/{len(te)}]")

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"classes={self.num_classes}, device={self.device})")


# ----------------------------------------------------------------------------- roots and caching

def default_root() -> Path:
    """``UNLEARNKIT_DATA``, else ``data/`` of a source checkout, else ``~/.cache/unlearnkit``."""
    env = os.environ.get("UNLEARNKIT_DATA")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent / "data"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    return Path.home() / ".cache" / "unlearnkit"


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    folders = {"mnist": root / "MNIST" / "raw", "fashion-mnist": root / "FashionMNIST" / "raw",
               "cifar10": root / "cifar-10-batches-py", "cifar100": root / "cifar-100-python",
               "cifar20": root / "cifar-100-python", "svhn": root}
    readers = {"mnist": _read_mnist_like, "fashion-mnist": _read_mnist_like, "cifar10": _read_cifar10,
               "cifar100": _read_cifar100, "cifar20": _read_cifar100, "svhn": _read_svhn}
    got = readers[name](folders[name])
    if got is None:
        if not download:
            raise DatasetUnavailableError(
                f"Dataset {name!r} is not under {folders[name]} and download=False. Pass download=True "
                f"when online, copy the files there, or use the embedded dataset: load_dataset('digits').")
        _download(name, root)
        got = readers[name](folders[name])
        if got is None:
            raise DatasetUnavailableError(f"Download of {name!r} finished but its files are not in {folders[name]}.")
    mean, std = _STATS[name]
    if name in ("mnist", "fashion-mnist"):
        xtr, ytr, xte, yte = got
        classes = [str(i) for i in range(10)] if name == "mnist" else [
            "T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
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
    if name == "cifar100":
        return Dataset(name, _from_uint8(xtr), torch.as_tensor(ftr), _from_uint8(xte), torch.as_tensor(fte),
                       fine, mean, std, augment=True)
    return Dataset(name, _from_uint8(xtr), torch.as_tensor(ctr), _from_uint8(xte), torch.as_tensor(cte),
                   coarse, mean, std, augment=True, fine_train=torch.as_tensor(ftr),
                   fine_test=torch.as_tensor(fte), fine_classes=fine)


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

def _load_imagefolder(path: Path, root: Path, size: int | None = None) -> Dataset:
    from PIL import Image
    splits = [p for p in ("train", "test") if (path / p).is_dir()]
    if splits != ["train", "test"]:
        raise ValueError(f"{path} is not an ImageFolder dataset: it needs train/<class>/*.jpg and "
                         f"test/<class>/*.jpg sub-folders.")
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{path}/train has no class folders.")
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}
    files = {s: [(f, i) for i, c in enumerate(classes) for f in sorted((path / s / c).glob("*"))
                 if f.suffix.lower() in exts] for s in splits}
    for s in splits:
        if not files[s]:
            raise ValueError(f"{path}/{s} holds no images.")
    stamp = hashlib.sha256(str(path.resolve()).encode())
    for s in splits:
        stamp.update(f"{s}:{len(files[s])}:{max(f.stat().st_mtime_ns for f, _ in files[s])}:{size}".encode())
    cache = root / "cache" / f"imagefolder-{path.name}-{stamp.hexdigest()[:12]}.pt"
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
        except Exception:
            blob = None
            cache.unlink()
    else:
        blob = None
    if blob is None:
        from concurrent.futures import ThreadPoolExecutor

        def read(f):
            im = Image.open(f).convert("RGB")
            if size:
                im = im.resize((size, size))
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
        blob = {}
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as ex:
            for s in splits:
                imgs = list(ex.map(read, [f for f, _ in files[s]]))
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


# ----------------------------------------------------------------------------- the one entry point

def load_dataset(name: str, root: str | Path | None = None, device=None, download: bool = True,
                 n_train: int | None = None, n_test: int | None = None, seed: int = 0, **toy_kwargs) -> Dataset:
    """Load a dataset by name (see :data:`DATASETS`) or from an ImageFolder directory path.

    ``n_train``/``n_test`` take a class-stratified subset. Tensors end up on ``device``
    (default: the profile's device).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"load_dataset expects a dataset name or folder path, got {type(name).__name__}.")
    root = Path(root) if root is not None else default_root()
    key = str(name).strip()
    low = key.lower().replace("_", "-")
    if low == "fashionmnist":
        low = "fashion-mnist"
    env_folder = os.environ.get(f"UNLEARNKIT_{low.upper().replace('-', '_')}")
    if env_folder and low in TORCHVISION_DATASETS:
        # an offline ImageFolder copy stands in for the torchvision download (e.g. CIFAR-10 as JPEGs)
        data = _load_imagefolder(Path(env_folder).expanduser(), root)
        data.name = f"{low}-imagefolder"
        if low in _STATS:
            data.mean, data.std = _STATS[low]
    elif low == "digits":
        data = _load_digits()
    elif low in TORCHVISION_DATASETS:
        data = _load_torchvision(low, root, download)
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
    return data.to(get_device(device))


# ----------------------------------------------------------------------------- batching and augmentation

def batches(*tensors: torch.Tensor, batch_size: int = 128, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False):
    """Yield aligned mini-batches of device-resident tensors (no DataLoader, no copies to the host)."""
    n = len(tensors[0])
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    order = (torch.randperm(n, generator=generator, device="cpu").to(tensors[0].device) if shuffle
             else None)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        if order is None:
            yield tuple(t[i:i + batch_size] for t in tensors)
        else:
            j = order[i:i + batch_size]
            yield tuple(t[j] for t in tensors)


def augment(x: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip for a whole batch, on its device."""
    if x.dim() != 4:
        return x
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev)[None])            # (n, h)
        cols = (dx[:, None] + torch.arange(w, device=dev)[None])            # (n, w)
        x = xp[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
               rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        m = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    return x


def class_names(data: Dataset, classes: Sequence[int]) -> list[str]:
    return [data.classes[c] for c in classes]
