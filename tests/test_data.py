"""Loaders read small files written in the datasets' real formats; batching and augmentation."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit import data as ukdata
from unlearnkit.data import read_idx


def offline(monkeypatch):
    """Any download attempt fails loudly: the loaders must find the files written by the test."""

    def refuse(name, root):
        raise AssertionError(f"tried to download {name}")

    monkeypatch.setattr(uk.formats, "_download", refuse)


# ----------------------------------------------------------------------------- digits and toys


def test_digits_is_embedded_and_well_formed():
    d = uk.load_dataset("digits", device="cpu")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10 and d.classes == [str(i) for i in range(10)]
    assert len(d.y_train) + len(d.y_test) == 1797 and len(d.y_test) == 360
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0 and d.x_train.max() == 1.0
    assert not d.augment and d.device.type == "cpu"
    assert d.fingerprint == uk.load_dataset("DIGITS", device="cpu").fingerprint


def test_subset_is_stratified_and_seeded(digits):
    full = uk.load_dataset("digits", device="cpu")
    assert torch.bincount(digits.y_train).tolist() in ([30] * 8 + [29, 30], [30] * 10)
    assert torch.bincount(digits.y_test).tolist() == [10] * 10
    # every subset row is a row of the full set, with its label
    d = torch.cdist(digits.x_train.flatten(1), full.x_train.flatten(1))
    j = d.argmin(1)
    assert (d.min(1).values == 0).all() and torch.equal(full.y_train[j], digits.y_train)
    again = uk.load_dataset("digits", device="cpu", n_train=300, n_test=100)
    assert torch.equal(again.x_train, digits.x_train)
    other = full.subset(300, 100, seed=1)
    assert not torch.equal(other.x_train, digits.x_train)
    assert digits.fingerprint != full.fingerprint != other.fingerprint
    assert full.subset(None, 10_000).x_test.shape == full.x_test.shape


def test_digits_super_is_the_embedded_cifar20():
    d = uk.load_dataset("digits-super", device="cpu")
    digits = uk.load_dataset("digits", device="cpu")
    assert "digits-super" in uk.DATASETS and d.name == "digits-super"
    assert d.classes == ["0/6", "1/7", "2/3", "4/9", "5/8"] and d.num_classes == 5
    assert d.fine_classes == [str(i) for i in range(10)]
    assert torch.equal(d.fine_train, digits.y_train) and torch.equal(d.fine_test, digits.y_test)
    assert torch.equal(d.x_train, digits.x_train)
    for s, (a, b) in enumerate(ukdata.DIGITS_SUPERCLASSES):
        for fine, coarse in ((d.fine_train, d.y_train), (d.fine_test, d.y_test)):
            assert (coarse[(fine == a) | (fine == b)] == s).all()
    task = uk.forget_subclass(d, "3")
    assert torch.equal(task.forget_idx, uk.forget_subclass(d, 3).forget_idx)
    assert task.forget_classes == [2] and task.name == "forget sub-class 3 (of 2/3)"
    assert (d.fine_train[task.forget_idx] == 3).all() and len(task.forget_idx) == int(
        (d.y_train.eq(2) & d.fine_train.eq(3)).sum()
    )
    _, yr = task.retain_set()
    assert (d.fine_train[task.retain_idx] == 2).sum() > 0 and (
        yr == 2
    ).sum() > 0  # digit 2 keeps the label 2/3
    # a subset keeps every digit, and the two label levels aligned
    sub = d.subset(50, 20, seed=1)
    assert set(sub.fine_train.tolist()) == set(range(10)) and len(sub.y_train) <= 50
    to_super = {f: s for s, pair in enumerate(ukdata.DIGITS_SUPERCLASSES) for f in pair}
    assert sub.y_train.tolist() == [to_super[int(f)] for f in sub.fine_train]


# ----------------------------------------------------------------------------- stratified sampling


def test_stratified_indices_total_is_proportional_and_never_more():
    from unlearnkit.data import stratified_indices

    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = stratified_indices(y, n=10, seed=0)
    assert idx.dtype == torch.long and torch.equal(idx, idx.sort().values) and len(idx.unique()) == len(idx)
    assert torch.bincount(y[idx]).tolist() == [5, 3, 2]
    assert torch.equal(idx, stratified_indices(y, n=10, seed=0))
    assert not torch.equal(idx, stratified_indices(y, n=10, seed=1))
    assert torch.equal(stratified_indices(y, n=100), torch.arange(100))
    assert torch.equal(stratified_indices(y, n=1000), torch.arange(100))
    assert torch.equal(stratified_indices(y), torch.arange(100))
    # rounding would give 1 + 1 + ... for many tiny classes: the total still stays within n
    many = torch.arange(40).repeat_interleave(3)  # 40 classes of 3
    for n in (1, 7, 39, 40, 41, 100):
        got = stratified_indices(many, n=n, seed=2)
        assert len(got) <= n and len(got) == len(got.unique())
        if n >= 40:
            assert set(many[got].tolist()) == set(range(40))  # every class keeps one
        else:
            assert len(set(many[got].tolist())) == len(got)  # n classes, one each
    # numpy labels and a shared generator work too
    g = np.random.default_rng(0)
    a = stratified_indices(y.numpy(), n=10, seed=g)
    b = stratified_indices(y.numpy(), n=10, seed=g)
    assert len(a) == len(b) == 10 and not torch.equal(a, b)


def test_stratified_indices_per_class_and_bad_arguments():
    from unlearnkit.data import stratified_indices

    y = torch.tensor([2] * 6 + [0] * 2 + [7] * 4)
    idx = stratified_indices(y, n_per_class=3, seed=0)
    assert sorted(y[idx].tolist()) == [0, 0, 2, 2, 2, 7, 7, 7]
    with pytest.raises(ValueError, match=r"n must be positive \(a whole number >= 1\), got 0"):
        stratified_indices(y, n=0)
    with pytest.raises(ValueError, match=r"n_per_class must be positive .* got -1"):
        stratified_indices(y, n_per_class=-1)
    with pytest.raises(ValueError, match=r"n must be positive .* got 2\.5"):
        stratified_indices(y, n=2.5)
    with pytest.raises(ValueError, match=r"n must be positive .* got True"):
        stratified_indices(y, n=True)
    with pytest.raises(ValueError, match=r"Give n .* or n_per_class, not both"):
        stratified_indices(y, n=3, n_per_class=1)
    with pytest.raises(ValueError, match=r"1-D vector of labels, got shape \(3, 4\)"):
        stratified_indices(y.reshape(3, 4), n=2)
    with pytest.raises(ValueError, match=r"Labels must be integers"):
        stratified_indices(torch.rand(5), n=2)


def test_subset_keeps_todays_picks():
    """Dataset.subset draws with stratified_indices exactly as it always did (same seed, same samples)."""
    from unlearnkit.data import stratified_indices

    full = uk.load_dataset("digits", device="cpu")
    g = np.random.default_rng(5)
    yc = full.y_train.numpy()
    want = []
    for c in np.unique(yc):  # the original algorithm, written out
        members = np.flatnonzero(yc == c)
        k = max(1, round(200 * len(members) / len(yc)))
        want.extend(g.choice(members, size=min(k, len(members)), replace=False))
    assert full.subset(200, seed=5).y_train.tolist() == full.y_train[np.sort(want)].tolist()
    assert torch.equal(stratified_indices(full.y_train, n=200, seed=5), torch.as_tensor(np.sort(want)))


@pytest.mark.parametrize("name", ["moons", "blobs", "circles"])
def test_toys(name):
    d = uk.make_toy(name, n_train=50, n_test=30, seed=1)
    assert d.x_train.shape == (50, 2) and d.x_test.shape == (30, 2) and d.input_shape == (2,)
    allx = torch.cat([d.x_train, d.x_test])  # standardised over both splits
    torch.testing.assert_close(allx.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(allx.std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    assert d.num_classes == (3 if name == "blobs" else 2)
    assert torch.equal(uk.make_toy(name, n_train=50, n_test=30, seed=1).x_train, d.x_train)
    assert not torch.equal(uk.make_toy(name, n_train=50, n_test=30, seed=2).x_train, d.x_train)


def test_toys_through_load_dataset():
    d = uk.load_dataset("moons", device="cpu", n_train=100, n_test=400, noise=0.25)
    assert len(d.y_train) == 100 and len(d.y_test) == 400
    # more than the default pool of 400 is drawn, not silently cut to 400
    big = uk.load_dataset("circles", device="cpu", n_train=1000, n_test=500)
    assert len(big.y_train) == 1000 and len(big.y_test) == 500
    assert uk.load_dataset("blobs", device="cpu", centers=4).num_classes == 4


# ---------------------------------------------------------------------------- CIFAR-10: python pickle batches


def _cifar_rows(n, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root, n_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = [], []
    for i in range(1, 6):
        x = _cifar_rows(n_per_batch, i)
        y = [(i + j) % 10 for j in range(n_per_batch)]
        rows.append(x)
        labels += y
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(
                {
                    b"batch_label": b"training batch",
                    b"data": x,
                    b"labels": y,
                    b"filenames": [b"f.png"] * n_per_batch,
                },
                f,
            )
    xt = _cifar_rows(3, 99)
    xt[0, :] = 0
    xt[0, 0] = 255  # red channel, row 0, column 0
    xt[0, 1024 + 32 * 1 + 2] = 51  # green channel, row 1, column 2 -> 0.2
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": xt, b"labels": [9, 0, 4]}, f)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return np.concatenate(rows), np.array(labels), xt


def test_cifar10_pickle_batches(data_root, monkeypatch):
    offline(monkeypatch)
    x, y, xt = write_cifar10(data_root)
    d = uk.load_dataset("cifar10", device="cpu")
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.y_train.tolist() == y.tolist() and d.y_test.tolist() == [9, 0, 4]
    assert d.y_train.dtype == torch.long
    torch.testing.assert_close(d.x_train, torch.from_numpy(x.reshape(-1, 3, 32, 32)).float() / 255)
    assert d.x_test[0, 0, 0, 0] == 1.0 and d.x_test[0, 1, 1, 2] == pytest.approx(0.2)
    assert d.x_test[0].sum() == pytest.approx(1.2)
    assert d.classes[0] == "airplane" and d.classes[9] == "truck" and d.augment
    assert d.mean == pytest.approx(ukdata.CIFAR_MEAN)


def test_cifar10_subset_and_missing_batch(data_root, monkeypatch):
    offline(monkeypatch)
    write_cifar10(data_root)
    sub = uk.load_dataset("cifar10", device="cpu", n_train=10)
    full = uk.load_dataset("cifar10", device="cpu")
    assert len(sub.y_train) < len(full.y_train) and set(sub.y_train.tolist()) == set(full.y_train.tolist())
    (data_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(uk.DatasetUnavailableError, match="cifar10.*download=False.*digits"):
        uk.load_dataset("cifar10", device="cpu", download=False)


# ----------------------------------------------------------------------------- CIFAR-100 / CIFAR-20


def write_cifar100(root, n_train=8, n_test=4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine_names = [f"fine{i}".encode() for i in range(100)]
    fine_names[69] = b"rocket"
    coarse_names = [f"super{i}".encode() for i in range(20)]
    coarse_names[19] = b"vehicles_2"
    coarse_of = lambda f: 19 if f == 69 else f % 19  # noqa: E731

    def split(n, seed, fine):
        return {
            b"data": _cifar_rows(n, seed),
            b"fine_labels": fine,
            b"coarse_labels": [coarse_of(f) for f in fine],
        }

    tr = split(n_train, 1, [69, 3, 69, 22, 5, 69, 40, 7][:n_train])
    te = split(n_test, 2, [69, 3, 22, 5][:n_test])
    for name, blob in (("train", tr), ("test", te)):
        with open(folder / name, "wb") as f:
            pickle.dump(blob, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": fine_names, b"coarse_label_names": coarse_names}, f)
    return tr, te


def test_cifar100_fine_labels(data_root, monkeypatch):
    offline(monkeypatch)
    tr, te = write_cifar100(data_root)
    d = uk.load_dataset("cifar100", device="cpu")
    assert d.num_classes == 100 and d.classes[69] == "rocket"
    assert d.y_train.tolist() == tr[b"fine_labels"] and d.y_test.tolist() == te[b"fine_labels"]
    torch.testing.assert_close(d.x_train, torch.from_numpy(tr[b"data"].reshape(-1, 3, 32, 32)).float() / 255)
    assert d.fine_train is None


def test_cifar20_coarse_labels_keep_the_fine_label(data_root, monkeypatch):
    offline(monkeypatch)
    tr, te = write_cifar100(data_root)
    d = uk.load_dataset("cifar20", device="cpu")
    assert d.num_classes == 20 and d.classes[19] == "vehicles_2"
    assert d.y_train.tolist() == tr[b"coarse_labels"] and d.fine_train.tolist() == tr[b"fine_labels"]
    assert d.fine_test.tolist() == te[b"fine_labels"] and d.fine_classes[69] == "rocket"
    task = uk.forget_subclass(d, "rocket")
    assert task.forget_idx.tolist() == [0, 2, 5] and task.test_forget_idx.tolist() == [0]
    assert task.forget_classes == [19]
    # a stratified subset keeps the fine labels aligned
    sub = d.subset(n_train=5, n_test=2)
    full_rows = {tuple(r.flatten().tolist()[:8]): int(f) for r, f in zip(d.x_train, d.fine_train)}
    for r, f in zip(sub.x_train, sub.fine_train):
        assert full_rows[tuple(r.flatten().tolist()[:8])] == int(f)


# ----------------------------------------------------------------------------- MNIST idx


def idx_bytes(a: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()


def write_mnist(folder, gz: bool, n_train=6, n_test=3, seed=0):
    folder.mkdir(parents=True)
    g = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": g.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": g.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) + 7) % 10,
    }
    for name, a in arrays.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(a))
        else:
            (folder / name).write_bytes(idx_bytes(a))
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_idx(data_root, monkeypatch, gz, name, folder):
    offline(monkeypatch)
    a = write_mnist(data_root / folder / "raw", gz)
    d = uk.load_dataset(name, device="cpu")
    assert d.x_train.shape == (6, 1, 28, 28) and d.x_test.shape == (3, 1, 28, 28)
    torch.testing.assert_close(d.x_train[:, 0], torch.from_numpy(a["train-images-idx3-ubyte"]).float() / 255)
    assert d.y_train.tolist() == [0, 1, 2, 3, 4, 5] and d.y_test.tolist() == [7, 8, 9]
    assert d.y_train.dtype == torch.long and d.num_classes == 10 and not d.augment
    assert (d.classes[0] == "0") == (name == "mnist")


def test_fashion_mnist_alias(data_root, monkeypatch):
    offline(monkeypatch)
    write_mnist(data_root / "FashionMNIST" / "raw", gz=True)
    assert uk.load_dataset("FashionMNIST", device="cpu").classes[-1] == "Boot"


def test_read_idx_rejects_bad_files(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "good"
    good.write_bytes(idx_bytes(a))
    np.testing.assert_array_equal(read_idx(good), a)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02" + idx_bytes(a)[2:])
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(a)[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)


# ----------------------------------------------------------------------------- SVHN .mat


def test_svhn_mat(data_root, monkeypatch):
    from scipy.io import savemat

    offline(monkeypatch)
    g = np.random.default_rng(0)
    X = g.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # (H, W, C, N) as in the real files
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)  # 10 stands for the digit 0
    savemat(data_root / "train_32x32.mat", {"X": X, "y": y})
    savemat(data_root / "test_32x32.mat", {"X": X[..., :2], "y": y[:2]})
    d = uk.load_dataset("svhn", device="cpu")
    assert d.x_train.shape == (5, 3, 32, 32) and d.x_test.shape == (2, 3, 32, 32)
    assert d.y_train.tolist() == [0, 1, 2, 0, 9] and d.y_train.dtype == torch.long
    assert d.x_train[4, 2, 7, 11] == pytest.approx(X[7, 11, 2, 4] / 255)
    assert d.x_train[1, 0, 31, 0] == pytest.approx(X[31, 0, 0, 1] / 255)


# ----------------------------------------------------------------------------- ImageFolder


def write_imagefolder(path, size=4, per_class=2, classes=("dog", "cat")):
    from PIL import Image

    pixels = {}
    k = 0
    for split in ("train", "test"):
        for c in classes:
            (path / split / c).mkdir(parents=True)
            for i in range(per_class):
                k += 1
                a = np.full((size, size, 3), k, dtype=np.uint8)
                a[0, 0] = (255, 0, 128)
                Image.fromarray(a).save(path / split / c / f"{i}.png")
                pixels[(split, c, i)] = a
    (path / "train" / "cat" / "notes.txt").write_text("not an image")
    return pixels


def test_imagefolder_reads_pngs_and_caches(data_root, tmp_path, monkeypatch):
    folder = tmp_path / "pets"
    pixels = write_imagefolder(folder)
    d = uk.load_dataset(str(folder), device="cpu")
    assert d.classes == ["cat", "dog"]  # sorted folder names
    assert d.x_train.shape == (4, 3, 4, 4) and d.y_train.tolist() == [0, 0, 1, 1]
    assert d.x_test.shape == (4, 3, 4, 4) and d.y_test.tolist() == [0, 0, 1, 1]
    want = torch.from_numpy(pixels[("train", "cat", 0)]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(d.x_train[0], want)
    assert d.name == "imagefolder:pets" and d.augment
    assert d.mean == pytest.approx(tuple(d.x_train.mean((0, 2, 3)).tolist()))
    caches = list((data_root / "cache").glob("imagefolder-pets-*.pt"))
    assert len(caches) == 1
    # the second load reads the cached tensors, not the images
    import PIL.Image

    monkeypatch.setattr(
        PIL.Image, "open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded again"))
    )
    again = uk.load_dataset(f"imagefolder:{folder}", device="cpu")
    assert torch.equal(again.x_train, d.x_train)


def test_imagefolder_corrupt_cache_is_rebuilt(data_root, tmp_path):
    folder = tmp_path / "pets"
    write_imagefolder(folder)
    d = uk.load_dataset(str(folder), device="cpu")
    (cache,) = (data_root / "cache").glob("*.pt")
    cache.write_bytes(b"garbage")
    again = uk.load_dataset(str(folder), device="cpu")
    assert torch.equal(again.x_train, d.x_train)
    torch.load(cache, weights_only=True)  # rewritten and readable


def test_imagefolder_stands_in_for_a_named_dataset(data_root, tmp_path, monkeypatch):
    folder = tmp_path / "cifar-jpeg"
    write_imagefolder(folder)
    monkeypatch.setenv("UNLEARNKIT_CIFAR10", str(folder))
    d = uk.load_dataset("cifar10", device="cpu")
    assert d.name == "cifar10-imagefolder" and d.mean == ukdata.CIFAR_MEAN
    assert d.x_train.shape == (4, 3, 4, 4)


def test_imagefolder_with_images_of_different_sizes(data_root, tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    write_imagefolder(folder)
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(folder / "train" / "dog" / "big.png")
    with pytest.raises(ValueError, match="differ in size"):
        uk.load_dataset(str(folder), device="cpu")


def write_cifar100_folder(path, fine=("rocket", "tank", "apple", "beaver", "dolphin"), per_class=2):
    """A CIFAR-100 copy as an ImageFolder: one folder per fine class (a few of the hundred)."""
    from PIL import Image

    for split in ("train", "test"):
        for i, c in enumerate(fine):
            (path / split / c).mkdir(parents=True)
            for j in range(per_class):
                Image.fromarray(np.full((4, 4, 3), (10 * i + j) % 256, dtype=np.uint8)).save(
                    path / split / c / f"{j}.png"
                )


@pytest.mark.parametrize("how", ["UNLEARNKIT_CIFAR20", "UNLEARNKIT_CIFAR100", "folder"])
def test_cifar100_imagefolder_loads_as_cifar20(data_root, tmp_path, monkeypatch, how):
    offline(monkeypatch)
    folder = tmp_path / "cifar100-png"
    write_cifar100_folder(folder)
    if how == "folder":
        d = uk.load_dataset("cifar20", device="cpu", folder=folder)
    else:
        monkeypatch.setenv(how, str(folder))
        d = uk.load_dataset("cifar20", device="cpu")
    assert d.name == "cifar20-imagefolder" and d.num_classes == 20 and d.classes == ukdata.CIFAR20_CLASSES
    assert d.classes[0] == "aquatic_mammals" and d.classes[19] == "vehicles_2" and len(d.fine_classes) == 100
    assert d.fine_classes[:3] == ["apple", "aquarium_fish", "baby"] and d.fine_classes[69] == "rocket"
    # folders sorted: apple, beaver, dolphin, rocket, tank; two images each
    fine = [d.fine_classes[int(f)] for f in d.fine_train]
    assert fine == ["apple"] * 2 + ["beaver"] * 2 + ["dolphin"] * 2 + ["rocket"] * 2 + ["tank"] * 2
    coarse = [d.classes[int(c)] for c in d.y_train]
    assert coarse == (["fruit_and_vegetables"] * 2 + ["aquatic_mammals"] * 4 + ["vehicles_2"] * 4)
    assert d.fine_test.tolist() == d.fine_train.tolist() and d.y_test.tolist() == d.y_train.tolist()
    assert d.mean == ukdata._STATS["cifar20"][0]
    task = uk.forget_subclass(d, "rocket")
    assert task.forget_idx.tolist() == [6, 7] and task.forget_classes == [19]
    assert task.name == "forget sub-class rocket (of vehicles_2)"
    # the same copy still loads as the 100-class dataset
    monkeypatch.setenv("UNLEARNKIT_CIFAR100", str(folder))
    d100 = uk.load_dataset("cifar100", device="cpu")
    assert d100.classes == ["apple", "beaver", "dolphin", "rocket", "tank"] and d100.fine_train is None


def test_cifar100_fine_to_coarse_table():
    assert len(ukdata.CIFAR100_CLASSES) == len(set(ukdata.CIFAR100_CLASSES)) == 100
    assert len(ukdata.CIFAR20_CLASSES) == 20 and all(
        len(v) == 5 for v in ukdata.CIFAR100_SUPERCLASSES.values()
    )
    to = dict(zip(ukdata.CIFAR100_CLASSES, (ukdata.CIFAR20_CLASSES[c] for c in ukdata.CIFAR100_TO_CIFAR20)))
    assert to["rocket"] == "vehicles_2" and to["bicycle"] == "vehicles_1" and to["whale"] == "aquatic_mammals"
    assert (
        to["maple_tree"] == "trees" and to["lobster"] == "non-insect_invertebrates" and to["baby"] == "people"
    )
    assert ukdata.CIFAR100_TO_CIFAR20[:10] == [
        4,
        1,
        14,
        8,
        0,
        6,
        7,
        7,
        18,
        3,
    ]  # as in the dataset's own files


def test_cifar20_imagefolder_with_foreign_class_names(data_root, tmp_path):
    folder = tmp_path / "not-cifar"
    write_cifar100_folder(folder, fine=("rocket", "spaceship", "Dog"))
    with pytest.raises(
        ValueError,
        match=r"cannot load as cifar20: its class folders 'Dog', 'spaceship' are not "
        r"CIFAR-100 fine class names.*apple, aquarium_fish",
    ):
        uk.load_dataset("cifar20", device="cpu", folder=folder)
    with pytest.raises(ValueError, match=r"ImageFolder copy of cifar20 at .*missing does not exist"):
        uk.load_dataset("cifar20", device="cpu", folder=tmp_path / "missing")


def test_cifar20_imagefolder_of_super_classes(data_root, tmp_path):
    folder = tmp_path / "coarse"
    write_cifar100_folder(folder, fine=("vehicles_2", "people"))
    d = uk.load_dataset("cifar20", device="cpu", folder=folder)
    assert d.num_classes == 20 and d.fine_train is None
    assert [d.classes[int(c)] for c in d.y_train] == ["people"] * 2 + ["vehicles_2"] * 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_imagefolder_with_a_corrupt_image(data_root, tmp_path, damage):
    from PIL import Image

    folder = tmp_path / "pets"
    write_imagefolder(folder)
    bad = folder / "train" / "dog" / "broken.jpg"
    if damage == "garbage":
        bad.write_bytes(b"this is not a jpeg")
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:300])
    with pytest.raises(
        ValueError,
        match=r"(?s)The image .*broken\.jpg cannot be read .*delete it \(or re-extract "
        r"the dataset\) and load again",
    ):
        uk.load_dataset(str(folder), device="cpu")
    bad.unlink()
    assert uk.load_dataset(str(folder), device="cpu").x_train.shape == (4, 3, 4, 4)


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    from unlearnkit import cache

    assert ukdata.atomic_save is cache.atomic_save and ukdata.default_root is cache.default_root
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "root"))
    assert cache.default_root() == uk.profiles.data_root() == tmp_path / "root"
    target = tmp_path / "sub" / "blob.pt"
    cache.atomic_save({"a": torch.arange(3)}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.arange(3))
    assert [p.name for p in target.parent.iterdir()] == ["blob.pt"]  # no temporary left behind

    def crash(obj, f):
        open(f, "wb").write(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.atomic_save({"a": 1}, target)
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.arange(3))  # the old file is intact
    assert [p.name for p in target.parent.iterdir()] == ["blob.pt"]


def test_load_dataset_folder_only_for_named_datasets(tmp_path):
    with pytest.raises(ValueError, match=r"folder=\.\.\. stands in for one of mnist"):
        uk.load_dataset("digits", folder=tmp_path)


def test_batches_and_augment_keep_their_old_home():
    from unlearnkit import training

    assert ukdata.batches is training.batches and ukdata.augment is training.augment


# ----------------------------------------------------------------------------- batches


def test_batches_cover_everything_once():
    x = torch.arange(10)
    y = x * 10
    plain = list(uk.batches(x, y, batch_size=4))
    assert [len(b[0]) for b in plain] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in plain]), x)
    g = torch.Generator().manual_seed(0)
    shuffled = list(uk.batches(x, y, batch_size=3, shuffle=True, generator=g))
    xs = torch.cat([b[0] for b in shuffled])
    assert sorted(xs.tolist()) == list(range(10)) and not torch.equal(xs, x)
    assert all(torch.equal(b[1], b[0] * 10) for b in shuffled)  # stay aligned
    again = torch.cat(
        [
            b[0]
            for b in uk.batches(x, y, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
        ]
    )
    assert torch.equal(xs, again)
    assert [len(b[0]) for b in uk.batches(x, batch_size=4, drop_last=True)] == [4, 4]


# ----------------------------------------------------------------------------- augmentation


def test_augment_shapes_and_determinism():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = uk.augment(x, generator=torch.Generator().manual_seed(1))
    b = uk.augment(x, generator=torch.Generator().manual_seed(1))
    c = uk.augment(x, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(uk.augment(x, pad=0, flip=False), x)
    v = torch.rand(5, 2)
    assert uk.augment(v) is v  # vectors are left alone


def test_augment_flip_only_gives_the_image_or_its_mirror():
    x = torch.rand(32, 1, 4, 5, generator=torch.Generator().manual_seed(0))
    out = uk.augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_augment_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(16, 2, 5, 5, generator=torch.Generator().manual_seed(0)) + 1.0  # no zeros inside
    pad = 1
    out = uk.augment(x, pad=pad, flip=False, generator=torch.Generator().manual_seed(3))
    xp = torch.nn.functional.pad(x, (pad,) * 4)
    shifts = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], xp[i, :, dy : dy + 5, dx : dx + 5])
        ]
        assert hits, f"sample {i} is not a crop of its padded image"
        shifts.update(hits)
    assert len(shifts) > 1
