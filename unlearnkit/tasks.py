"""What is to be forgotten: tasks and the ways to build them.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

A :class:`Task` splits a dataset into the forget set D_f and the retain set D_r (train) and into
test-forget / test-retain. :func:`forget_classes`, :func:`forget_subclass`, :func:`forget_random`
and :func:`forget_instances` build one; :func:`make_task` builds any of the book's four kinds
(:data:`TASKS`) from its name. What a method may see of a task is :mod:`unlearnkit.access`'s
business: ``task.view(access)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from . import validate
from .data import Dataset, stratified_indices

# the four kinds of forgetting the book compares (the showdown's columns)
TASKS = ("full-class", "sub-class", "random", "instances")
# the super-class stand-in of each dataset, for sub-class forgetting
SUPER = {"digits": "digits-super", "cifar10": "cifar20"}


@dataclass
class Task:
    """Forget/retain/test split of one dataset. Index tensors are over the train (test) split."""

    data: Dataset
    kind: str
    forget_idx: torch.Tensor
    test_forget_idx: torch.Tensor
    forget_classes: list = field(default_factory=list)
    subclass: int | None = None
    name: str = ""

    def __post_init__(self):
        n = len(self.data.y_train)
        self.forget_idx = torch.as_tensor(self.forget_idx, dtype=torch.long).cpu().unique()
        self.test_forget_idx = torch.as_tensor(self.test_forget_idx, dtype=torch.long).cpu().unique()
        if len(self.forget_idx) == 0:
            raise ValueError("The forget set is empty: give at least one sample or class to forget.")
        if len(self.forget_idx) >= n:
            raise ValueError(
                "The forget set is the whole training set: nothing would be retained, "
                "so there is no model to unlearn towards. Forget a strict subset."
            )
        if self.forget_idx.min() < 0 or self.forget_idx.max() >= n:
            raise IndexError(
                f"Forget indices must lie in [0, {n}); got range "
                f"[{int(self.forget_idx.min())}, {int(self.forget_idx.max())}]."
            )
        mask = torch.ones(n, dtype=torch.bool)
        mask[self.forget_idx] = False
        self.retain_idx = mask.nonzero().flatten()
        m = torch.ones(len(self.data.y_test), dtype=torch.bool)
        m[self.test_forget_idx] = False
        self.test_retain_idx = m.nonzero().flatten()

    # ------------------------------------------------------------------ full-access readers
    def _take(self, x, y, idx):
        dev = x.device
        idx = idx.to(dev)
        return x[idx], y[idx]

    def forget_set(self):
        """(x, y) of the training samples to forget, D_f."""
        return self._take(self.data.x_train, self.data.y_train, self.forget_idx)

    def retain_set(self):
        """(x, y) of the training samples to keep, D_r."""
        return self._take(self.data.x_train, self.data.y_train, self.retain_idx)

    def retain_subset(self, n_per_class: int = 100, seed: int = 0):
        """A class-balanced random subset of D_r, up to ``n_per_class`` per class (what UNSIR-style
        methods may keep); see :func:`unlearnkit.data.stratified_indices`."""
        y = self.data.y_train[self.retain_idx.to(self.data.y_train.device)]
        pick = stratified_indices(y, n_per_class=n_per_class, seed=seed)
        return self._take(self.data.x_train, self.data.y_train, self.retain_idx[pick])

    def test_forget(self):
        """(x, y) of test samples like the forgotten ones (the forgotten class); empty for random
        forgetting."""
        return self._take(self.data.x_test, self.data.y_test, self.test_forget_idx)

    def test_retain(self):
        return self._take(self.data.x_test, self.data.y_test, self.test_retain_idx)

    def test_set(self):
        return self.data.x_test, self.data.y_test

    def train_set(self):
        return self.data.x_train, self.data.y_train

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def augment(self) -> bool:
        """Whether random crop/flip suits the data (methods that train may use it)."""
        return self.data.augment

    @property
    def input_shape(self) -> tuple:
        return self.data.input_shape

    @property
    def retain_classes(self) -> list:
        return [c for c in range(self.num_classes) if c not in set(self.forget_classes)]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self.data.fingerprint.encode())
        h.update(self.forget_idx.numpy().tobytes())
        return h.hexdigest()[:16]

    def view(self, access: str, method: str = "this method"):
        """What ``method`` may see of this task at ``access`` (:class:`unlearnkit.access.TaskView`)."""
        from .access import TaskView  # the views build on tasks, not the other way round

        return TaskView(self, access, method)

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}: forget {len(self.forget_idx)} / retain {len(self.retain_idx)} train, "
            f"test-forget {len(self.test_forget_idx)} / test-retain {len(self.test_retain_idx)})"
        )


# ----------------------------------------------------------------------------- constructors


def _class_list(classes) -> list:
    if torch.is_tensor(classes) or isinstance(classes, np.ndarray):
        if (
            classes.dtype in (torch.bool, np.bool_)
            or (torch.is_tensor(classes) and classes.is_floating_point())
            or (isinstance(classes, np.ndarray) and classes.dtype.kind not in "iu")
        ):
            raise ValueError(f"Classes are given by integer id or by name, got a {classes.dtype} array.")
        return [int(c) for c in classes.reshape(-1).tolist()]
    if isinstance(classes, (str, int, np.integer, bool, np.bool_)) or not hasattr(classes, "__iter__"):
        return [classes]
    return list(classes)


def _check_classes(data: Dataset, classes) -> list[int]:
    """Class ids from ids or names (``data.classes``): sorted, unique, a strict subset of the classes."""
    names = [str(c) for c in data.classes]
    shown = f"{', '.join(names[:20])}{', ...' if len(names) > 20 else ''}"
    out = []
    for c in _class_list(classes):
        if isinstance(c, (bool, np.bool_)):
            raise ValueError(
                f"A class is an integer id or a class name, got {c!r} (a bool). To forget class 1 "
                f"write forget_classes(data, [1])."
            )
        if isinstance(c, str):
            if c not in names:
                raise ValueError(
                    f"Unknown class name {c!r}: {data.name} has the classes {shown} (or give ids "
                    f"0..{data.num_classes - 1})."
                )
            out.append(names.index(c))
        elif isinstance(c, (int, np.integer)):
            out.append(int(c))
        else:
            raise ValueError(f"A class is an integer id or a class name, got {c!r} ({type(c).__name__}).")
    if not out:
        raise ValueError("No class to forget was given.")
    bad = [c for c in out if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(
            f"Class {bad[0]} is out of range: {data.name} has classes 0..{data.num_classes - 1} "
            f"({', '.join(names[:10])}{', ...' if data.num_classes > 10 else ''})."
        )
    if len(set(out)) >= data.num_classes:
        raise ValueError(
            "Forgetting every class leaves nothing to retain; forget a strict subset of classes."
        )
    return sorted(set(out))


def forget_classes(data: Dataset, classes) -> Task:
    """Forget one or several whole classes (train and test samples of those classes form D_f / test-forget).

    ``classes``: an id, a class name (``"airplane"`` for CIFAR-10, ``"3"`` for the digits), or
    a list of them.
    """
    classes = _check_classes(data, classes)
    cl = torch.tensor(classes, device=data.y_train.device)
    f = torch.isin(data.y_train, cl).nonzero().flatten().cpu()
    tf = torch.isin(data.y_test, cl.to(data.y_test.device)).nonzero().flatten().cpu()
    names = ", ".join(str(data.classes[c]) for c in classes)
    return Task(
        data, "class" if len(classes) == 1 else "classes", f, tf, classes, name=f"forget class {names}"
    )


def forget_subclass(data: Dataset, subclass: int | str) -> Task:
    """Forget one fine class inside its super-class (CIFAR-20: e.g. ``rocket`` inside ``vehicles_2``;
    digits-super: e.g. ``"3"`` inside ``"2/3"``).

    ``subclass`` is a fine class name (``data.fine_classes``) or its index. The label stays the
    super-class; retain keeps the other sub-classes of the same super-class.
    """
    if data.fine_train is None:
        raise ValueError(
            f"{data.name} has no sub-class labels; sub-class forgetting needs e.g. 'cifar20' "
            f"(or the embedded 'digits-super')."
        )
    if isinstance(subclass, str):
        if subclass not in data.fine_classes:
            raise ValueError(f"Unknown sub-class {subclass!r}; {data.name} has e.g. {data.fine_classes[:5]}.")
        subclass = data.fine_classes.index(subclass)
    if isinstance(subclass, (bool, np.bool_)) or not isinstance(subclass, (int, np.integer)):
        raise ValueError(f"A sub-class is a fine class name or its index, got {subclass!r}.")
    if not 0 <= int(subclass) < len(data.fine_classes):
        raise ValueError(f"Sub-class {subclass} is out of range 0..{len(data.fine_classes) - 1}.")
    subclass = int(subclass)
    f = (data.fine_train == subclass).nonzero().flatten().cpu()
    tf = (data.fine_test == subclass).nonzero().flatten().cpu()
    if len(f) == 0:
        raise ValueError(f"Sub-class {subclass} has no training samples in {data.name}.")
    sup = int(data.y_train[f[0].to(data.y_train.device)])
    return Task(
        data,
        "subclass",
        f,
        tf,
        [sup],
        subclass=subclass,
        name=f"forget sub-class {data.fine_classes[subclass]} (of {data.classes[sup]})",
    )


def forget_random(data: Dataset, n: int | float, seed: int = 0) -> Task:
    """Forget ``n`` training samples drawn uniformly at random (no test-forget set).

    ``n`` is a count (an integer in 1..N-1) or a fraction of the training set (a float in
    ``(0, 1)``: ``0.1`` forgets a random 10%, at least one sample).
    """
    N = len(data.y_train)
    frac = float(n) if isinstance(n, (float, np.floating)) else None
    n = validate.count_or_fraction("n", n, N)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    g = torch.Generator().manual_seed(int(seed))
    f = torch.randperm(N, generator=g)[:n]
    name = f"forget {n} random samples" + (f" ({frac:.0%})" if frac is not None else "")
    task = Task(data, "random", f, torch.empty(0, dtype=torch.long), [], name=name)
    task.fixed_forget = frac is None  # a count of images, not a share of the data (unlearnkit.budget)
    return task


def forget_instances(data: Dataset, indices: Sequence[int]) -> Task:
    """Forget the given training instances (each index once)."""
    if isinstance(indices, (bool, np.bool_)):
        raise ValueError(f"Instances are given by integer index, got {indices!r}.")
    if isinstance(indices, (int, np.integer)):
        indices = [int(indices)]
    if torch.is_tensor(indices) or isinstance(indices, np.ndarray):
        idx = torch.as_tensor(indices).reshape(-1)
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
            raise ValueError(f"Instances are given by integer index, got a {idx.dtype} tensor.")
        idx = idx.long().cpu()
    else:
        items = list(indices)
        bad = [i for i in items if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))]
        if bad:
            raise ValueError(
                f"Instances are given by integer index, got {bad[0]!r} ({type(bad[0]).__name__})."
            )
        idx = torch.as_tensor([int(i) for i in items], dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("The forget set is empty: give at least one instance index.")
    values, counts = idx.unique(return_counts=True)
    if (counts > 1).any():
        rep = [f"{int(v)} ({int(c)}x)" for v, c in zip(values[counts > 1], counts[counts > 1])]
        raise ValueError(
            f"forget_instances got repeated indices: {', '.join(rep[:10])}"
            f"{' ...' if len(rep) > 10 else ''}. Give each training sample once "
            f"(e.g. sorted(set(indices)))."
        )
    task = Task(
        data, "instances", idx, torch.empty(0, dtype=torch.long), [], name=f"forget {idx.numel()} instances"
    )
    task.fixed_forget = True  # chosen images, not a share of the data (unlearnkit.budget)
    return task


def make_task(
    data: Dataset, kind: str, item=None, seed: int = 0, *, fraction: float = 0.1, k: int = 16
) -> Task:
    """The one task builder: a task of ``kind`` (a name in :data:`TASKS`) on ``data``.

    ``item`` names what to forget on the class tasks: a class (its index or name) for
    ``"full-class"``, a sub-class for ``"sub-class"`` (``data`` must have fine classes, e.g. the
    super-class stand-in :data:`SUPER` names). ``"random"`` forgets ``fraction`` of the training
    set and ``"instances"`` ``k`` training images, both drawn from ``seed``. Explained in the
    opening chapter (``book/01_unlearning_problem.ipynb``), used by every chapter's spread and
    by the showdown's sweep.
    """
    if kind not in TASKS:
        raise ValueError(f"Unknown task {kind!r}: choose from {', '.join(TASKS)}.")
    if kind in ("full-class", "sub-class") and item is None:
        raise ValueError(f"A {kind} task needs the item to forget (a class or sub-class): pass item=.")
    if kind == "full-class":
        if isinstance(item, str) and item.isdigit() and item not in data.classes:
            item = int(item)
        return forget_classes(data, [item])
    if kind == "sub-class":
        return forget_subclass(data, item)
    if kind == "random":
        return forget_random(data, float(fraction), seed=int(seed))
    n = validate.integer("k", k, lo=1)
    if n >= len(data.y_train):
        raise ValueError(f"k = {n} instances is the whole training set of {len(data.y_train)}: choose fewer.")
    g = torch.Generator().manual_seed(10_007 + int(seed))
    idx = torch.randperm(len(data.y_train), generator=g)[:n]
    return forget_instances(data, sorted(idx.tolist()))
