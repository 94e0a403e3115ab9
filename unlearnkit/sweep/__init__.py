"""Headless sweeps: every method × task × seed, one results file, resumable, in-process or on Ray.

Behind ``python -m unlearnkit bench`` and the showdown chapter (``book/09_showdown.ipynb``).

The package splits by concern: :mod:`.config` (presets, configuration, plan), :mod:`.run` (one
run: :func:`prepare` and :func:`run_one`), :mod:`.engines` (in-process or Ray),
:mod:`.ranking` (the tables), :mod:`.quality_jobs` (the per-example score's many models) and
:mod:`unlearnkit.results` (the results file).

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
* Each method runs only on the tasks its access level and design fit (:func:`applicable`, read
  from the method's record);
  asking for another is an error that says why.
* ``engine="ray"`` fans the runs out on Ray (``address`` names a cluster; without it Ray starts
  locally). The driver writes each row as its run finishes; a worker that dies loses only its
  own run, which is reported and left for the next resume.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pandas as pd

from .. import budget
from ..methods import REGISTRY
from ..methods import record as _record
from ..results import (
    FORMATS,
    KEYS,
    REFERENCE,
    SweepError,
    _format,
    append_rows,
    check_results,
    current,
    done_keys,
    is_current,
    lock_path,
    own,
    read_results,
    stale_message,
)
from ..tasks import SUPER, TASKS
from .config import (
    PRESETS,
    TRAIN_KEYS,
    Run,
    SweepConfig,
    access_of,
    check_names,
    hp_for,
    method_presets,
    parse_seeds,
    plan,
)
from .engines import ENGINES, ray_map, ray_session, run_all
from .quality_jobs import GROUPINGS, REF_NAME, quality, quality_jobs, quality_one
from .ranking import TABLE_METRICS, ranking, spreads
from .run import dataset, make_task, prepare, relearn, retrain_seconds, run_one

__all__ = [
    "FORMATS",
    "KEYS",
    "REFERENCE",
    "SweepError",
    "append_rows",
    "check_results",
    "current",
    "done_keys",
    "is_current",
    "lock_path",
    "own",
    "read_results",
    "stale_message",
    "SUPER",
    "TASKS",
    "PRESETS",
    "TRAIN_KEYS",
    "Run",
    "SweepConfig",
    "access_of",
    "check_names",
    "hp_for",
    "method_presets",
    "parse_seeds",
    "plan",
    "ENGINES",
    "ray_map",
    "ray_session",
    "run_all",
    "GROUPINGS",
    "REF_NAME",
    "quality",
    "quality_jobs",
    "quality_one",
    "TABLE_METRICS",
    "ranking",
    "spreads",
    "dataset",
    "make_task",
    "prepare",
    "relearn",
    "retrain_seconds",
    "run_one",
    "applicable",
    "sweep",
]


def applicable(method: str, task: str) -> str | None:
    """``None`` if ``method`` may run on ``task`` (a name in :data:`TASKS`), else the reason why
    not, read from the method's record; :class:`SweepError` for an unknown method or task."""
    if task not in TASKS:
        raise SweepError(f"Unknown task {task!r}: choose from {', '.join(TASKS)}.")
    if method not in REGISTRY:
        raise SweepError(f"Unknown method {method!r}: registered are {', '.join(sorted(REGISTRY))}.")
    return _record(method).applicable(task)


def _planned_weights(methods, seeds, forget, paired: bool = False) -> Callable:
    """``run -> (seeds, items, methods)``: how many planned runs one run of a dry run's trimmed
    lists stands for (:class:`unlearnkit.profiles.Few`): the seeds, forget items and methods left
    out (the reference run is one per task, seed and item)."""

    def ratio(v) -> float:
        return getattr(v, "planned", len(v)) / max(1, len(v)) if isinstance(v, list) else 1.0

    # paired runs: a left-out seed takes its item along (one factor, not two)
    per_item = {} if paired else {t: ratio(v) for t, v in (forget or {}).items()}
    s, m = ratio(seeds), ratio(methods)
    return lambda r: (s, per_item.get(r.task, 1.0), 1.0 if r.method == REFERENCE else m)


def _weighted(run_one: Callable, weight: Callable) -> Callable:
    """``run_one`` whose model calls count as often as the runs it stands for (budget): a left-out
    seed brings its own models, a left-out item its own retrained model, a left-out method none."""
    from .. import budget

    def one(cfg, run, *args, **kwargs):
        s, i, m = weight(run)
        with budget.loop(s), budget.loop(i, shared=("original",)):
            with budget.loop(m, shared=("original", "retrain")):
                return run_one(cfg, run, *args, **kwargs)

    return one


def sweep(
    methods,
    tasks=("full-class",),
    seeds=(0, 1, 2),
    out: str | Path = "results.csv",
    profile: str | None = None,
    forget: dict | None = None,
    engine: str = "local",
    address: str | None = None,
    num_cpus: int | None = None,
    gpus_per_run: float | None = None,
    progress: bool = True,
    skip_inapplicable: bool = False,
    paired: bool = False,
    log: Callable = print,
    **settings,
) -> pd.DataFrame:
    """Run (or resume) a sweep and return every row of the results file.

    ``methods``: registered names; ``tasks``: names from :data:`TASKS`; ``seeds``: ints or
    ``"0-4"``; ``paired``: seed i with forget item i on the class tasks (:func:`plan`);
    ``settings`` override the profile's preset (dataset, model, epochs, lr, ...;
    ``hp={"jit": {...}}`` per-method hyper-parameters, ``mia``, ``relearn``).
    """
    from .. import profiles

    if engine not in ENGINES:
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
    weight = _planned_weights(methods, seeds, forget, paired)
    runs = plan(methods, tasks, parse_seeds(seeds), forget, p.name, skip_inapplicable, paired)
    with own(out):  # one sweep per results file: a second one is refused
        have = check_results(out, cfg)
        done, there = done_keys(have), done_keys(have, current_only=False)
        todo = [r for r in runs if r.key not in done]
        redo = sum(r.key in there for r in todo)
        log(
            f"[bench] {len(runs)} runs, {len(runs) - len(todo)} already in {out}, {len(todo)} to do"
            + (f" ({redo} of them made by older code: redone)" if redo else "")
            + f" (engine {engine}, config {cfg.fingerprint})"
        )
        t0 = time.perf_counter()
        with budget.loop():  # a model loaded by several runs counts once (unlearnkit.budget)
            failed = run_all(
                cfg,
                todo,
                out,
                engine,
                _weighted(run_one, weight),
                address=address,
                num_cpus=num_cpus,
                gpus_per_run=gpus_per_run,
                progress=progress,
                log=log,
                append=append_rows,
            )
        log(
            f"[bench] finished in {time.perf_counter() - t0:.1f}s"
            + (f"; {len(failed)} runs failed" if failed else "")
        )
        res = read_results(out)
    stale = stale_message(res, where=str(out))
    if stale:  # runs outside this sweep, made by older code
        log(f"[bench] {stale} They are left out of the table returned.")
        keep = is_current(res)
        res, left = res[keep].reset_index(drop=True), res[~keep]
        res.attrs["stale"] = list(zip(left["task"], left["forget"], left["seed"], left["method"]))
    res.attrs["failed"] = [r.key for r, _ in failed]
    return res
