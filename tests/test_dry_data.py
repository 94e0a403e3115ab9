"""A dry run of the full profile on a CPU: every split is capped, nothing is downloaded, and a
dataset that is not on the machine is replaced by a generated stand-in of the same shape."""

import pytest
import torch
from test_data import write_cifar10, write_cifar100_folder, write_imagefolder

import unlearnkit as uk
from unlearnkit import data as ukdata
from unlearnkit.profiles import DRY_RUN_IMAGES


@pytest.fixture
def dry(monkeypatch):
    def refuse(name, root):
        raise AssertionError(f"a dry run tried to download {name}")

    monkeypatch.setattr(uk.formats, "_download", refuse)
    p = uk.profile("full", dry_run=True, device="cpu", quiet=True)
    yield p
    uk.profiles.reset()


@pytest.fixture
def wet():
    p = uk.profile("quick", dry_run=False, device="cpu", quiet=True)
    yield p
    uk.profiles.reset()


def check_labels_agree(d):
    """Both label levels of a CIFAR-20-like dataset describe the same images."""
    to = torch.tensor(ukdata.CIFAR100_TO_CIFAR20)
    assert torch.equal(d.y_train, to[d.fine_train]) and torch.equal(d.y_test, to[d.fine_test])


# ----------------------------------------------------------------------------- caps


def test_digits_are_capped_and_stratified(dry):
    d = uk.load_dataset("digits")
    assert d.device.type == "cpu"  # the profile's device
    assert len(d.y_train) <= DRY_RUN_IMAGES and len(d.y_test) <= DRY_RUN_IMAGES
    assert len(d.y_train) >= DRY_RUN_IMAGES - 10  # about the cap, not far below it
    counts = torch.bincount(d.y_train, minlength=10)
    per = DRY_RUN_IMAGES // 10
    assert counts.min() >= per - 2 and counts.max() <= per + 2
    # the 360 test digits are cut by the training split's factor (1437 / 159): 40, 4 per class
    f = d.meta["dry_run_scale"]
    assert f == pytest.approx(1437 / len(d.y_train)) and len(d.y_test) == round(360 / f)
    assert torch.bincount(d.y_test, minlength=10).min() >= 3
    assert d.meta["dry_run"] and "stand_in" not in d.meta
    full = ukdata._load_digits()
    dist = torch.cdist(d.x_train.flatten(1), full.x_train.flatten(1))
    assert (dist.min(1).values == 0).all()  # real digits, not generated ones
    assert torch.equal(uk.load_dataset("digits").x_train, d.x_train)


def test_smaller_requests_are_kept(dry):
    d = uk.load_dataset("digits", n_train=100, n_test=50)
    assert len(d.y_train) <= 100 and len(d.y_test) <= 50 and len(d.y_train) >= 95
    toy = uk.load_dataset("moons")
    assert len(toy.y_train) == len(toy.y_test) == DRY_RUN_IMAGES


def test_digits_super_keeps_every_digit(dry):
    d = uk.load_dataset("digits-super")
    assert len(d.y_train) <= DRY_RUN_IMAGES and set(d.fine_train.tolist()) == set(range(10))
    to_super = {f: s for s, pair in enumerate(ukdata.DIGITS_SUPERCLASSES) for f in pair}
    assert d.y_train.tolist() == [to_super[int(f)] for f in d.fine_train]
    assert len(uk.forget_subclass(d, "3").forget_idx) > 0


def test_outside_a_dry_run_nothing_is_capped(wet):
    d = uk.load_dataset("digits")
    assert len(d.y_train) == 1437 and "dry_run" not in d.meta


def test_cifar20_copy_is_capped_with_every_fine_class(dry, data_root, tmp_path, monkeypatch):
    folder = tmp_path / "cifar100-png"
    write_cifar100_folder(folder, fine=tuple(ukdata.CIFAR100_CLASSES), per_class=4)  # 400 train images
    monkeypatch.setenv("UNLEARNKIT_CIFAR100", str(folder))
    d = uk.load_dataset("cifar20")
    assert len(d.y_train) == 300 and len(d.y_test) <= 300  # three per CIFAR-100 class, not 400
    assert torch.bincount(d.fine_train, minlength=100).min() == 3  # every fine class keeps three
    assert set(d.y_train.tolist()) == set(range(20))
    check_labels_agree(d)
    assert uk.forget_subclass(d, "rocket").forget_classes == [19]


