"""The one method signature and its access register.

Every unlearning method is ``new_model = method(model, task, **hyperparameters)``.
:func:`register` wraps a function so that it

* receives a deep copy of ``model`` (the caller's model is never mutated),
* receives ``task.view(access)``: asking for data beyond the access level raises
  :class:`~unlearnkit.tasks.AccessError`,
* records the wall time of the call (CUDA-synchronised) in ``new_model.unlearn_info``.
"""
from __future__ import annotations

import functools
import time

import torch

from ..models import check_finite, clone
from ..tasks import ACCESS, TaskView, as_task

REGISTRY: dict = {}


def _sync(model):
    try:
        dev = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def register(name: str, access: str, paper: str = ""):
    """Decorator: register ``fn(model, task, **hp)`` under ``name`` with an access level."""
    if access not in ACCESS:
        raise ValueError(f"Unknown access level {access!r}.")

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(model, task, **hp):
            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"{name}: the first argument must be a torch model, got {type(model).__name__}.")
            check_finite(model, f"model given to {name}")
            view = TaskView(as_task(task), access, name)
            work = clone(model)
            _sync(work)
            t0 = time.perf_counter()
            out = fn(work, view, **hp)
            _sync(out)
            seconds = time.perf_counter() - t0
            out.eval()
            out.unlearn_info = {"method": name, "seconds": seconds, "access": access, "hyperparameters": hp}
            return out
        wrapper.access = access
        wrapper.method_name = name
        wrapper.paper = paper
        REGISTRY[name] = wrapper
        return wrapper
    return deco


def get_method(name: str):
    if name not in REGISTRY:
        raise ValueError(f"Unknown method {name!r}: registered are {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def runtime(model) -> float:
    """Wall time in seconds of the unlearning call that produced ``model``."""
    info = getattr(model, "unlearn_info", None)
    if info is None:
        raise ValueError("This model was not produced by a registered unlearning method.")
    return info["seconds"]
