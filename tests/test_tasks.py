"""Tasks partition the data correctly, and access views hand out only what they allow."""

import re

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.data import Dataset


def check_partition(task):
    """forget ∪ retain = all training samples, disjoint; the same for the test split."""
    n, nt = len(task.data.y_train), len(task.data.y_test)
    f, r = set(task.forget_idx.tolist()), set(task.retain_idx.tolist())
    assert f and r and not (f & r) and f | r == set(range(n))
    tf, tr = set(task.test_forget_idx.tolist()), set(task.test_retain_idx.tolist())
    assert not (tf & tr) and tf | tr == set(range(nt))
    xf, yf = task.forget_set()
    xr, yr = task.retain_set()
    assert len(xf) + len(xr) == n and len(yf) == len(xf) and len(yr) == len(xr)
    xtf, _ = task.test_forget()
    xtr, _ = task.test_retain()
    assert len(xtf) + len(xtr) == nt


def test_forget_one_class_partitions(digits):
    task = uk.forget_classes(digits, 3)
    check_partition(task)
    _, yf = task.forget_set()
    _, yr = task.retain_set()
    _, ytf = task.test_forget()
    _, ytr = task.test_retain()
    assert (yf == 3).all() and (ytf == 3).all()
    assert not (yr == 3).any() and not (ytr == 3).any()
    assert len(yf) == int((digits.y_train == 3).sum()) and len(ytf) == int((digits.y_test == 3).sum())
    assert task.forget_classes == [3] and task.retain_classes == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert task.kind == "class" and task.num_classes == 10
    x, y = task.test_set()
    assert x is digits.x_test and y is digits.y_test
    x, y = task.train_set()
    assert x is digits.x_train


def test_forget_several_classes(digits):
    task = uk.forget_classes(digits, [7, 2, 7])
    check_partition(task)
    assert task.forget_classes == [2, 7] and task.kind == "classes"
    _, yf = task.forget_set()
    assert set(yf.tolist()) == {2, 7}
    assert len(task.test_forget_idx) == int(torch.isin(digits.y_test, torch.tensor([2, 7])).sum())


def test_forget_random_partitions_and_is_seeded(digits):
    task = uk.forget_random(digits, 25, seed=3)
    check_partition(task)
    assert len(task.forget_idx) == 25 and len(task.test_forget_idx) == 0
    assert task.forget_classes == [] and task.retain_classes == list(range(10))
    assert torch.equal(task.forget_idx, uk.forget_random(digits, 25, seed=3).forget_idx)
    assert not torch.equal(task.forget_idx, uk.forget_random(digits, 25, seed=4).forget_idx)
    xt, _ = task.test_retain()
    assert len(xt) == len(digits.y_test)  # every test sample is a retain-test sample


def test_forget_instances(digits):
    task = uk.forget_instances(digits, [5, 1, 40])
    check_partition(task)
    assert task.forget_idx.tolist() == [1, 5, 40]
    xf, yf = task.forget_set()
    torch.testing.assert_close(xf, digits.x_train[[1, 5, 40]])
    assert torch.equal(yf, digits.y_train[[1, 5, 40]])
    same = uk.forget_instances(digits, torch.tensor([40, 1, 5]))
    assert torch.equal(same.forget_idx, task.forget_idx) and same.fingerprint == task.fingerprint
    assert uk.forget_instances(digits, [1, 5, 41]).fingerprint != task.fingerprint
    assert uk.forget_instances(digits, 7).forget_idx.tolist() == [7]
    assert uk.forget_instances(digits, range(3)).forget_idx.tolist() == [0, 1, 2]


def test_forget_instances_refuses_repeats(digits):
    with pytest.raises(
        ValueError, match=r"repeated indices: 5 \(3x\), 9 \(2x\)\. Give each training sample once"
    ):
        uk.forget_instances(digits, [5, 9, 5, 1, 5, 9])
    with pytest.raises(ValueError, match=r"repeated indices: 2 \(2x\)"):
        uk.forget_instances(digits, torch.tensor([2, 2]))
    with pytest.raises(ValueError, match=r"integer index, got 1\.5"):
        uk.forget_instances(digits, [1, 1.5])
    with pytest.raises(ValueError, match=r"integer index, got a torch\.float32 tensor"):
        uk.forget_instances(digits, torch.tensor([1.0, 2.0]))


