"""The one method signature and its access register.

Every unlearning method is ``new_model = method(model, task, **hyperparameters)``.
:func:`register` wraps a function so that it

* receives a deep copy of ``model`` (the caller's model is never mutated),
* receives ``TaskView(task, access)``: asking for data beyond the access level raises
  :class:`~unlearnkit.tasks.AccessError`,
* records the wall time of the call (CUDA-synchronised) in ``new_model.unlearn_info``, the one
  clock every table uses, together with the method's extra outputs: a method may return
  ``(model, info_dict)`` and ``info_dict`` is merged into ``unlearn_info``,
* raises :class:`~unlearnkit.training.DivergedError` (a ``ValueError``) naming the method when
  the weights or batch-norm statistics it returns are not finite, or its outputs on two probe
  images are not.
"""
from __future__ import annotations

import functools
import time

import torch

from ..models import check_finite, clone
from ..tasks import ACCESS, TaskView
from ..training import DivergedError, check_diverged, check_outputs

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
            view = TaskView(task, access, name)
            work = clone(model)
            _sync(work)
            t0 = time.perf_counter()
            try:
                out = fn(work, view, **hp)
            except DivergedError as e:
                e.method = name
                raise
            info = {}
            if isinstance(out, tuple):
                out, info = out
            _sync(out)
            seconds = time.perf_counter() - t0
            hint = "Lower its learning rate or step size."
            check_diverged(out, name, hint=hint)
            check_outputs(out, getattr(view, "input_shape", None), name, hint=hint)
            out.eval()
            out.unlearn_info = {"method": name, "seconds": seconds, "access": access, "hyperparameters": hp,
                                **info}
            return out
        wrapper.access = access
        wrapper.method_name = name
        wrapper.paper = paper
        REGISTRY[name] = wrapper
        return wrapper
    return deco


def get_method(name: str):
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"Unknown method {name!r}: registered are {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def runtime(model) -> float:
    """Wall time in seconds of the unlearning call that produced ``model``."""
    info = getattr(model, "unlearn_info", None)
    if info is None:
        raise ValueError("This model was not produced by a registered unlearning method.")
    return info["seconds"]


def seed_or_active(seed):
    """``seed``, or the active profile's seed when ``None``."""
    from .. import profiles
    return profiles.active().seed if seed is None else seed
