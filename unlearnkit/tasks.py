"""What is to be forgotten, and what each method is allowed to see.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

A :class:`Task` splits a dataset into the forget set D_f and the retain set D_r
(train) and into test-forget / test-retain. The papers argue about *access*:
which of these an unlearning method may touch. ``task.view(access)`` returns a
:class:`TaskView` that hands out only what the access level allows and raises
:class:`AccessError` for anything else. A view cannot be widened: not by asking it for a
wider view, not by wrapping it again, not through :func:`as_task`; a method that hands its
view to another method hands on at most what it may see itself.
"""

from __future__ import annotations

import hashlib
import weakref
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

    def view(self, access: str, method: str = "this method") -> "TaskView":
        return TaskView(self, access, method)

    def __repr__(self) -> str:
        return (
            f"Task({self.name!r}: forget {len(self.forget_idx)} / retain {len(self.retain_idx)} train, "
            f"test-forget {len(self.test_forget_idx)} / test-retain {len(self.test_retain_idx)})"
        )


# what a view hands out, and the access it needs for it ("class_ids": which classes are forgotten)
_NEEDS = {
    "forget_set": "forget",
    "retain_set": "retain",
    "retain_subset": "retain_subset",
    "test_forget": "test",
    "test_retain": "test",
    "test_set": "test",
    "train_set": "full",
    "forget_idx": "forget",
    "retain_idx": "retain",
    "test_forget_idx": "test",
    "test_retain_idx": "test",
    "data": "full",
    "forget_classes": "class_ids",
    "retain_classes": "class_ids",
    "fingerprint": "class_ids",
}
# ... and what every view shows: the shape of the problem, never its data
_OPEN = ("num_classes", "input_shape", "augment", "kind", "name", "subclass")

# view -> (task, access, method). Kept out of the view object, so that neither its attributes,
# vars(view) nor a bound method's __self__ lead back to the task.
_BEHIND: "weakref.WeakKeyDictionary[TaskView, tuple]" = weakref.WeakKeyDictionary()


def _allows(access: str, need: str) -> bool:
    return access == "full" if need == "full" else need in ACCESS[access]


def _within(inner: str, outer: str) -> bool:
    """Whether access level ``inner`` sees no more than ``outer``."""
    return outer == "full" or (inner != "full" and ACCESS[inner] <= ACCESS[outer])


