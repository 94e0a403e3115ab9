"""Headless sweeps: every method × task × seed, one results file, resumable, in-process or on Ray.

Behind ``python -m unlearnkit bench`` and the showdown chapter (``book/07_showdown.ipynb``).

* A *run* is one method on one task (kind, forget item) with one seed. Runs are independent:
  the original and retrain models come from the zoo (:func:`unlearnkit.train_or_load`, atomic
  writes, so two workers training the same model leave one whole file), and each run is
  evaluated by :func:`unlearnkit.run_methods` (the same evaluator as every chapter's table).
  The ``"retrain"`` and ``"original"`` rows of each task and seed form a run of their own.
* Each finished run is appended to the results file at once (``.csv``, ``.jsonl`` or
  ``.parquet``; the file is rewritten to a temporary name and renamed, so a crash leaves the old
  file or the new one, never half a row). A sweep that is stopped and started again skips the
  runs already in the file: nothing is lost, nothing is run twice. The sweep owns the file while
  it runs (a lock beside it): a second sweep on the same file is refused. A file that is not a
  results file, or is damaged, is refused and left as it is (:mod:`unlearnkit.results`).
* Every row carries the fingerprint of the sweep's configuration (dataset, model, training,
  task sizes, hyper-parameters, profile; a results file of another configuration is refused)
  and the hash of the code that made it (``code``: the method's module and the modules it
  imports, plus the shared training and evaluation code, :func:`unlearnkit.fingerprint.run_code`).
  A resume redoes the runs made by older code and replaces their rows; rows of older code outside
  the sweep are left out of the table it returns, and :func:`ranking` refuses them.
* Each method runs only on the tasks its access level and design fit (:func:`applicable`);
  asking for another is an error that says why.
* ``engine="ray"`` fans the runs out on Ray (``address`` names a cluster; without it Ray starts
  locally). The driver writes each row as its run finishes; a worker that dies loses only its
  own run, which is reported and left for the next resume.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from .results import (FORMATS, KEYS, REFERENCE, SweepError, _format, _write, append_rows,  # noqa: F401
                      check_results, current, done_keys, is_current, lock_path, own, read_results,
                      stale_message)

_lock = own                                   # the former name of the results file's lock

TASKS = ("full-class", "sub-class", "random", "instances")
TASK_KIND = {"full-class": "class", "sub-class": "subclass", "random": "random", "instances": "instances"}
# the super-class stand-in of each dataset, for sub-class forgetting
SUPER = {"digits": "digits-super", "cifar10": "cifar20"}
# methods whose papers forget something narrower than "any forget set"
DESIGNED_FOR = {
    "mnemonic_with_data": (("full-class",), "Yamashita et al. remove whole classes"),
    # the JiT paper runs boundary shrinking on sub-class and random forgetting too
    "boundary_shrink": (("full-class", "sub-class", "random"),
                        "Chen et al. shift the boundary of a class; the JiT paper also runs it on "
                        "sub-class and random forgetting"),
    # a random forget set is a set of instances, only larger
    "instance_unlearn": (("instances", "random"), "Cha et al. forget instances, never reading D_r"),
}
# methods that need an original model trained their own way
OWN_ORIGINAL = {"mnemonic": "needs an original trained with mnemonic codes (uk.methods.train_with_codes)"}
# access levels that know nothing of the forget set but its class ids
CLASS_ONLY = ("class_ids", "retain_subset")
# hyper-parameters a method cannot do without, per task (the papers' values); --hp overrides them
DEFAULT_HP = {
    "jit": {"full-class": dict(sigma=0.5, lr=3e-4), "sub-class": dict(sigma=0.01, lr=3e-4),
            "random": dict(sigma=0.01, lr=3e-4), "instances": dict(sigma=0.01, lr=3e-4)},
}

# per-method hyper-parameters on the digits CNN (smoke/quick): the earlier chapters' quick settings
# where they fit this model, else tuned on seed 0 (class 0 for full-class) as the showdown chapter
# says; everything not named here is the method's default (the papers' or the SSD benchmark's)
# neggrad: one epoch over 16 instances (batch 64) is ONE ascent step, a no-op. The instance-wise
# paper's NegGrad ascends until the forget images are misclassified (capped); `neggrad` has no
# such stop, so the tasks without a retain term get a fixed budget of about 30 steps: on the smoke
# model (seed 0) 10 steps at lr 0.01 left 75 % of 16 instances correct, 30 steps none.
NEGGRAD_ASCENT = {"instances": dict(epochs=30, lr=0.01),          # 16 images: 1 step per epoch
                  "random": dict(epochs=10, lr=0.01),             # ~144 images: 3 steps per epoch
                  "sub-class": dict(epochs=10, lr=0.01)}          # ~145 images: 3 steps per epoch
DIGITS_HP = {
    "neggrad": {"full-class": dict(epochs=4, lr=0.01, retain_weight=1.0), **NEGGRAD_ASCENT},
    "fisher_forgetting": dict(alpha=1e-7, n_samples=500),
    "fisher_noise": dict(n_samples=500),
    "boundary_shrink": dict(bound=0.3, lr=1e-4, epochs=10),
    "relabel": dict(lr=1e-3),
    "jit": {"full-class": dict(sigma=0.5, lr=3e-5), "sub-class": dict(sigma=0.01, lr=3e-5),
            "random": dict(sigma=0.01, lr=3e-5), "instances": dict(sigma=0.01, lr=3e-5)},
    "mask": dict(ratio=0.04),
    "mask_retain_subset": dict(ratio=0.04),
    "mask_forget_only": dict(ratio=0.01),
    "unsir": dict(n_per_class=100, noise_batch=64, noise_copies=5, batch_size=32),
    "instance_unlearn": dict(eps=2.0, n_adv=4, pgd_iters=30, max_steps=400),
}
# smoke: the same settings, shorter (CI runs every method once in about a minute)
SMOKE_HP = {**DIGITS_HP, "finetune": dict(epochs=2), "random_labels": dict(epochs=1),
            "fisher_forgetting": dict(alpha=1e-7, n_samples=100),
            "fisher_noise": dict(n_samples=100, finetune_epochs=2),
            "relabel": dict(lr=1e-3, max_steps=50), "replay_finetune": dict(finetune_epochs=2),
            "mask": dict(ratio=0.04, finetune_epochs=2),
            "mask_retain_subset": dict(ratio=0.04, finetune_epochs=2)}
# CIFAR in full: the papers' settings (DEFAULT_HP and each method's defaults), a bounded Fisher
PAPER_HP = {
    # the instance-wise scripts' lr; on 16 instances 100 steps (Algorithm 3's MAXEP), no early stop
    "neggrad": {"full-class": dict(lr=1e-3), "sub-class": dict(lr=1e-3), "random": dict(lr=1e-3),
                "instances": dict(lr=1e-3, epochs=100)},
    "fisher_forgetting": dict(alpha=1e-6, n_samples=10_000),
    "fisher_noise": dict(n_samples=10_000),
}

# training and task settings per profile (the chapters' digits CNN in smoke/quick, CIFAR in full)
PRESETS = {
    "smoke": dict(dataset="digits", model="cnn", model_kwargs={"width": 16}, epochs=10, lr=0.05,
                  batch_size=64, schedule="cosine", weight_decay=5e-4, fraction=0.1, k=16,
                  forget={"full-class": [0], "sub-class": ["3"]}, hp=SMOKE_HP,
                  relearn=dict(max_epochs=5, lr=0.05, n_per_epoch=500)),
    "quick": dict(dataset="digits", model="cnn", model_kwargs={"width": 32}, epochs=20, lr=0.05,
                  batch_size=64, schedule="cosine", weight_decay=5e-4, fraction=0.1, k=16,
                  forget={"full-class": [0, 3, 8], "sub-class": ["3", "7", "9"]}, hp=DIGITS_HP,
                  relearn=dict(max_epochs=30, lr=0.05, n_per_epoch=500)),
    "full": dict(dataset="cifar10", model="resnet18", model_kwargs={}, epochs=40, lr=0.1,
                 batch_size=512, schedule="onecycle", weight_decay=5e-4, fraction=0.1, k=16,
                 forget={"full-class": ["airplane", "cat", "ship"],
                         "sub-class": ["rocket", "mushroom", "lamp"]}, hp=PAPER_HP,
                 relearn=dict(max_epochs=100, lr=0.01, n_per_epoch=500), retime_epochs=2),
}
TRAIN_KEYS = ("model", "model_kwargs", "epochs", "lr", "batch_size", "schedule", "weight_decay")


# ----------------------------------------------------------------------------- what may run where

def applicable(method: str, task: str) -> str | None:
    """``None`` if ``method`` may run on ``task`` (a name in :data:`TASKS`), else the reason why not."""
    from .methods import REGISTRY
    from .tasks import ACCESS_DESCRIPTION
    if task not in TASKS:
        raise SweepError(f"Unknown task {task!r}: choose from {', '.join(TASKS)}.")
    if method not in REGISTRY:
        raise SweepError(f"Unknown method {method!r}: registered are {', '.join(sorted(REGISTRY))}.")
    access = REGISTRY[method].access
    if access in CLASS_ONLY and task != "full-class":
        return (f"{method} has access {access!r} ({ACCESS_DESCRIPTION[access]}): the id of a forgotten "
                f"class is all it knows of what to forget, so it runs on full-class tasks only")
    if method in OWN_ORIGINAL:
        return f"{method} {OWN_ORIGINAL[method]}, not the sweep's shared original"
    if method in DESIGNED_FOR and task not in DESIGNED_FOR[method][0]:
        tasks, why = DESIGNED_FOR[method]
        return f"{method} is designed for {', '.join(tasks)} tasks only ({why}; access {access!r})"
    return None


def access_of(method: str) -> str:
    from .methods import REGISTRY
    return "reference" if method in ("original", "retrain") else REGISTRY[method].access


# ----------------------------------------------------------------------------- configuration

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
    retime_epochs: int | None = None      # re-time retraining over this many epochs (None: all of them)

    @classmethod
    def from_profile(cls, profile: str, **overrides) -> "SweepConfig":
        base = {k: v for k, v in PRESETS[profile].items() if k != "forget"}
        base["hp"] = dict(base.get("hp") or {})
        given = {k: v for k, v in overrides.items() if v is not None}
        base["hp"].update(given.pop("hp", None) or {})      # per method: the given replaces the preset's
        base.update(given)
        from . import profiles
        return cls(profile=profile, dry_run=profiles.active().dry_run, **base)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def fingerprint(self) -> str:
        from . import __version__
        blob = json.dumps({**self.as_dict(), "unlearnkit": __version__}, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def train_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in TRAIN_KEYS}

    def dataset_for(self, task: str) -> str:
        return SUPER.get(self.dataset, self.dataset) if task == "sub-class" else self.dataset


@dataclass(frozen=True)
class Run:
    task: str
    forget: str
    seed: int
    method: str

    @property
    def key(self) -> tuple:
        return (self.task, str(self.forget), int(self.seed), self.method)


def hp_for(cfg: "SweepConfig", method: str, task: str) -> dict:
    """The hyper-parameters of ``method`` on ``task``: :data:`DEFAULT_HP`, then ``cfg.hp[method]``,
    which is either one dict for every task or ``{task: dict}``."""
    out = dict(DEFAULT_HP.get(method, {}).get(task, {}))
    given = dict(cfg.hp.get(method) or {})
    if given and set(given) <= set(TASKS):
        given = dict(given.get(task) or {})
    out.update(given)
    return out


def parse_seeds(text) -> list[int]:
    """``"0-4"`` → [0, 1, 2, 3, 4]; ``"0,2,5"`` → [0, 2, 5]; an int or a list passes through."""
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(s) for s in text]
    out = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                a, b = int(a), int(b)
                if b < a:
                    raise ValueError
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise SweepError(f"Cannot read the seeds {text!r}: write e.g. 0-4 or 0,2,5 (non-negative).") from None
    if not out or min(out) < 0:
        raise SweepError(f"Cannot read the seeds {text!r}: write e.g. 0-4 or 0,2,5 (non-negative).")
    return list(dict.fromkeys(out))


def plan(methods: Iterable[str], tasks: Iterable[str], seeds: Iterable[int], forget: dict | None = None,
         profile: str = "quick", skip_inapplicable: bool = False) -> list[Run]:
    """The runs of a sweep, reference runs first. A method that does not fit a task raises
    :class:`SweepError` (or is left out with ``skip_inapplicable=True``)."""
    from .methods import REGISTRY
    methods, tasks, seeds = list(methods), list(tasks), list(seeds)
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
    forget = dict(PRESETS[profile]["forget"], **(forget or {}))
    runs = []
    for t in tasks:
        items = [str(i) for i in forget[t]] if t in ("full-class", "sub-class") else ["-"]
        ok = []
        for m in methods:
            why = applicable(m, t)
            if why and not skip_inapplicable:
                raise SweepError(f"Cannot run {m} on the {t} task: {why}. Leave it out, or pick a task "
                                 f"it fits.")
            if not why:
                ok.append(m)
        for item in items:
            for s in seeds:
                runs.extend(Run(t, item, int(s), m) for m in [REFERENCE] + ok)
    return runs


# ----------------------------------------------------------------------------- one run

_DATA: dict = {}


def _dataset(name: str):
    from .data import load_dataset
    if name not in _DATA:
        _DATA[name] = load_dataset(name)
    return _DATA[name]


def make_task(cfg: SweepConfig, task: str, forget: str, seed: int):
    """The :class:`~unlearnkit.Task` of one run (random and instance draws depend on the seed)."""
    from .tasks import forget_classes, forget_instances, forget_random, forget_subclass
    data = _dataset(cfg.dataset_for(task))
    if task == "full-class":
        item = int(forget) if str(forget).isdigit() and forget not in data.classes else forget
        return forget_classes(data, [item])
    if task == "sub-class":
        return forget_subclass(data, forget)
    if task == "random":
        return forget_random(data, float(cfg.fraction), seed=int(seed))
    import torch
    g = torch.Generator().manual_seed(10_007 + int(seed))
    idx = torch.randperm(len(data.y_train), generator=g)[:int(cfg.k)]
    return forget_instances(data, sorted(idx.tolist()))


def _relearn(cfg: SweepConfig, model, task, target: float, seed: int) -> float:
    from .metrics import relearn_time
    if not cfg.relearn:
        return float("nan")
    return float(relearn_time(model, task, target, definition="unsir", seed=seed, **cfg.relearn))


def retrain_seconds(cfg: SweepConfig, task, retrained, kw: dict) -> float:
    """Seconds retraining takes in this run: the zoo's own time when it trained the model just now,
    else a fresh retraining (into a throw-away folder) timed on this run's clock. With
    ``cfg.retime_epochs`` (``full``: 2) only that many epochs are timed and the time is scaled to
    ``cfg.epochs``; the schedule is the same, so an epoch costs the same."""
    import tempfile

    from .zoo import train_or_load
    if not getattr(retrained, "zoo_cached", True):
        return float(retrained.zoo_info.get("train_seconds", float("nan")))
    n = min(int(cfg.retime_epochs or cfg.epochs), int(cfg.epochs))
    with tempfile.TemporaryDirectory() as d:
        again = train_or_load(task, "retrain", **{**kw, "epochs": n}, cache_dir=d)
    return float(again.zoo_info["train_seconds"]) * cfg.epochs / n


def run_one(cfg: SweepConfig | dict, run: Run | dict, progress: bool = False) -> list[dict]:
    """Do one run and return its rows (plain dicts): the method's row, or for the reference run
    the ``original`` and ``retrain`` rows. Runs anywhere (in-process or on a Ray worker)."""
    from . import profiles
    from .bench import run_methods
    from .fingerprint import run_code
    from .metrics import accuracy, evaluate
    from .zoo import train_or_load
    cfg = cfg if isinstance(cfg, SweepConfig) else SweepConfig(**cfg)
    run = run if isinstance(run, Run) else Run(**run)
    p = profiles.active()
    if p.name != cfg.profile or p.dry_run != cfg.dry_run:
        profiles.profile(cfg.profile, seed=run.seed, quiet=True, dry_run=cfg.dry_run)
    profiles.set_seed(run.seed)
    t_start = time.perf_counter()
    task = make_task(cfg, run.task, run.forget, run.seed)
    kw = dict(cfg.train_kwargs(), seed=run.seed, progress=progress, verbose=False)
    original = train_or_load(task, "original", **kw)
    retrained = train_or_load(task, "retrain", **kw)
    t_zoo = time.perf_counter() - t_start             # training (or loading) the zoo's models
    t0 = time.perf_counter()
    target = float(accuracy(original, *task.forget_set()))     # the original's D_f accuracy
    profiles.set_seed(run.seed)
    if run.method == REFERENCE:
        df = evaluate({"original": original, "retrain": retrained}, task, mia=cfg.mia)
        df.loc["original", "seconds"] = original.zoo_info.get("train_seconds", float("nan"))
        # the ratio "time / retrain" divides by a retraining timed in this run, under this run's load
        df.loc["retrain", "seconds"] = retrain_seconds(cfg, task, retrained, kw)
        df["diverged"], df["error"] = False, ""
        t_eval, t_method = time.perf_counter() - t0, 0.0
        t0 = time.perf_counter()
        df["relearn_epochs"] = [0.0, _relearn(cfg, retrained, task, target, run.seed)]
    else:
        hp = hp_for(cfg, run.method, run.task)
        df, models = run_methods({run.method: (run.method, hp)}, original, task, {"retrain": retrained},
                                 mia=cfg.mia, verbose=False, seed=run.seed)
        df = df.loc[[run.method]].copy()
        ok = run.method in models and not bool(df["diverged"].iloc[0])
        t_method = float(df["seconds"].iloc[0]) if ok else 0.0
        t_eval = max(time.perf_counter() - t0 - t_method, 0.0)   # evaluation incl. both MIAs
        t0 = time.perf_counter()
        df["relearn_epochs"] = _relearn(cfg, models[run.method], task, target, run.seed) if ok \
            else float("nan")
    t_relearn = time.perf_counter() - t0
    # where the run's wall time went (the reference run's two rows share one set of timings)
    df["time_zoo"], df["time_method"], df["time_eval"] = t_zoo, t_method, t_eval
    df["time_relearn"], df["time_run"] = t_relearn, time.perf_counter() - t_start
    rows = []
    for name, r in df.iterrows():
        row = {"task": run.task, "forget": str(run.forget), "seed": int(run.seed), "method": name,
               "access": access_of(name)}
        row.update({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
        row["forget_size"] = int(len(task.forget_idx))
        row["config"] = cfg.fingerprint
        row["code"] = run_code(name)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- engines

def _bar(total: int, progress: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr)


def _env_vars() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith("UNLEARNKIT_")}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the duration of a ``with`` block: join ``address`` (a cluster) or start a local Ray
    with ``num_cpus``; an already running session is reused and left running. The workers get
    the ``UNLEARNKIT_*`` environment variables of this process (profile, data folder, ...)."""
    try:
        import ray
    except ImportError:
        raise SweepError("The ray engine needs Ray: pip install 'unlearnkit[scale]' (or pip install "
                         "'ray>=2.9'). The default engine (in-process) needs nothing extra.") from None
    if ray.is_initialized():
        yield ray
        return
    if address:        # a cluster's workers do not share this process's environment: hand it on
        ray.init(address=address, runtime_env={"env_vars": _env_vars()}, log_to_driver=False)
    else:              # local workers inherit it
        ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_map(fn: Callable, items: list, address: str | None = None, num_cpus: int | None = None,
            cpus_per_item: float = 1, gpus_per_item: float = 0, on_result: Callable | None = None,
            on_error: Callable | None = None) -> list:
    """``[fn(item) for item in items]`` on Ray, results in the order of ``items``.

    ``on_result(i, result)`` is called as each finishes (in completion order); a task whose worker
    raised or died calls ``on_error(i, exception)`` (or re-raises without one) and leaves ``None``.
    Also used for the many models of the forget-quality score (the showdown chapter).
    """
    with ray_session(address, num_cpus) as ray:
        remote = ray.remote(num_cpus=cpus_per_item, num_gpus=gpus_per_item, max_retries=0)(fn)
        refs = {remote.remote(it): i for i, it in enumerate(items)}
        out = [None] * len(items)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            try:
                out[i] = ray.get(ready[0])
            except Exception as e:                       # a worker error or a dead worker
                if on_error is None:
                    raise
                on_error(i, e)
                continue
            if on_result is not None:
                on_result(i, out[i])
        return out


