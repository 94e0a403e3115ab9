"""Files on disk: the original formats of the torchvision datasets and ImageFolder copies.

Used by :func:`unlearnkit.load_dataset` (``unlearnkit/data.py``), which is what chapters call.

* MNIST ``idx`` files, the CIFAR-10/100 python pickles and SVHN's ``.mat`` files are read
  directly (no torchvision dataset object); missing files are downloaded through torchvision
  when online, otherwise :class:`~unlearnkit.data.DatasetUnavailableError` says what to do.
* An ``ImageFolder`` directory (``train/<class>/*.jpg``, ``test/<class>/*.jpg``) is decoded
  once and cached atomically as a tensor file; a damaged image is named in a clear error. A
  CIFAR-100 copy with its 100 fine-class folders becomes CIFAR-20 with both label levels.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .cache import atomic_save
from .catalog import (
    _STATS,
    CIFAR20_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_TO_CIFAR20,
    FASHION_MNIST_CLASSES,
    Dataset,
    DatasetUnavailableError,
    _stand_in,
)

# ---------------------------------------------------------------------------- readers of the original formats


def read_idx(path: Path) -> np.ndarray:
    """Read an MNIST ``idx`` file (optionally gzipped)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number).")
    dtype = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[raw[2]]
    ndim = raw[3]
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(bytearray(raw), dtype=dtype, offset=4 + 4 * ndim)  # writable: torch warns otherwise
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
    names = (
        [n.decode() for n in _unpickle(meta)[b"label_names"]]
        if meta.exists()
        else [str(i) for i in range(10)]
    )
    return xtr, ytr, x(parts[5]), np.asarray(parts[5][b"labels"]), names


def _read_cifar100(folder: Path):
    if not ((folder / "train").exists() and (folder / "test").exists()):
        return None
    tr, te = _unpickle(folder / "train"), _unpickle(folder / "test")
    x = lambda d: np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # noqa: E731
    meta = _unpickle(folder / "meta") if (folder / "meta").exists() else {}
    fine = [n.decode() for n in meta.get(b"fine_label_names", [])] or [str(i) for i in range(100)]
    coarse = [n.decode() for n in meta.get(b"coarse_label_names", [])] or [str(i) for i in range(20)]
    return (
        x(tr),
        np.asarray(tr[b"fine_labels"]),
        np.asarray(tr[b"coarse_labels"]),
        x(te),
        np.asarray(te[b"fine_labels"]),
        np.asarray(te[b"coarse_labels"]),
        fine,
        coarse,
    )


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


_TV_CLASS = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "cifar20": "CIFAR100",
    "svhn": "SVHN",
}


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, _TV_CLASS[name])
    try:
        for split in ("train", "test") if name == "svhn" else (True, False):
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
    return {
        "mnist": root / "MNIST" / "raw",
        "fashion-mnist": root / "FashionMNIST" / "raw",
        "cifar10": root / "cifar-10-batches-py",
        "cifar100": root / "cifar-100-python",
        "cifar20": root / "cifar-100-python",
        "svhn": root,
    }


_READERS = {
    "mnist": _read_mnist_like,
    "fashion-mnist": _read_mnist_like,
    "cifar10": _read_cifar10,
    "cifar100": _read_cifar100,
    "cifar20": _read_cifar100,
    "svhn": _read_svhn,
}