def test_forget_random_fraction(digits):
    n = len(digits.y_train)
    task = uk.forget_random(digits, 0.1, seed=2)
    check_partition(task)
    assert len(task.forget_idx) == round(0.1 * n) and "10%" in task.name
    assert torch.equal(task.forget_idx, uk.forget_random(digits, 0.1, seed=2).forget_idx)
    # a fraction is the same draw as its count
    assert torch.equal(task.forget_idx, uk.forget_random(digits, round(0.1 * n), seed=2).forget_idx)
    assert len(uk.forget_random(digits, 1e-6).forget_idx) == 1  # at least one sample
    assert len(uk.forget_random(digits, np.int64(7)).forget_idx) == 7
    for bad in (1.5, 1.0, 0.0, -0.2, "10", True, None):
        with pytest.raises(ValueError, match=r"n is a number of samples|n must lie in"):
            uk.forget_random(digits, bad)


def test_forget_classes_by_name():
    cifar_like = Dataset(
        "pets",
        torch.rand(6, 3, 2, 2),
        torch.tensor([0, 1, 2, 0, 1, 2]),
        torch.rand(3, 3, 2, 2),
        torch.tensor([0, 1, 2]),
        ["airplane", "cat", "dog"],
    )
    task = uk.forget_classes(cifar_like, "cat")
    assert task.forget_classes == [1] and task.forget_idx.tolist() == [1, 4] and "cat" in task.name
    assert uk.forget_classes(cifar_like, ["dog", 0]).forget_classes == [0, 2]
    assert uk.forget_classes(cifar_like, torch.tensor([2])).forget_classes == [2]
    assert uk.forget_classes(cifar_like, np.array([1, 2])).forget_classes == [1, 2]
    with pytest.raises(
        ValueError, match=r"Unknown class name 'zero': pets has the classes airplane, cat, dog"
    ):
        uk.forget_classes(cifar_like, ["zero"])
    with pytest.raises(ValueError, match=r"got True \(a bool\)"):
        uk.forget_classes(cifar_like, [True])
    with pytest.raises(ValueError, match=r"integer id or a class name, got 1\.0"):
        uk.forget_classes(cifar_like, [1.0])


def test_digit_class_names_are_the_digits(digits):
    assert uk.forget_classes(digits, "3").forget_classes == [3]
    assert torch.equal(
        uk.forget_classes(digits, ["3", "7"]).forget_idx, uk.forget_classes(digits, [3, 7]).forget_idx
    )


def small_cifar20(n_per_fine=3, seed=0):
    """A tiny stand-in for CIFAR-20: 4 fine classes in 2 super-classes."""
    g = torch.Generator().manual_seed(seed)
    fine_tr = torch.arange(4).repeat_interleave(n_per_fine)
    fine_te = torch.arange(4).repeat_interleave(2)
    coarse = torch.tensor([0, 0, 1, 1])
    return Dataset(
        "tiny20",
        torch.rand(len(fine_tr), 3, 4, 4, generator=g),
        coarse[fine_tr],
        torch.rand(len(fine_te), 3, 4, 4, generator=g),
        coarse[fine_te],
        ["animals", "vehicles"],
        fine_train=fine_tr,
        fine_test=fine_te,
        fine_classes=["cat", "dog", "car", "rocket"],
    )


