"""What is to be forgotten, and what each method is allowed to see.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

A :class:`Task` splits a dataset into the forget set D_f and the retain set D_r
(train) and into test-forget / test-retain. The papers argue about *access*:
which of these an unlearning method may touch. ``task.view(access)`` returns a
:class:`TaskView` that hands out only what the access level allows and raises
:class:`AccessError` for anything else.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .data import Dataset

# what each access level may read; "class_ids" = which classes are forgotten (no data)
ACCESS = {
    "full": {"forget", "retain", "retain_subset", "test", "class_ids"},
    "retain": {"retain", "retain_subset", "class_ids"},
    "forget": {"forget", "class_ids"},
    "forget+retain": {"forget", "retain", "retain_subset", "class_ids"},
    "forget+retain_subset": {"forget", "retain_subset", "class_ids"},
    "retain_subset": {"retain_subset", "class_ids"},
    "class_ids": {"class_ids"},
    "none": set(),
}
ACCESS_DESCRIPTION = {
    "full": "everything (forget, retain and test sets)",
    "retain": "the retain set D_r",
    "forget": "the forget set D_f only (zero-shot)",
    "forget+retain": "the forget set D_f and the retain set D_r",
    "forget+retain_subset": "the forget set D_f and a small subset of D_r",
    "retain_subset": "a small subset of the retain set, never forget images",
    "class_ids": "the ids of the forgotten classes only, no training data",
    "none": "nothing",
}


class AccessError(PermissionError):
    """A method asked the task for data beyond its access level."""


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
            raise ValueError("The forget set is the whole training set: nothing would be retained, "
                             "so there is no model to unlearn towards. Forget a strict subset.")
        if self.forget_idx.min() < 0 or self.forget_idx.max() >= n:
            raise IndexError(f"Forget indices must lie in [0, {n}); got range "
                             f"[{int(self.forget_idx.min())}, {int(self.forget_idx.max())}].")
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
        """A class-balanced random subset of D_r (what UNSIR-style methods may keep)."""
        if n_per_class <= 0:
            raise ValueError(f"n_per_class must be positive, got {n_per_class}.")
        y = self.data.y_train[self.retain_idx.to(self.data.y_train.device)].cpu().numpy()
        g = np.random.default_rng(seed)
        pick = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            pick.extend(g.choice(members, size=min(n_per_class, len(members)), replace=False))
        idx = self.retain_idx[torch.as_tensor(np.sort(np.array(pick)), dtype=torch.long)]
        return self._take(self.data.x_train, self.data.y_train, idx)

    def test_forget(self):
        """(x, y) of test samples like the forgotten ones (the forgotten class); empty for random forgetting."""
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

    def view(self, access: str, method: str = "this method") -> "TaskView":
        return TaskView(self, access, method)

    def __repr__(self) -> str:
        return (f"Task({self.name!r}: forget {len(self.forget_idx)} / retain {len(self.retain_idx)} train, "
                f"test-forget {len(self.test_forget_idx)} / test-retain {len(self.test_retain_idx)})")


class TaskView:
    """A task as seen by one method: only what its access level allows."""

    _NEEDS = {"forget_set": "forget", "retain_set": "retain", "retain_subset": "retain_subset",
              "test_forget": "test", "test_retain": "test", "test_set": "test", "train_set": "full",
              "forget_idx": "forget", "retain_idx": "retain", "data": "full",
              "forget_classes": "class_ids", "retain_classes": "class_ids"}

    def __init__(self, task: Task, access: str, method: str):
        if access not in ACCESS:
            raise ValueError(f"Unknown access level {access!r}: choose one of {list(ACCESS)}.")
        if isinstance(task, TaskView):
            task = task._task
        self._task, self.access, self.method = task, access, method

    def __getattr__(self, item):
        task = object.__getattribute__(self, "_task")
        need = TaskView._NEEDS.get(item)
        if need is not None:
            allowed = ACCESS[self.access]
            if need == "full" and self.access != "full" or need != "full" and need not in allowed:
                raise AccessError(
                    f"{self.method} may see {ACCESS_DESCRIPTION[self.access]} (access level "
                    f"{self.access!r}), but it asked for task.{item}. Methods must not use data beyond "
                    f"their access level; register the method with a wider level if the paper allows it.")
        return getattr(task, item)

    def __repr__(self) -> str:
        return f"TaskView(access={self.access!r}, {self._task!r})"


def as_task(task) -> Task:
    """The full task behind a view (for evaluation code, never for methods)."""
    return task._task if isinstance(task, TaskView) else task


# ----------------------------------------------------------------------------- constructors

def _check_classes(data: Dataset, classes: Sequence[int]) -> list[int]:
    if isinstance(classes, (int, np.integer)):
        classes = [int(classes)]
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("No class to forget was given.")
    bad = [c for c in classes if not 0 <= c < data.num_classes]
    if bad:
        raise ValueError(f"Class {bad[0]} is out of range: {data.name} has classes 0..{data.num_classes - 1} "
                         f"({', '.join(data.classes[:10])}{', ...' if data.num_classes > 10 else ''}).")
    if len(set(classes)) >= data.num_classes:
        raise ValueError("Forgetting every class leaves nothing to retain; forget a strict subset of classes.")
    return sorted(set(classes))


def forget_classes(data: Dataset, classes: Sequence[int] | int) -> Task:
    """Forget one or several whole classes (train and test samples of those classes form D_f / test-forget)."""
    classes = _check_classes(data, classes)
    cl = torch.tensor(classes, device=data.y_train.device)
    f = torch.isin(data.y_train, cl).nonzero().flatten().cpu()
    tf = torch.isin(data.y_test, cl.to(data.y_test.device)).nonzero().flatten().cpu()
    names = ", ".join(data.classes[c] for c in classes)
    return Task(data, "class" if len(classes) == 1 else "classes", f, tf, classes, name=f"forget class {names}")


forget_class = forget_classes


def forget_subclass(data: Dataset, subclass: int | str) -> Task:
    """Forget one fine class inside its super-class (CIFAR-20: e.g. ``rocket`` inside ``vehicles 2``).

    The label stays the super-class; retain keeps the other sub-classes of the same super-class.
    """
    if data.fine_train is None:
        raise ValueError(f"{data.name} has no sub-class labels; sub-class forgetting needs e.g. 'cifar20'.")
    if isinstance(subclass, str):
        if subclass not in data.fine_classes:
            raise ValueError(f"Unknown sub-class {subclass!r}; {data.name} has e.g. {data.fine_classes[:5]}.")
        subclass = data.fine_classes.index(subclass)
    if not 0 <= int(subclass) < len(data.fine_classes):
        raise ValueError(f"Sub-class {subclass} is out of range 0..{len(data.fine_classes) - 1}.")
    f = (data.fine_train == subclass).nonzero().flatten().cpu()
    tf = (data.fine_test == subclass).nonzero().flatten().cpu()
    if len(f) == 0:
        raise ValueError(f"Sub-class {subclass} has no training samples in {data.name}.")
    sup = int(data.y_train[f[0].to(data.y_train.device)])
    return Task(data, "subclass", f, tf, [sup], subclass=int(subclass),
                name=f"forget sub-class {data.fine_classes[subclass]} (of {data.classes[sup]})")


def forget_random(data: Dataset, n: int, seed: int = 0) -> Task:
    """Forget ``n`` training samples drawn uniformly at random (no test-forget set)."""
    N = len(data.y_train)
    if not 0 < n < N:
        raise ValueError(f"n must lie in 1..{N - 1} for {data.name}, got {n}.")
    g = torch.Generator().manual_seed(seed)
    f = torch.randperm(N, generator=g)[:n]
    return Task(data, "random", f, torch.empty(0, dtype=torch.long), [], name=f"forget {n} random samples")


def forget_instances(data: Dataset, indices: Sequence[int]) -> Task:
    """Forget the given training instances."""
    idx = torch.as_tensor(list(indices) if not torch.is_tensor(indices) else indices, dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("The forget set is empty: give at least one instance index.")
    return Task(data, "instances", idx, torch.empty(0, dtype=torch.long), [], name=f"forget {idx.numel()} instances")