def _ray_run(args):
    cfg, run = args
    return run_one(cfg, run)


def _run_all(cfg: SweepConfig, todo: list, out: Path, engine: str, address, num_cpus, gpus_per_run,
             progress: bool, log: Callable) -> list:
    """Do the runs ``todo``, appending each one's rows to ``out`` as it finishes; the failed
    runs, with their exceptions."""
    bar = _bar(len(todo), progress, "bench")
    failed = []
    try:
        if engine == "local":
            for r in todo:
                if bar is not None:
                    bar.set_postfix_str(f"{r.task} {r.forget} s{r.seed} {r.method}")
                try:
                    rows = run_one(cfg, r)
                except KeyboardInterrupt:
                    raise
                except Exception as e:              # one failed run; the others go on
                    failed.append((r, e))
                    log(f"[bench] run {r.key} failed ({type(e).__name__}: {e}); it is not in {out}: "
                        f"resume to retry it")
                else:
                    append_rows(out, rows)
                if bar is not None:
                    bar.update()
        else:
            if gpus_per_run is None:
                gpus_per_run = 1 if cfg.profile == "full" and not cfg.dry_run else 0

            # reference runs first: they train the zoo's models that the method runs then load
            with ray_session(address, num_cpus):
                for batch in ([r for r in todo if r.method == REFERENCE],
                              [r for r in todo if r.method != REFERENCE]):
                    if not batch:
                        continue

                    def got(i, rows):
                        append_rows(out, rows)
                        if bar is not None:
                            bar.update()

                    def lost(i, e, batch=batch):
                        failed.append((batch[i], e))
                        log(f"[bench] run {batch[i].key} failed on its worker ({type(e).__name__}: {e}); "
                            f"it is not in {out}: resume to retry it")

                    ray_map(_ray_run, [(cfg.as_dict(), r.__dict__) for r in batch],
                            gpus_per_item=gpus_per_run, on_result=got, on_error=lost)
    finally:
        if bar is not None:
            bar.close()
    return failed


