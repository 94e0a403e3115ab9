"""One record per method, and the one calling convention.

Every unlearning method is called as ``new_model = method(model, task, *, seed=None, **hp)``.
:func:`register` keeps everything about a method in one :class:`Method` record (its access
level, the tasks it is designed for, whether it needs an original of its own, whether its
result depends on a seed, its hyper-parameter presets per profile, its plot colour) and wraps
the plain function so that the call

* checks the hyper-parameter names against the function's keyword parameters before anything
  runs (an unknown name is a ``TypeError`` that lists the accepted ones),
* works on a deep copy of ``model`` (the caller's model is never mutated),
* gives the function ``TaskView(task, access)``: asking for data beyond the access level raises
  :class:`~unlearnkit.access.AccessError`,
* seeds every random number generator from ``seed`` (``None``: the active profile's) inside a
  fork of the caller's random state, which is restored afterwards: a method never moves the
  caller's global random state, and the same seed gives the same model,
* records the wall time of the call (CUDA-synchronised) in ``new_model.unlearn_info``, the one
  clock every table uses, with what the method reported through :func:`report`,
* raises :class:`~unlearnkit.training.DivergedError` (a ``ValueError``) naming the method when
  the weights or batch-norm statistics it returns are not finite, or its outputs on two probe
  images are not.

A method that builds on another calls the other's plain function (``record.fn``), never the
registered wrapper: one copy, one clock.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import budget
from ..access import ACCESS, ACCESS_DESCRIPTION, TaskView
from ..models import check_finite, clone
from ..tasks import TASKS
from ..training import DivergedError, check_diverged, check_outputs

REGISTRY: dict = {}
PROFILES = ("smoke", "quick", "full")
# access levels that know nothing of the forget set but its class ids
CLASS_ONLY = ("class_ids", "retain_subset")


@dataclass(frozen=True)
class Method:
    """Everything about one registered method (``uk.get_method(name).record``).

    ``tasks``: the tasks of :data:`~unlearnkit.tasks.TASKS` its paper designs it for (``None``:
    every task its access level allows), with ``why``. ``own_original``: why it cannot use a
    shared original (``None``: it can). ``seeded``: whether its result depends on the seed.
    ``presets``: ``{profile: hp}``, where ``hp`` is one dict for every task or ``{task: dict}``;
    the ``"default"`` entry applies under every profile, and ``smoke`` falls back to ``quick``.
    """

    name: str
    access: str
    paper: str
    fn: object
    tasks: tuple | None = None
    why: str = ""
    own_original: str | None = None
    seeded: bool = True
    presets: dict = field(default_factory=dict)
    color: str | None = None

    @property
    def hyper_parameters(self) -> dict:
        """``{name: default}`` of the keyword hyper-parameters the method accepts."""
        out = {}
        for p in list(inspect.signature(self.fn).parameters.values())[2:]:
            if p.kind is p.VAR_KEYWORD:
                out.update(_fit_parameters())
            elif p.name != "seed":
                out[p.name] = p.default
        return out

    def check(self, hp: dict) -> None:
        """``TypeError`` naming each hyper-parameter the method does not accept."""
        known = self.hyper_parameters
        bad = [k for k in hp if k not in known]
        if bad:
            raise TypeError(
                f"{self.name} has no hyper-parameter {', '.join(map(repr, bad))}: it accepts "
                f"{', '.join(known) or 'none'}."
            )

    def preset(self, profile: str, task: str | None = None) -> dict:
        """The hyper-parameters the sweep gives this method under ``profile`` on ``task``."""
        out = {}
        chain = ["default", "quick" if profile == "smoke" else None, profile]
        for key in dict.fromkeys(k for k in chain if k):
            hp = dict(self.presets.get(key) or {})
            if hp and set(hp) <= set(TASKS):
                hp = dict(hp.get(task) or {}) if task else {}
            out.update(hp)
        return out

    def applicable(self, task: str) -> str | None:
        """``None`` if the method may run on ``task``, else the reason why not."""
        if task not in TASKS:
            raise ValueError(f"Unknown task {task!r}: choose from {', '.join(TASKS)}.")
        if self.access in CLASS_ONLY and task != "full-class":
            return (
                f"{self.name} has access {self.access!r} ({ACCESS_DESCRIPTION[self.access]}): the "
                f"id of a forgotten class is all it knows of what to forget, so it runs on "
                f"full-class tasks only"
            )
        if self.own_original:
            return f"{self.name} {self.own_original}, not the sweep's shared original"
        if self.tasks is not None and task not in self.tasks:
            return (
                f"{self.name} is designed for {', '.join(self.tasks)} tasks only ({self.why}; "
                f"access {self.access!r})"
            )
        return None


@functools.lru_cache(maxsize=1)
def _fit_parameters() -> dict:
    """The keyword parameters of :func:`~unlearnkit.training.fit` (and of the descent loop it
    hands the rest to), for methods that pass ``**fit_kwargs`` on."""
    from ..training import descend, fit

    skip = {"model", "x", "y", "seed", "desc", "loop", "data", "loss_fn"}
    out = {}
    for f in (descend, fit):
        for p in inspect.signature(f).parameters.values():
            if p.name not in skip and p.default is not p.empty:
                out[p.name] = p.default
    return out


def _sync(model):
    try:
        dev = next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed Python, NumPy and torch from ``seed`` inside the block; the caller's random state is
    restored when it ends."""
    from ..profiles import set_seed

    py, npy = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        set_seed(int(seed))
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def report(model: torch.nn.Module, **info) -> torch.nn.Module:
    """Add ``info`` to what the registered call records in ``model.unlearn_info``."""
    got = model.__dict__.setdefault("_unlearn_report", {})
    got.update(info)
    return model


