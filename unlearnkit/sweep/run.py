"""One run: the task, the original and retrained models from the zoo, the method, its row.

Part of :mod:`unlearnkit.sweep`. :func:`prepare` is the one recipe for the two reference models
of a task and seed; :func:`unlearnkit.bench.run_spread` (every chapter's spread), :func:`run_one`
(the sweep) and :func:`unlearnkit.sweep.quality_one` (the per-example score) all use it.
"""

from __future__ import annotations

import contextlib
import time

from ..results import REFERENCE
from .config import Run, SweepConfig, access_of, hp_for

_DATA: dict = {}


def dataset(name: str):
    """The dataset ``name``, loaded once per process."""
    from ..data import load_dataset

    if name not in _DATA:
        _DATA[name] = load_dataset(name)
    return _DATA[name]


def make_task(cfg: SweepConfig, task: str, forget: str, seed: int):
    """The :class:`~unlearnkit.Task` of one run (:func:`unlearnkit.tasks.make_task` on the
    sweep's dataset; random and instance draws depend on the seed)."""
    from ..tasks import make_task as build

    return build(dataset(cfg.dataset_for(task)), task, forget, seed, fraction=cfg.fraction, k=cfg.k)


def prepare(task, train: dict, seed: int, *, original_seed: int | None = None):
    """The original (trained on everything) and the retrained model (on the retain set only) of
    ``task`` and ``seed``, from the zoo: trained once, then loaded. ``train`` holds the keyword
    arguments of :func:`unlearnkit.train_or_load`; ``original_seed`` gives the original another
    seed (the per-example score's "one original" grouping)."""
    from ..zoo import train_or_load

    kw = {"verbose": False, **train}
    o_seed = seed if original_seed is None else original_seed
    return train_or_load(task, "original", **kw, seed=o_seed), train_or_load(task, "retrain", **kw, seed=seed)


def relearn(cfg: SweepConfig, model, task, target: float, seed: int) -> float:
    """Epochs until ``model`` relearns the forget set to ``target`` (NaN when the sweep has no
    relearn settings)."""
    from ..metrics import relearn_time

    if not cfg.relearn:
        return float("nan")
    return float(relearn_time(model, task, target, definition="unsir", seed=seed, **cfg.relearn))


def retrain_seconds(cfg: SweepConfig, task, retrained, kw: dict) -> float:
    """Seconds retraining takes in this run: the zoo's own time when it trained the model just now,
    else a fresh retraining (into a throw-away folder) timed on this run's clock. With
    ``cfg.retime_epochs`` (``full``: 2) only that many epochs are timed and the time is scaled to
    ``cfg.epochs``; the schedule is the same, so an epoch costs the same."""
    import tempfile

    from ..zoo import train_or_load

    if not getattr(retrained, "zoo_cached", True):
        return float(retrained.zoo_info.get("train_seconds", float("nan")))
    n = min(int(cfg.retime_epochs or cfg.epochs), int(cfg.epochs))
    with tempfile.TemporaryDirectory() as d:
        again = train_or_load(task, "retrain", **{**kw, "epochs": n}, cache_dir=d)
    return float(again.zoo_info["train_seconds"]) * cfg.epochs / n


def use_profile(cfg: SweepConfig, seed: int) -> None:
    """Make the sweep's profile the active one in this process (a Ray worker starts without)."""
    from .. import profiles

    p = profiles.active()
    if p.name != cfg.profile or p.dry_run != cfg.dry_run:
        profiles.profile(cfg.profile, seed=seed, quiet=True, dry_run=cfg.dry_run)
    profiles.set_seed(seed)


def run_one(cfg: SweepConfig | dict, run: Run | dict, progress: bool = False) -> list[dict]:
    """Do one run and return its rows (plain dicts): the method's row, or for the reference run
    the ``original`` and ``retrain`` rows. Runs anywhere (in-process or on a Ray worker). Without
    ``progress`` no loop inside the run shows a progress bar (the sweep shows one for all runs)."""
    from ..profiles import progress_off

    with progress_off() if not progress else contextlib.nullcontext():
        return _run(cfg, run, progress)


def _run(cfg: SweepConfig | dict, run: Run | dict, progress: bool) -> list[dict]:
    from ..bench import run_methods
    from ..fingerprint import run_code
    from ..metrics import accuracy, evaluate
    from ..profiles import set_seed

    cfg = cfg if isinstance(cfg, SweepConfig) else SweepConfig(**cfg)
    run = run if isinstance(run, Run) else Run(**run)
    use_profile(cfg, run.seed)
    t_start = time.perf_counter()
    task = make_task(cfg, run.task, run.forget, run.seed)
    kw = dict(cfg.train_kwargs(), progress=progress, verbose=False)
    original, retrained = prepare(task, kw, run.seed)
    t_zoo = time.perf_counter() - t_start  # training (or loading) the zoo's models
    t0 = time.perf_counter()
    target = float(accuracy(original, *task.forget_set()))  # the original's D_f accuracy
    set_seed(run.seed)  # the same state whether the zoo trained the models or loaded them
    if run.method == REFERENCE:
        df = evaluate({"original": original, "retrain": retrained}, task, mia=cfg.mia)
        df.loc["original", "seconds"] = original.zoo_info.get("train_seconds", float("nan"))
        # the ratio "time / retrain" divides by a retraining timed in this run, under its load
        df.loc["retrain", "seconds"] = retrain_seconds(cfg, task, retrained, {**kw, "seed": run.seed})
        df["diverged"], df["error"] = False, ""
        t_eval, t_method = time.perf_counter() - t0, 0.0
        t0 = time.perf_counter()
        df["relearn_epochs"] = [0.0, relearn(cfg, retrained, task, target, run.seed)]
    else:
        hp = hp_for(cfg, run.method, run.task)
        df, models = run_methods(
            {run.method: (run.method, hp)},
            original,
            task,
            {"retrain": retrained},
            mia=cfg.mia,
            verbose=False,
            seed=run.seed,
        )
        df = df.loc[[run.method]].copy()
        ok = run.method in models and not bool(df["diverged"].iloc[0])
        t_method = float(df["seconds"].iloc[0]) if ok else 0.0
        t_eval = max(time.perf_counter() - t0 - t_method, 0.0)  # evaluation incl. both MIAs
        t0 = time.perf_counter()
        df["relearn_epochs"] = (
            relearn(cfg, models[run.method], task, target, run.seed) if ok else float("nan")
        )
    t_relearn = time.perf_counter() - t0
    # where the run's wall time went (the reference run's two rows share one set of timings)
    df["time_zoo"], df["time_method"], df["time_eval"] = t_zoo, t_method, t_eval
    df["time_relearn"], df["time_run"] = t_relearn, time.perf_counter() - t_start
    rows = []
    for name, r in df.iterrows():
        row = {
            "task": run.task,
            "forget": str(run.forget),
            "seed": int(run.seed),
            "method": name,
            "access": access_of(name),
        }
        row.update({k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()})
        row["forget_size"] = int(len(task.forget_idx))
        row["config"] = cfg.fingerprint
        row["code"] = run_code(name)
        rows.append(row)
    return rows