def sweep(methods, tasks=("full-class",), seeds=(0, 1, 2), out: str | Path = "results.csv",
          profile: str | None = None, forget: dict | None = None, engine: str = "local",
          address: str | None = None, num_cpus: int | None = None, gpus_per_run: float | None = None,
          progress: bool = True, skip_inapplicable: bool = False, log: Callable = print,
          **settings) -> pd.DataFrame:
    """Run (or resume) a sweep and return every row of the results file.

    ``methods``: registered names; ``tasks``: names from :data:`TASKS`; ``seeds``: ints or
    ``"0-4"``; ``settings`` override the profile's preset (dataset, model, epochs, lr, ...;
    ``hp={"jit": {...}}`` per-method hyper-parameters, ``mia``, ``relearn``).
    """
    from . import profiles
    if engine not in ("local", "ray"):
        raise SweepError(f"Unknown engine {engine!r}: 'local' (in-process, the default) or 'ray'.")
    p = profiles.active() if profile is None else profiles.profile(profile, quiet=True)
    if p.name not in PRESETS:
        raise SweepError(f"Unknown profile {p.name!r}.")
    out = Path(out)
    _format(out)
    cfg = SweepConfig.from_profile(p.name, **settings)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    runs = plan(methods, tasks, parse_seeds(seeds), forget, p.name, skip_inapplicable)
    with own(out):                        # one sweep per results file: a second one is refused
        have = check_results(out, cfg)
        done, there = done_keys(have), done_keys(have, current_only=False)
        todo = [r for r in runs if r.key not in done]
        redo = sum(r.key in there for r in todo)
        log(f"[bench] {len(runs)} runs, {len(runs) - len(todo)} already in {out}, {len(todo)} to do"
            + (f" ({redo} of them made by older code: redone)" if redo else "")
            + f" (engine {engine}, config {cfg.fingerprint})")
        t0 = time.perf_counter()
        failed = _run_all(cfg, todo, out, engine, address, num_cpus, gpus_per_run, progress, log)
        log(f"[bench] finished in {time.perf_counter() - t0:.1f}s"
            + (f"; {len(failed)} runs failed" if failed else ""))
        res = read_results(out)
    stale = stale_message(res, where=str(out))
    if stale:                             # runs outside this sweep, made by older code
        log(f"[bench] {stale} They are left out of the table returned.")
        keep = is_current(res)
        res, left = res[keep].reset_index(drop=True), res[~keep]
        res.attrs["stale"] = list(zip(left["task"], left["forget"], left["seed"], left["method"]))
    res.attrs["failed"] = [r.key for r, _ in failed]
    return res