def register(
    name: str,
    access: str,
    paper: str = "",
    *,
    tasks=None,
    why: str = "",
    own_original: str | None = None,
    seeded: bool = True,
    presets: dict | None = None,
    color: str | None = None,
):
    """Decorator: register ``fn(model, task, *, seed, **hp)`` under ``name`` with its record."""
    if access not in ACCESS:
        raise ValueError(f"Unknown access level {access!r}: choose from {', '.join(ACCESS)}.")
    if tasks is not None:
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"Unknown tasks {unknown}: choose from {', '.join(TASKS)}.")
    unknown = [p for p in (presets or {}) if p not in PROFILES + ("default",)]
    if unknown:
        raise ValueError(f"Unknown profiles {unknown} in the presets of {name}.")

    def deco(fn):
        rec = Method(name, access, paper, fn, tasks, why, own_original, seeded, dict(presets or {}), color)
        params = inspect.signature(fn).parameters
        takes_seed = "seed" in params
        for p in list(params.values())[2:]:
            if p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD):
                raise TypeError(f"{name}: hyper-parameter {p.name!r} must be keyword-only.")
        for key in rec.presets:
            for hp in _preset_dicts(rec.presets[key]):
                rec.check(hp)

        @functools.wraps(fn)
        def wrapper(model, task, *, seed: int | None = None, **hp):
            if not isinstance(model, torch.nn.Module):
                raise TypeError(
                    f"{name}: the first argument must be a torch model, got {type(model).__name__}."
                )
            rec.check(hp)
            check_finite(model, f"model given to {name}")
            seed = seed_or_active(seed)
            view = TaskView(task, access, name)
            work = clone(model)
            work.__dict__.pop("_unlearn_report", None)
            work.__dict__.pop("unlearn_info", None)
            _sync(work)
            t0 = time.perf_counter()
            # k chosen images do not grow with the dataset: a dry run counts a method that sees
            # only them at their own size (unlearnkit.budget)
            fixed = getattr(task, "fixed_forget", False) and access == "forget"
            sized = budget.data_scale(1.0) if fixed else contextlib.nullcontext()
            with globals()["seeded"](seed), budget.kind("unlearn"), sized:
                try:
                    out = fn(work, view, seed=seed, **hp) if takes_seed else fn(work, view, **hp)
                except DivergedError as e:
                    e.method = name
                    raise
            if not isinstance(out, torch.nn.Module):
                raise TypeError(f"{name} must return the unlearned model, got {type(out).__name__}.")
            _sync(out)
            seconds = time.perf_counter() - t0
            hint = "Lower its learning rate or step size."
            check_diverged(out, name, hint=hint)
            check_outputs(out, getattr(view, "input_shape", None), name, hint=hint)
            out.eval()
            info = out.__dict__.pop("_unlearn_report", {})
            out.unlearn_info = {
                "method": name,
                "seconds": seconds,
                "access": access,
                "hyperparameters": hp,
                "seed": seed,
                **info,
            }
            return out

        wrapper.record = rec
        wrapper.access = access
        wrapper.method_name = name
        wrapper.paper = paper
        REGISTRY[name] = wrapper
        return wrapper

    return deco


def _preset_dicts(hp) -> list:
    hp = dict(hp or {})
    return list(hp.values()) if hp and set(hp) <= set(TASKS) else [hp]


def get_method(name: str):
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"Unknown method {name!r}: registered are {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


def record(name: str) -> Method:
    """The :class:`Method` record of a registered method."""
    return get_method(name).record


def applicable(method: str, task: str) -> str | None:
    """``None`` if ``method`` may run on ``task`` (a name in :data:`~unlearnkit.tasks.TASKS`),
    else the reason why not (read from the method's record)."""
    return record(method).applicable(task)


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