def test_forget_subclass_keeps_the_super_class_label():
    data = small_cifar20()
    task = uk.forget_subclass(data, "rocket")
    check_partition(task)
    assert task.kind == "subclass" and task.subclass == 3 and task.forget_classes == [1]
    _, yf = task.forget_set()
    assert (yf == 1).all()  # the label stays the super-class
    assert (data.fine_train[task.forget_idx] == 3).all()
    assert (data.fine_test[task.test_forget_idx] == 3).all() and len(task.test_forget_idx) == 2
    # retain keeps the other sub-class of the same super-class
    assert (data.fine_train[task.retain_idx] == 2).sum() == 3
    assert "rocket" in task.name and "vehicles" in task.name
    assert torch.equal(uk.forget_subclass(data, 3).forget_idx, task.forget_idx)


def test_retain_subset_is_balanced_and_inside_retain(task0):
    x, y = task0.retain_subset(n_per_class=5, seed=0)
    counts = torch.bincount(y, minlength=10)
    assert counts[0] == 0 and (counts[1:] == 5).all()
    xr, _ = task0.retain_set()
    # every picked image is a retain image
    d = torch.cdist(x.flatten(1), xr.flatten(1))
    assert (d.min(1).values == 0).all()
    x2, y2 = task0.retain_subset(n_per_class=5, seed=0)
    assert torch.equal(x, x2)
    x3, _ = task0.retain_subset(n_per_class=5, seed=1)
    assert not torch.equal(x, x3)
    _, yall = task0.retain_subset(n_per_class=10_000)
    assert len(yall) == len(task0.retain_idx)


def test_fingerprint_depends_on_data_and_forget_set(digits):
    a, b = uk.forget_classes(digits, 0), uk.forget_classes(digits, 1)
    assert a.fingerprint == uk.forget_classes(digits, [0]).fingerprint
    assert a.fingerprint != b.fingerprint
    other = uk.load_dataset("digits", device="cpu", n_train=200, n_test=50)
    assert uk.forget_classes(other, 0).fingerprint != a.fingerprint
    assert f"forget {len(a.forget_idx)} / retain {len(a.retain_idx)}" in repr(a)


# ----------------------------------------------------------------------------- access views


@pytest.mark.parametrize("access", list(uk.ACCESS))
def test_each_access_level_allows_exactly_what_it_says(task0, access):
    view = task0.view(access, method="probe")
    readers = {
        "forget_set": "forget",
        "retain_set": "retain",
        "retain_subset": "retain_subset",
        "test_forget": "test",
        "test_retain": "test",
        "test_set": "test",
        "train_set": "full",
    }
    allowed = uk.ACCESS[access]
    for reader, need in readers.items():
        ok = access == "full" if need == "full" else need in allowed
        if ok:
            out = getattr(view, reader)()
            assert len(out[0]) > 0
        else:
            with pytest.raises(
                uk.AccessError, match=rf"probe may see .*access level '{re.escape(access)}'.*task\.{reader}"
            ):
                getattr(view, reader)()
    # the class ids are what "class_ids" grants; "none" grants nothing at all
    if "class_ids" in allowed:
        assert view.forget_classes == [0] and view.retain_classes == list(range(1, 10))
    else:
        with pytest.raises(uk.AccessError):
            view.forget_classes
    assert view.num_classes == 10  # the model's output size is never secret


def test_view_of_a_view_and_as_task(task0):
    v = uk.TaskView(task0.view("full"), "forget", "m")
    assert v.access == "forget" and v.method == "m"
    with pytest.raises(uk.AccessError):
        v.retain_set()
    from unlearnkit.access import as_task

    assert as_task(task0.view("full")) is task0 and as_task(task0) is task0
    with pytest.raises(
        uk.AccessError, match=r"as_task\(\) hands out the whole task only from a full-access view"
    ):
        as_task(v)
    with pytest.raises(uk.AccessError):
        v.data
    assert "forget" in repr(v) and "forget class 0" in repr(v)


def test_retain_subset_matches_stratified_indices(task0):
    from unlearnkit.data import stratified_indices

    x, y = task0.retain_subset(n_per_class=4, seed=3)
    pick = stratified_indices(task0.data.y_train[task0.retain_idx], n_per_class=4, seed=3)
    assert torch.equal(y, task0.data.y_train[task0.retain_idx[pick]])