class TaskView:
    """A task as seen by one method: only what its access level allows.

    Always shown: ``num_classes``, ``input_shape``, ``augment``, ``kind``, ``name``, ``subclass``,
    ``access``, ``method``. Everything else (the forget, retain and test sets, their indices, the
    class ids, the dataset) needs the access level listed in :data:`ACCESS`; asking for more
    raises :class:`AccessError`. ``TaskView(view, access)`` and ``view.view(access)`` only narrow.
    """

    __slots__ = ("__weakref__",)

    def __init__(self, task, access: str, method: str = "this method"):
        if self in _BEHIND:
            raise AttributeError("A task view is read-only: it cannot be initialised twice.")
        if not isinstance(access, str) or access not in ACCESS:
            raise ValueError(f"Unknown access level {access!r}: choose one of {list(ACCESS)}.")
        if isinstance(task, TaskView):
            inner, outer_access, outer_method = _BEHIND[task]
            if not _within(access, outer_access):
                seen = f"access {outer_access!r}: {ACCESS_DESCRIPTION[outer_access]}"
                if str(method) == outer_method:
                    raise AccessError(
                        f"{method} sees the task with {seen}. A view can only be narrowed, never "
                        f"widened to {access!r}."
                    )
                raise AccessError(
                    f"{method} needs access {access!r} ({ACCESS_DESCRIPTION[access]}), but it was handed the "
                    f"task as {outer_method} sees it ({seen}). A view can only be narrowed, never widened: "
                    f"call {method} with the task itself."
                )
            task = inner
        elif not isinstance(task, Task):
            hint = (
                " Build a task from it first, e.g. uk.forget_classes(data, [0])."
                if isinstance(task, Dataset)
                else ""
            )
            raise TypeError(
                f"{method} expects a task (uk.forget_classes, forget_random, ...), "
                f"got {type(task).__name__}.{hint}"
            )
        _BEHIND[self] = (task, access, str(method))

    # ------------------------------------------------------------------ what the view is
    @property
    def access(self) -> str:
        return _BEHIND[self][1]

    @property
    def method(self) -> str:
        return _BEHIND[self][2]

    def _get(self, item: str):
        task, access, method = _BEHIND[self]
        if item not in _NEEDS and item not in _OPEN:
            raise AccessError(
                f"{method} sees the task through a view with access {access!r}, and never the task "
                f"behind it ({item!r})."
            )
        need = _NEEDS.get(item)
        if need is not None and not _allows(access, need):
            raise AccessError(
                f"{method} may see {ACCESS_DESCRIPTION[access]} (access level {access!r}), but it asked for "
                f"task.{item}. Methods must not use data beyond their access level; register the method "
                f"with a wider level if the paper allows it."
            )
        return getattr(task, item)

    def view(self, access: str, method: str | None = None) -> "TaskView":
        """A narrower view of the same task (a wider one raises :class:`AccessError`)."""
        return TaskView(self, access, self.method if method is None else method)

    # ------------------------------------------------------------------ always shown
    num_classes = property(lambda self: self._get("num_classes"))
    input_shape = property(lambda self: self._get("input_shape"))
    augment = property(lambda self: self._get("augment"))
    kind = property(lambda self: self._get("kind"))
    name = property(lambda self: self._get("name"))
    subclass = property(lambda self: self._get("subclass"))

    # ------------------------------------------------------------------ gated by the access level
    forget_classes = property(lambda self: list(self._get("forget_classes")))
    retain_classes = property(lambda self: list(self._get("retain_classes")))
    fingerprint = property(lambda self: self._get("fingerprint"))
    forget_idx = property(lambda self: self._get("forget_idx").clone())
    retain_idx = property(lambda self: self._get("retain_idx").clone())
    test_forget_idx = property(lambda self: self._get("test_forget_idx").clone())
    test_retain_idx = property(lambda self: self._get("test_retain_idx").clone())
    data = property(lambda self: self._get("data"))

    def forget_set(self):
        """(x, y) of D_f (access ``forget``)."""
        return self._get("forget_set")()

    def retain_set(self):
        """(x, y) of D_r (access ``retain``)."""
        return self._get("retain_set")()

    def retain_subset(self, n_per_class: int = 100, seed: int = 0):
        """A class-balanced subset of D_r (access ``retain_subset``)."""
        return self._get("retain_subset")(n_per_class=n_per_class, seed=seed)

    def test_forget(self):
        return self._get("test_forget")()

    def test_retain(self):
        return self._get("test_retain")()

    def test_set(self):
        return self._get("test_set")()

    def train_set(self):
        return self._get("train_set")()

    # ------------------------------------------------------------------ no way around
    def __getattr__(self, item):
        if item.startswith("__") and item.endswith("__"):
            raise AttributeError(item)
        access = self.access
        shown = ", ".join(list(_OPEN) + sorted(k for k in _NEEDS if _allows(access, _NEEDS[k])))
        if item in ("_task", "task") or hasattr(Task, item) or item in Task.__dataclass_fields__:
            raise AccessError(
                f"{self.method} sees the task through a view with access {access!r}: it shows "
                f"{shown}, and never the task behind it ({item!r})."
            )
        raise AttributeError(f"'TaskView' object has no attribute {item!r} (a view shows {shown}).")

    def __setattr__(self, item, value):
        raise AttributeError(f"A task view is read-only (cannot set {item!r}).")

    def __delattr__(self, item):
        raise AttributeError(f"A task view is read-only (cannot delete {item!r}).")

    def __reduce_ex__(self, protocol):
        raise TypeError("A task view cannot be pickled; pickle the task itself.")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        task, access, method = _BEHIND[self]
        return f"TaskView(access={access!r}, method={method!r}, task={task.name!r})"


def as_task(task) -> Task:
    """The full task behind a task or a full-access view (for evaluation code, never for methods).

    A view with a narrower access level raises :class:`AccessError`: it cannot be turned back
    into the task it hides.
    """
    if isinstance(task, TaskView):
        inner, access, method = _BEHIND[task]
        if access != "full":
            raise AccessError(
                f"as_task() hands out the whole task only from a full-access view; this view is "
                f"{method}'s, with access {access!r} ({ACCESS_DESCRIPTION[access]})."
            )
        return inner
    return task


def _unwrap(task):
    """What the method registry wraps in a new view: a task as it is, a view as it is (so that
    ``TaskView(_unwrap(t), access, name)`` narrows it or raises :class:`AccessError`: a method
    that calls another method hands on no more than it may see). Anything else: ``TypeError``."""
    if isinstance(task, (Task, TaskView)):
        return task
    hint = (
        " Build a task from it first, e.g. uk.forget_classes(data, [0])." if isinstance(task, Dataset) else ""
    )
    raise TypeError(
        f"Expected a task (uk.forget_classes, forget_random, ...), got {type(task).__name__}.{hint}"
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
    return Task(data, "random", f, torch.empty(0, dtype=torch.long), [], name=name)


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
    return Task(
        data, "instances", idx, torch.empty(0, dtype=torch.long), [], name=f"forget {idx.numel()} instances"
    )


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