def _load_torchvision(
    name: str, root: Path, download: bool, stand_in: bool = False, seed: int = 0
) -> Dataset:
    folder = _tv_folders(root)[name]
    got = _READERS[name](folder)
    if got is None and stand_in:  # a dry run: no download, a generated stand-in instead
        print(
            f"[dry run] {name} is not on this machine: using a generated stand-in "
            f"(random images, same shape and labels)"
        )
        return _stand_in(name, seed=seed)
    if got is None:
        if not download:
            raise DatasetUnavailableError(
                f"Dataset {name!r} is not under {folder} and download=False. Pass download=True "
                f"when online, copy the files there, or use the embedded dataset: load_dataset('digits')."
            )
        _download(name, root)
        got = _READERS[name](folder)
        if got is None:
            raise DatasetUnavailableError(f"Download of {name!r} finished but its files are not in {folder}.")
    mean, std = _STATS[name]
    if name in ("mnist", "fashion-mnist"):
        xtr, ytr, xte, yte = got
        classes = [str(i) for i in range(10)] if name == "mnist" else list(FASHION_MNIST_CLASSES)
        return Dataset(
            name,
            _from_uint8(xtr),
            torch.as_tensor(ytr, dtype=torch.long),
            _from_uint8(xte),
            torch.as_tensor(yte, dtype=torch.long),
            classes,
            mean,
            std,
            augment=False,
        )
    if name == "cifar10":
        xtr, ytr, xte, yte, classes = got
        return Dataset(
            name,
            _from_uint8(xtr),
            torch.as_tensor(ytr, dtype=torch.long),
            _from_uint8(xte),
            torch.as_tensor(yte, dtype=torch.long),
            classes,
            mean,
            std,
            augment=True,
        )
    if name == "svhn":
        xtr, ytr, xte, yte = got
        return Dataset(
            name,
            _from_uint8(xtr),
            torch.as_tensor(ytr),
            _from_uint8(xte),
            torch.as_tensor(yte),
            [str(i) for i in range(10)],
            mean,
            std,
            augment=False,
        )
    xtr, ftr, ctr, xte, fte, cte, fine, coarse = got
    long = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    if name == "cifar100":
        return Dataset(
            name, _from_uint8(xtr), long(ftr), _from_uint8(xte), long(fte), fine, mean, std, augment=True
        )
    return Dataset(
        name,
        _from_uint8(xtr),
        long(ctr),
        _from_uint8(xte),
        long(cte),
        coarse,
        mean,
        std,
        augment=True,
        fine_train=long(ftr),
        fine_test=long(fte),
        fine_classes=fine,
    )


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
        raise ValueError(
            f"The image {f} cannot be read ({type(e).__name__}: {e}). The file is damaged or not "
            f"an image: delete it (or re-extract the dataset) and load again."
        ) from e


def _load_imagefolder(path: Path, root: Path, size: int | None = None) -> Dataset:
    splits = [p for p in ("train", "test") if (path / p).is_dir()]
    if splits != ["train", "test"]:
        raise ValueError(
            f"{path} is not an ImageFolder dataset: it needs train/<class>/*.jpg and "
            f"test/<class>/*.jpg sub-folders."
        )
    classes = sorted(p.name for p in (path / "train").iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{path}/train has no class folders.")
    files = {
        s: [
            (f, i)
            for i, c in enumerate(classes)
            for f in sorted((path / s / c).glob("*"))
            if f.suffix.lower() in _IMAGE_EXTS
        ]
        for s in splits
    }
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
        except Exception:  # a damaged cache is rebuilt from the images
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
    return Dataset(
        f"imagefolder:{path.name}",
        xtr,
        blob["y_train"],
        xte,
        blob["y_test"],
        classes,
        mean,
        std,
        augment=True,
        meta={"path": str(path)},
    )


def _norm_name(c: str) -> str:
    return c.strip().lower().replace(" ", "_")


def _imagefolder_as_cifar20(data: Dataset, path: Path) -> Dataset:
    """Relabel an ImageFolder copy of CIFAR-100 (one folder per fine class) with the 20 super-classes,
    keeping the CIFAR-100 class as the fine label (indexed as in the original dataset)."""
    names = [_norm_name(c) for c in data.classes]
    coarse_index = {c: i for i, c in enumerate(CIFAR20_CLASSES)}
    if all(c in coarse_index for c in names):  # already one folder per super-class: no fine labels
        to = torch.tensor([coarse_index[c] for c in names])
        return replace(data, y_train=to[data.y_train], y_test=to[data.y_test], classes=list(CIFAR20_CLASSES))
    fine_index = {c: i for i, c in enumerate(CIFAR100_CLASSES)}
    unknown = [c for c, n in zip(data.classes, names) if n not in fine_index]
    if unknown:
        raise ValueError(
            f"{path} cannot load as cifar20: its class folder{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
            f"{'are not' if len(unknown) > 1 else 'is not a'} CIFAR-100 fine class name"
            f"{'s' if len(unknown) > 1 else ''}. cifar20 needs one folder per CIFAR-100 class, named as "
            f"in the dataset ({', '.join(CIFAR100_CLASSES[:4])}, ...), so that every image's super-class "
            f"and sub-class are known; rename or remove the other folders."
        )
    to_fine = torch.tensor([fine_index[c] for c in names])
    to_coarse = torch.tensor(CIFAR100_TO_CIFAR20)
    ftr, fte = to_fine[data.y_train], to_fine[data.y_test]
    return replace(
        data,
        y_train=to_coarse[ftr],
        y_test=to_coarse[fte],
        classes=list(CIFAR20_CLASSES),
        fine_train=ftr,
        fine_test=fte,
        fine_classes=list(CIFAR100_CLASSES),
    )