# ----------------------------------------------------------------------------- tables

TABLE_METRICS = ("train_retain", "train_forget", "test_retain", "test_forget", "MIA_entropy_%",
                 "MIA_loss_AUC", "relearn_epochs", "seconds")


def spreads(results: pd.DataFrame) -> dict:
    """One :class:`~unlearnkit.Spread` per task of a results table (rows ordered as run).
    :class:`SweepError` if some rows were made by older code (see :mod:`unlearnkit.results`)."""
    from .bench import Spread
    from .quality import add_tug_of_war
    stale = stale_message(results)
    if stale:
        raise SweepError(stale)
    out = {}
    for t in dict.fromkeys(results["task"]):
        r = results[results["task"] == t].drop(columns=["task"]).reset_index(drop=True)
        out[t] = Spread(add_tug_of_war(r), reference="retrain")
    return out


def ranking(results: pd.DataFrame, digits: int = 1) -> dict:
    """Per task: the display table (mean ± std per metric), the access level, the time ratio to
    retraining, and the rank by distance to retrain (mean |gap| over train-forget, train-retain and
    test-retain accuracy), best first. Returns ``{task: DataFrame}``."""
    out = {}
    for t, sp in spreads(results).items():
        tab = sp.table(TABLE_METRICS, digits=digits)
        if "MIA_loss_AUC" in tab.columns:           # an AUC in [0, 1]: two more digits
            tab["MIA_loss_AUC"] = sp.table(["MIA_loss_AUC"], digits=digits + 1)["MIA_loss_AUC"]
        tab.insert(tab.columns.get_loc("runs"), "ToW", sp.table(["ToW"], digits=3)["ToW"])
        access = sp.runs.groupby("method", sort=False)["access"].first()
        tab.insert(0, "access", access.reindex(tab.index))
        secs = sp.runs.groupby("method", sort=False)["seconds"].mean()
        ratio = secs / secs.get("retrain", float("nan"))
        tab["time / retrain"] = [f"{v:.3f}" if not math.isnan(v) else "–" for v in ratio.reindex(tab.index)]
        gap = sum(sp.gap(m) for m in ("train_forget", "train_retain", "test_retain")) / 3
        tab["gap to retrain"] = [f"{v:.{digits}f}" if not math.isnan(v) else "diverged"
                                 for v in gap.reindex(tab.index)]
        order = gap.reindex(tab.index).fillna(float("inf")).sort_values(kind="stable").index
        out[t] = tab.loc[order]
    return out


