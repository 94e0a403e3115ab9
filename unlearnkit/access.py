"""What each unlearning method is allowed to see: access levels and the task views that enforce
them.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``, Section 3).

The papers argue about *access*: which of the forget, retain and test sets an unlearning method
may touch. ``task.view(access)`` (or ``TaskView(task, access)``) returns a :class:`TaskView` that
hands out only what the access level allows and raises :class:`AccessError` for anything else. A
view cannot be widened: not by asking it for a wider view, not by wrapping it again, not through
:func:`as_task`; a method that hands its view to another method hands on at most what it may see
itself. The registry (:mod:`unlearnkit.methods`) hands every method a view at its own level.
"""

from __future__ import annotations

import weakref

from .data import Dataset
from .tasks import Task

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
