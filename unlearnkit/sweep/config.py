"""What a sweep runs: the profiles' presets, the configuration that fingerprints a row, the plan.

Part of :mod:`unlearnkit.sweep`. Each method's hyper-parameters per profile live in its record
(:func:`unlearnkit.methods.register`); :meth:`SweepConfig.from_profile` collects them, so they
are part of the configuration's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable

from ..methods import REGISTRY, applicable
from ..results import REFERENCE, SweepError
from ..tasks import SUPER, TASKS

# training and task settings per profile (the chapters' digits CNN in smoke/quick, CIFAR in full)
PRESETS = {
    "smoke": dict(
        dataset="digits",
        model="cnn",
        model_kwargs={"width": 16},
        epochs=10,
        lr=0.05,
        batch_size=64,
        schedule="cosine",
        weight_decay=5e-4,
        fraction=0.1,
        k=16,
        forget={"full-class": [0], "sub-class": ["3"]},
        relearn=dict(max_epochs=5, lr=0.05, n_per_epoch=500),
    ),
    "quick": dict(
        dataset="digits",
        model="cnn",
        model_kwargs={"width": 32},
        epochs=20,
        lr=0.05,
        batch_size=64,
        schedule="cosine",
        weight_decay=5e-4,
        fraction=0.1,
        k=16,
        forget={"full-class": [0, 3, 8], "sub-class": ["3", "7", "9"]},
        relearn=dict(max_epochs=30, lr=0.05, n_per_epoch=500),
    ),
    # the book's fast recipe (unlearnkit.FAST_RESNET18) on a ResNet-18 of a quarter of the
    # width (1/16 of its multiply-accumulates): 21 methods × 4 tasks × 3 runs fit a reader's GPU
    # (explained in the showdown, book/09_showdown.ipynb)
    "full": dict(
        dataset="cifar10",
        model="resnet18",
        model_kwargs={"widths": [16, 32, 64, 128]},
        epochs=15,
        lr=0.2,
        batch_size=512,
        schedule="onecycle",
        weight_decay=5e-4,
        fit_extra={"label_smoothing": 0.1, "eval_every": 5},
        fraction=0.1,
        k=16,
        forget={"full-class": ["airplane", "cat", "ship"], "sub-class": ["rocket", "mushroom", "lamp"]},
        # relearning capped at 40 epochs (UNSIR's chapter: 100), a budget
        relearn=dict(max_epochs=40, lr=0.01, n_per_epoch=500, check_n=500),
        retime_epochs=2,
    ),
}
TRAIN_KEYS = ("model", "model_kwargs", "epochs", "lr", "batch_size", "schedule", "weight_decay")


def method_presets(profile: str) -> dict:
    """``{method: {task: hp}}``: every registered method's preset under ``profile`` (from its
    record; methods without one are left out)."""
    out = {}
    for name, fn in REGISTRY.items():
        per_task = {t: fn.record.preset(profile, t) for t in TASKS}
        if any(per_task.values()):
            out[name] = per_task
    return out


def access_of(method: str) -> str:
    return "reference" if method in ("original", "retrain") else REGISTRY[method].record.access


@dataclass
class SweepConfig:
    """Everything that decides a row's numbers, apart from its task, forget item, seed and method."""

    profile: str
    dry_run: bool
    dataset: str
    model: str
    model_kwargs: dict
    epochs: int
    lr: float
    batch_size: int
    schedule: str
    weight_decay: float
    fraction: float
    k: int
    mia: bool = True
    relearn: dict = field(default_factory=dict)
    hp: dict = field(default_factory=dict)
    retime_epochs: int | None = None  # re-time retraining over this many epochs (None: all)
    fit_extra: dict = field(default_factory=dict)  # more settings of train_or_load (label smoothing, ...)

    @classmethod
    def from_profile(cls, profile: str, **overrides) -> "SweepConfig":
        """The profile's preset, each method's record presets, then ``overrides`` (``hp``: per
        method, the given dict replaces the preset)."""
        if profile not in PRESETS:
            raise SweepError(f"Unknown profile {profile!r}: choose from {', '.join(PRESETS)}.")
        base = {k: v for k, v in PRESETS[profile].items() if k != "forget"}
        base["hp"] = method_presets(profile)
        given = {k: v for k, v in overrides.items() if v is not None}
        for method, hp in (given.pop("hp", None) or {}).items():
            if method not in REGISTRY:
                raise SweepError(
                    f"Unknown method {method!r} in hp: registered are {', '.join(sorted(REGISTRY))}."
                )
            for one in _per_task_dicts(hp):
                try:
                    REGISTRY[method].record.check(one)
                except TypeError as e:
                    raise SweepError(str(e)) from None
            base["hp"][method] = hp
        base.update(given)
        from .. import profiles

        return cls(profile=profile, dry_run=profiles.active().dry_run, **base)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def fingerprint(self) -> str:
        from .._version import __version__

        blob = json.dumps({**self.as_dict(), "unlearnkit": __version__}, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def train_kwargs(self) -> dict:
        return {**{k: getattr(self, k) for k in TRAIN_KEYS}, **self.fit_extra}

    def dataset_for(self, task: str) -> str:
        return SUPER.get(self.dataset, self.dataset) if task == "sub-class" else self.dataset


def _per_task_dicts(hp) -> list:
    hp = dict(hp or {})
    return [dict(v or {}) for v in hp.values()] if hp and set(hp) <= set(TASKS) else [hp]


@dataclass(frozen=True)
class Run:
    task: str
    forget: str
    seed: int
    method: str

    @property
    def key(self) -> tuple:
        return (self.task, str(self.forget), int(self.seed), self.method)


def hp_for(cfg: SweepConfig, method: str, task: str) -> dict:
    """The hyper-parameters of ``method`` on ``task`` in this sweep: ``cfg.hp[method]``, either
    one dict for every task or ``{task: dict}`` (the record's presets unless overridden)."""
    given = dict(cfg.hp.get(method) or {})
    if given and set(given) <= set(TASKS):
        given = dict(given.get(task) or {})
    return given


def parse_seeds(text) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,2,5"`` → [0, 2, 5]; an int or a list passes through."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(s) for s in text]
    out = []
    bad = SweepError(f"Cannot read the seeds {text!r}: write e.g. 0-4 or 0,2,5 (non-negative).")
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise bad from None
    if not out or min(out) < 0:
        raise bad
    return list(dict.fromkeys(out))