# ----------------------------------------------------------------------------- stand-ins


@pytest.mark.parametrize(
    "name, shape, k",
    [
        ("mnist", (1, 28, 28), 10),
        ("fashion-mnist", (1, 28, 28), 10),
        ("cifar10", (3, 32, 32), 10),
        ("cifar100", (3, 32, 32), 100),
        ("svhn", (3, 32, 32), 10),
    ],
)
def test_missing_dataset_gets_a_stand_in(dry, data_root, capsys, name, shape, k):
    d = uk.load_dataset(name)  # download=True, yet nothing is fetched
    out = capsys.readouterr().out
    assert out.strip() == (
        f"[dry run] {name} is not on this machine: using a generated stand-in "
        f"(random images, same shape and labels)"
    )
    assert d.input_shape == shape and d.num_classes == k
    assert len(d.y_train) == len(d.y_test) == max(DRY_RUN_IMAGES, 3 * k)  # three per class
    assert set(d.y_train.tolist()) == set(range(k)) and d.y_train.dtype == torch.long
    assert 0 <= d.x_train.min() and d.x_train.max() <= 1 and d.x_train.dtype == torch.float32
    assert d.meta["stand_in"] and d.meta["dry_run"] and "stand-in" in d.name
    assert (d.mean, d.std) == ukdata._STATS[name]
    if name == "cifar10":
        assert d.classes == ukdata.CIFAR10_CLASSES and d.augment
    if name == "cifar100":
        assert d.classes == ukdata.CIFAR100_CLASSES and d.fine_train is None
    if name == "fashion-mnist":
        assert d.classes[-1] == "Boot"
    assert torch.equal(uk.load_dataset(name).x_train, d.x_train)  # the same stand-in every time


def test_cifar20_stand_in_has_both_label_levels(dry, data_root, capsys):
    d = uk.load_dataset("cifar20")
    assert "[dry run] cifar20 is not on this machine" in capsys.readouterr().out
    assert d.num_classes == 20 and d.classes == ukdata.CIFAR20_CLASSES
    assert d.fine_classes == ukdata.CIFAR100_CLASSES and d.fine_classes[69] == "rocket"
    assert set(d.fine_train.tolist()) == set(range(100)) and set(d.fine_test.tolist()) == set(range(100))
    check_labels_agree(d)
    task = uk.forget_subclass(d, "rocket")
    assert task.forget_classes == [19] and (d.fine_train[task.forget_idx] == 69).all()
    assert uk.forget_classes(d, "vehicles_2").forget_classes == [19]


def test_stand_in_is_learnable(dry, data_root):
    """One pattern per class under the noise: a nearest-class-mean rule beats chance by far."""
    d = uk.load_dataset("cifar10")
    means = torch.stack([d.x_train[d.y_train == c].mean(0) for c in range(10)]).flatten(1)
    pred = torch.cdist(d.x_test.flatten(1), means).argmin(1)
    assert (pred == d.y_test).float().mean() > 0.5


def test_files_on_disk_win_over_the_stand_in(dry, data_root, capsys):
    x, y, _ = write_cifar10(data_root)
    d = uk.load_dataset("cifar10")
    assert capsys.readouterr().out == "" and "stand_in" not in d.meta
    assert d.y_train.tolist() == y.tolist()


def test_imagefolder_loads_in_a_dry_run(dry, data_root, tmp_path):
    folder = tmp_path / "pets"
    write_imagefolder(folder)
    d = uk.load_dataset(str(folder))
    assert d.classes == ["cat", "dog"] and d.meta["dry_run"]


def test_outside_a_dry_run_a_missing_dataset_is_an_error(wet, data_root, capsys):
    with pytest.raises(
        uk.DatasetUnavailableError, match=r"cifar100.*download=False.*load_dataset\('digits'\)"
    ):
        uk.load_dataset("cifar100", download=False)
    with pytest.raises(
        uk.DatasetUnavailableError, match=r"(?s)cifar10.*could not be downloaded.*Are you offline"
    ):
        uk.load_dataset("cifar10")
    assert "[dry run]" not in capsys.readouterr().out