# ----------------------------------------------------------------------------- the forget-quality score

GROUPINGS = ("one original", "originals")
REF_NAME = "retrain (other seeds)"


def quality_one(args) -> dict:
    """One seed of the forget-quality score: the logit-scaled confidence on every forget example
    of the retrain model (seed s), of an extra retrain model (seed s + 1000: the retrain-vs-retrain
    reference), of the original and of each method applied to the original, with retain, test and
    forget accuracy. ``args = (cfg, task, forget, seed, methods[, grouping[, original_seed]])``;
    ``grouping``: ``"one original"`` (the challenge's: the original of ``original_seed``, the
    same for every seed, each method run with seed s) or ``"originals"`` (the default, a variant:
    the original of seed s). Runs anywhere (in-process or on a Ray worker)."""
    from . import profiles
    from .bench import _takes_seed
    from .metrics import evaluate
    from .methods import get_method
    from .quality import confidences
    from .training import DivergedError
    from .zoo import train_or_load
    cfg, task_name, forget, seed, methods = args[:5]
    grouping = args[5] if len(args) > 5 else "originals"
    original_seed = int(args[6]) if len(args) > 6 else 0
    if grouping not in GROUPINGS:
        raise SweepError(f"Unknown grouping {grouping!r}: {' or '.join(map(repr, GROUPINGS))}.")
    cfg = cfg if isinstance(cfg, SweepConfig) else SweepConfig(**cfg)
    p = profiles.active()
    if p.name != cfg.profile or p.dry_run != cfg.dry_run:
        profiles.profile(cfg.profile, seed=seed, quiet=True, dry_run=cfg.dry_run)
    profiles.set_seed(seed)
    task = make_task(cfg, task_name, forget, seed)
    kw = dict(cfg.train_kwargs(), progress=False, verbose=False)
    original = train_or_load(task, "original", seed=original_seed if grouping == "one original" else seed,
                             **kw)
    models = {"retrain": train_or_load(task, "retrain", seed=seed, **kw),
              REF_NAME: train_or_load(task, "retrain", seed=seed + 1000, **kw),
              "original": original}
    for m in methods:
        profiles.set_seed(seed)
        fn, hp = get_method(m), hp_for(cfg, m, task_name)
        if _takes_seed(fn) and "seed" not in hp:      # mask_classifier, e.g., takes no seed
            hp["seed"] = seed
        try:
            models[m] = fn(original, task, **hp)      # the registry works on a copy
        except DivergedError:
            models[m] = None
    xf, yf = task.forget_set()
    out = {}
    for name, m in models.items():
        if m is None:
            out[name] = None
            continue
        ev = evaluate(m, task, mia=False).iloc[0]
        out[name] = {"conf": confidences([m], xf, yf)[0], "train_retain": float(ev["train_retain"]),
                     "test_retain": float(ev["test_retain"]), "train_forget": float(ev["train_forget"])}
    return out