def check_names(methods, tasks) -> None:
    """:class:`SweepError` for an unknown task or method, or a reference given as a method."""
    if not methods:
        raise SweepError("No method given: name at least one, e.g. --methods jit,finetune.")
    for t in tasks:
        if t not in TASKS:
            raise SweepError(f"Unknown task {t!r}: choose from {', '.join(TASKS)}.")
    for m in methods:
        if m in ("retrain", "original"):
            raise SweepError(f"{m!r} is not a method to compare: every sweep runs it as the reference.")
        if m not in REGISTRY:
            raise SweepError(f"Unknown method {m!r}: registered are {', '.join(sorted(REGISTRY))}.")


def plan(
    methods: Iterable[str],
    tasks: Iterable[str],
    seeds: Iterable[int],
    forget: dict | None = None,
    profile: str = "quick",
    skip_inapplicable: bool = False,
    paired: bool = False,
) -> list[Run]:
    """The runs of a sweep, reference runs first. A method that does not fit a task raises
    :class:`SweepError` (or is left out with ``skip_inapplicable=True``). ``paired=True`` runs
    each seed with one forget item of a class task (item i with seed i, as many of each) instead
    of every seed with every item."""
    methods, tasks, seeds = list(methods), list(tasks), list(seeds)
    check_names(methods, tasks)
    forget = dict(PRESETS[profile]["forget"], **(forget or {}))
    runs = []
    for t in tasks:
        items = [str(i) for i in forget[t]] if t in ("full-class", "sub-class") else ["-"]
        ok = []
        for m in methods:
            why = applicable(m, t)
            if why and not skip_inapplicable:
                raise SweepError(
                    f"Cannot run {m} on the {t} task: {why}. Leave it out, or pick a task it fits."
                )
            if not why:
                ok.append(m)
        if paired and items != ["-"]:
            if len(items) != len(seeds):
                raise SweepError(
                    f"paired runs give seed i the {t} item i: {len(seeds)} seeds but {len(items)} items "
                    f"({', '.join(items)}). Give as many of each."
                )
            pairs = list(zip(items, seeds))
        else:
            pairs = [(item, s) for item in items for s in seeds]
        for item, s in pairs:
            runs.extend(Run(t, item, int(s), m) for m in [REFERENCE] + ok)
    return runs