def _quality_key(cfg: SweepConfig, methods, parts: dict, score: bool) -> str:
    """The cache key of the forget-quality jobs (``score=False``: the configuration, the arguments
    and the code that decides the models' confidences: these jobs, the training and evaluation,
    each method's) or of the scored table (``score=True``: that, plus the score's module)."""
    from . import quality as qmod
    from .fingerprint import _combine, code_hash, eval_code, method_code, training_code
    code = _combine(code_hash(quality_one, make_task, hp_for), training_code(), eval_code(),
                    *[method_code(m) for m in methods])
    if score:
        code = _combine(code, code_hash(qmod, quality))
    blob = json.dumps({"cfg": cfg.fingerprint, "methods": list(methods), "code": code, **parts},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def quality_jobs(methods, task: str = "full-class", forget: str = "0", n_models: int = 32, cfg=None,
                 grouping: str = "originals", original_seed: int = 0, engine: str = "local",
                 address: str | None = None, num_cpus: int | None = None, progress: bool = False,
                 cache: bool = False) -> tuple[list, float]:
    """The ``n_models`` jobs of :func:`quality_one` (seeds 0..n−1): their results in seed order and
    the seconds they took; with ``cache=True`` stored beside the zoo (keyed by configuration,
    arguments and code) and loaded when present (the seconds are those of the run that made them)."""
    from . import profiles
    cfg = cfg or SweepConfig.from_profile(profiles.active().name)
    if grouping not in GROUPINGS:
        raise SweepError(f"Unknown grouping {grouping!r}: {' or '.join(map(repr, GROUPINGS))}.")
    for m in methods:
        why = applicable(m, task)
        if why:
            raise SweepError(f"Cannot run {m} on the {task} task: {why}.")
    parts = dict(task=task, forget=str(forget), n_models=int(n_models), grouping=grouping,
                 original_seed=int(original_seed))
    path = None
    if cache:
        import torch
        path = profiles.active().zoo_root / f"quality-jobs-{cfg.profile}-{_quality_key(cfg, methods, parts, False)}.pt"
        if path.exists():
            got = torch.load(path, weights_only=False)
            return got["res"], got["seconds"]
    t0 = time.perf_counter()
    jobs = [(cfg.as_dict(), task, str(forget), s, list(methods), grouping, int(original_seed))
            for s in range(n_models)]
    if engine == "local":
        bar = _bar(len(jobs), progress, "quality")
        res = []
        for j in jobs:
            res.append(quality_one(j))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
    elif engine == "ray":
        res = ray_map(quality_one, jobs, address=address, num_cpus=num_cpus)
    else:
        raise SweepError(f"Unknown engine {engine!r}: 'local' or 'ray'.")
    if path is not None:
        from .cache import atomic_save
        atomic_save({"res": res, "seconds": time.perf_counter() - t0}, path)
    return res, time.perf_counter() - t0


def quality(methods, task: str = "full-class", forget: str = "0", n_models: int = 32, cfg=None,
            engine: str = "local", address: str | None = None, num_cpus: int | None = None,
            delta: float | None = None, sizes=(8, 16, 32), progress: bool = False,
            grouping: str = "originals", original_seed: int = 0, n_boot: int = 0, boot_seed: int = 0,
            examples: int | None = None, cache: bool = False):
    """The forget-quality score (:func:`unlearnkit.quality.forget_quality`) of each method against
    ``n_models`` retrained models (seeds 0..n−1), with the retrain-vs-retrain reference
    (``"retrain (other seeds)"``: retrained models of seeds n_models.. + 1000, what perfect
    unlearning scores with this many models) and the original.

    ``grouping``: ``"originals"`` (default, a variant: the unlearned group is one run from each of
    n originals of seeds 0..n−1) or ``"one original"`` (the challenge's: n unlearning runs with
    seeds 0..n−1 from ONE original, of ``original_seed``; its ``original`` row is that one model n
    times, which the score's peaky rule gives 0). ``delta``: None for the score's own δ.
    ``n_boot`` > 0 adds a bootstrap error bar over models (``F std``, ``F lo``, ``F hi``:
    :func:`unlearnkit.quality.forget_quality_ci`). ``examples``: score a fixed random subset of that
    many forget examples (drawn with a generator seeded 0), to save time. ``cache=True`` stores the
    result beside the zoo, keyed by the configuration, the arguments and the code, and loads it
    when present (``table.attrs["seconds"]``: the time it took when computed, ``["cached"]``).
    Each seed is one independent job (``engine="ray"`` fans them out). Returns ``(table, eps)``:
    a DataFrame with F (and its error bar), the final score, the median ε̂, the share of examples
    with ε̂ = ∞ (perfectly separated), accuracies, and F with the first ``sizes`` models of each
    group; and the ε̂ arrays."""
    import numpy as np
    import torch

    from . import profiles
    from . import quality as qmod
    cfg = cfg or SweepConfig.from_profile(profiles.active().name)
    parts = dict(task=task, forget=str(forget), n_models=int(n_models), delta=delta, sizes=list(sizes),
                 grouping=grouping, original_seed=int(original_seed), n_boot=int(n_boot),
                 boot_seed=int(boot_seed), examples=examples)
    path = None
    if cache:
        path = profiles.active().zoo_root / f"quality-{cfg.profile}-{_quality_key(cfg, methods, parts, True)}.pt"
        if path.exists():
            got = torch.load(path, weights_only=False)
            tab = got["table"]
            tab.attrs.update(seconds=got["seconds"], cached=True)
            return tab, got["eps"]
    t0 = time.perf_counter()
    res, t_jobs = quality_jobs(methods, task, forget, n_models, cfg, grouping, original_seed, engine,
                               address, num_cpus, progress, cache)
    n_ex = len(res[0]["retrain"]["conf"])
    keep = np.arange(n_ex)
    if examples is not None and examples < n_ex:
        g = torch.Generator().manual_seed(0)
        keep = np.sort(torch.randperm(n_ex, generator=g)[:int(examples)].numpy())
    score_kw = {} if delta is None else {"delta": delta}
    ref = np.stack([r["retrain"]["conf"] for r in res])[:, keep]
    ra_r = np.mean([r["retrain"]["train_retain"] for r in res])
    ta_r = np.mean([r["retrain"]["test_retain"] for r in res])
    rows, eps_all = {}, {}
    for name in res[0]:
        if name == "retrain":
            continue
        ok = [r[name] for r in res if r.get(name) is not None]
        if len(ok) < 2:
            rows[name] = {"F": float("nan"), "final": float("nan"), "models": len(ok)}
            continue
        u = np.stack([o["conf"] for o in ok])[:, keep]
        n = min(len(u), len(ref))
        f, eps = qmod.forget_quality(u[:n], ref[:n], return_eps=True, **score_kw)
        ra, ta = np.mean([o["train_retain"] for o in ok]), np.mean([o["test_retain"] for o in ok])
        row = {"F": f}
        if n_boot:
            ci = qmod.forget_quality_ci(u[:n], ref[:n], n_boot=n_boot, seed=boot_seed, **score_kw)
            row.update({"F std": ci.std, "F lo": ci.lo, "F hi": ci.hi})
        row.update({"final": qmod.final_score(f, ra, ta, ra_r, ta_r), "eps median": float(np.median(eps)),
                    "eps inf %": 100 * float(np.mean(np.isinf(eps))),
                    "train_forget": float(np.mean([o["train_forget"] for o in ok])), "train_retain": ra,
                    "test_retain": ta, "models": n, "examples": len(keep)})
        for k in sizes:
            if k < n:
                row[f"F ({k} models)"] = qmod.forget_quality(u[:k], ref[:k], **score_kw)
            elif k == n:
                row[f"F ({k} models)"] = f
        rows[name] = row
        eps_all[name] = eps
    tab = pd.DataFrame(rows).T.rename_axis("method")
    seconds = t_jobs + time.perf_counter() - t0
    if path is not None:
        from .cache import atomic_save
        atomic_save({"table": tab, "eps": eps_all, "seconds": seconds}, path)
    tab.attrs.update(seconds=seconds, cached=False)
    return tab, eps_all
