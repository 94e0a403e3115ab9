"""Run methods by name on one task, or over seeds × forget classes with their spread.

Used by every chapter's headline table; ``python -m unlearnkit`` runs it from the command line.

* :func:`run_methods` applies registered methods (names, or ``(name, hyper-parameters)`` pairs)
  to one model on one task and returns one table. The wall time is the registry's clock
  (``unlearn_info["seconds"]``), measured once. A method that diverges (non-finite weights,
  :class:`~unlearnkit.DivergedError`) becomes a row with ``diverged = True`` and NaN metrics;
  the comparison goes on.
* :func:`run_spread` repeats one comparison over seeds and forget classes (original and retrain
  models come from the zoo, cached per seed and forget set) and returns a :class:`Spread`: a
  tidy DataFrame with one row per method × seed × forget class, and summaries with mean ± std.
* :func:`format_table` writes "diverged" where a number would be.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from .methods import get_method
from .metrics import evaluate
from .tasks import Task
from .training import DivergedError

KEY_METRICS = ("test_retain", "test_forget", "train_forget", "MIA_entropy_%", "seconds")


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable, *args, **kwargs):
    """Call ``fn`` and return ``(result, seconds)``, synchronising CUDA before and after.

    For code that is not a registered method; methods carry their own clock
    (``uk.runtime(model)``), which :func:`run_methods` uses.
    """
    _sync()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync()
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- method specs


def _label(name: str, hp: dict) -> str:
    return name if not hp else f"{name} ({', '.join(f'{k}={v}' for k, v in hp.items())})"


def method_specs(methods) -> dict:
    """``{label: (function, hyper-parameters)}`` from the accepted ways of naming methods:

    * a list of registered names: ``["finetune", "jit"]``;
    * a list of ``(name, hp)`` pairs: ``[("jit", {"sigma": 0.5, "lr": 3e-4})]``;
    * a dict ``{label: name | (name, hp) | callable(model, task)}``.
    """
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, dict):
        items = list(methods.items())
    elif isinstance(methods, Iterable):
        items = []
        for m in methods:
            if isinstance(m, str):
                items.append((m, m))
            elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) and isinstance(m[1], dict):
                items.append((_label(*m), m))
            else:
                raise TypeError(
                    f"Cannot read the method {m!r}: give a registered name or a (name, "
                    f"hyper-parameters) pair."
                )
    else:
        raise TypeError("methods must be a list of names or (name, hp) pairs, or a dict {label: spec}.")
    out = {}
    for label, spec in items:
        if isinstance(spec, str):
            out[label] = (get_method(spec), {})
        elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
            out[label] = (get_method(spec[0]), dict(spec[1]))
        elif callable(spec):
            out[label] = (spec, {})
        else:
            raise TypeError(
                f"Cannot read the method {label!r}: {spec!r}. Give a registered name, a (name, "
                f"hyper-parameters) pair, or a function(model, task)."
            )
    if not out:
        raise ValueError("No method to run: give at least one.")
    return out


# ----------------------------------------------------------------------------- one task


def run_methods(
    methods,
    model,
    task: Task,
    extra_models: dict | None = None,
    mia: bool = True,
    reference: str = "retrain",
    verbose: bool = True,
    seed: int | None = None,
):
    """Apply each method to ``model`` on ``task``; return ``(table, models)``.

    ``extra_models`` (e.g. ``{"original": model, "retrain": retrained}``) are evaluated alongside.
    The table has the metrics of :func:`unlearnkit.evaluate`, ``seconds`` (the registry's clock; for
    zoo models their training time), ``diverged`` and ``error`` (why it diverged). ``seed`` is passed to
    methods that take one (default: the active profile's).
    """
    specs = method_specs(methods)
    models = dict(extra_models or {})
    diverged = {}
    for label, (fn, hp) in specs.items():
        kw = dict(hp)
        if seed is not None and "seed" not in kw and hasattr(fn, "record"):  # every registered method
            kw["seed"] = seed
        try:
            models[label] = fn(model, task, **kw)
        except DivergedError as e:
            diverged[label] = str(e)
            if verbose:
                print(f"{label:>24s}: diverged ({e})")
            continue
        if verbose:
            info = getattr(models[label], "unlearn_info", None) or {}
            print(f"{label:>24s}: {info.get('seconds', float('nan')):8.2f}s")
    df = evaluate(models, task, mia=mia, reference=reference) if models else pd.DataFrame()
    for name, m in models.items():
        if getattr(m, "unlearn_info", None) is None and getattr(m, "zoo_info", None):
            df.loc[name, "seconds"] = m.zoo_info.get("train_seconds", float("nan"))
    df["diverged"] = False
    df["error"] = ""
    if diverged:  # rows of NaN metrics, whatever (if any) the others measured
        bad = pd.DataFrame({"diverged": True, "error": list(diverged.values())}, index=list(diverged))
        df = pd.concat([df, bad]) if len(df) else bad
    order = [k for k in list(extra_models or {}) + list(specs) if k in df.index]
    df = df.loc[order]
    df["diverged"] = df["diverged"].astype(bool)
    df.index.name = "method"
    return df, models


# ----------------------------------------------------------------------------- spread


@dataclass(frozen=True)
class SpreadRun:
    """One run of :func:`run_spread`, as its ``on_run`` hook sees it: the ``task``, the ``seed``,
    the ``forget`` item the task was built from and the run's ``models`` (``{label: model}``,
    with ``original`` and ``retrain``)."""

    task: Task
    seed: int
    forget: object
    models: dict


@dataclass
class Spread:
    """One comparison repeated over seeds and forget classes.

    ``runs``: one row per method × seed × forget (columns ``method``, ``seed``, ``forget``, every
    metric, ``diverged``). ``reference``: the name of the gold-standard row (``"retrain"``).
    """

    runs: pd.DataFrame
    reference: str = "retrain"

    @property
    def methods(self) -> list:
        return list(dict.fromkeys(self.runs["method"]))

    def summary(self, metrics: Iterable[str] = KEY_METRICS, stat: str = "mean") -> pd.DataFrame:
        """Per method: ``<metric> mean`` and ``<metric> std`` (or ``median``, ``min``, ``max`` with
        ``stat="median"``), over the runs that did not diverge, plus ``runs`` and ``diverged`` counts."""
        metrics = [m for m in metrics if m in self.runs.columns]
        ok = self.runs[~self.runs["diverged"]]
        g = ok[["method"] + metrics].astype({m: float for m in metrics}).groupby("method", sort=False)
        if stat == "mean":
            parts = {f"{m} mean": g[m].mean() for m in metrics}
            parts.update({f"{m} std": g[m].std(ddof=1) for m in metrics})
        elif stat == "median":
            parts = {f"{m} median": g[m].median() for m in metrics}
            parts.update({f"{m} min": g[m].min() for m in metrics})
            parts.update({f"{m} max": g[m].max() for m in metrics})
        else:
            raise ValueError("stat must be 'mean' or 'median'.")
        out = pd.DataFrame(parts).reindex(self.methods)
        out["runs"] = self.runs.groupby("method", sort=False).size().reindex(self.methods)
        out["diverged"] = self.runs.groupby("method", sort=False)["diverged"].sum().reindex(self.methods)
        cols = [c for m in metrics for c in out.columns if c.startswith(m + " ")]
        return out[cols + ["runs", "diverged"]]

    def table(
        self, metrics: Iterable[str] = KEY_METRICS, digits: int = 1, names: dict | None = None
    ) -> pd.DataFrame:
        """Display table: ``mean ± std`` per metric, "diverged" where every run diverged and a note
        ``(k/n diverged)`` where some did."""
        metrics = [m for m in metrics if m in self.runs.columns]
        s = self.summary(metrics)
        rows = {}
        for method, r in s.iterrows():
            row = {}
            for m in metrics:
                mu, sd = r[f"{m} mean"], r[f"{m} std"]
                if r["diverged"] == r["runs"]:
                    row[m] = "diverged"
                elif isinstance(mu, float) and math.isnan(mu):
                    row[m] = "–"
                elif math.isnan(sd):  # one run: no spread to show
                    row[m] = f"{mu:.{digits}f}"
                else:
                    row[m] = f"{mu:.{digits}f} ± {sd:.{digits}f}"
            row["runs"] = (
                int(r["runs"]) if not r["diverged"] else f"{int(r['runs'])} ({int(r['diverged'])} diverged)"
            )
            rows[method] = row
        out = pd.DataFrame(rows).T
        out.index.name = "method"
        return out.rename(columns=names or {})

    def diffs(self, metric: str) -> dict:
        """Per method, one value per run that did not diverge (in run order): its ``metric`` minus
        the reference's (retrain's) in the same seed and forget set; an empty array for a method
        whose every run diverged."""
        ref = self.runs[self.runs["method"] == self.reference].set_index(["seed", "forget"])[metric]
        ok = self.runs[~self.runs["diverged"].astype(bool)]
        base = np.array([ref.get((s, f), np.nan) for s, f in zip(ok["seed"], ok["forget"])], dtype=float)
        d = ok[metric].to_numpy(float) - base
        return {m: d[(ok["method"] == m).to_numpy()] for m in self.methods}

    def gap(self, metric: str) -> pd.Series:
        """Mean |metric − retrain's metric| per method, matched on seed and forget set."""
        d = self.diffs(metric)
        return pd.Series({m: np.nanmean(np.abs(v)) if len(v) else np.nan for m, v in d.items()}, dtype=float)

    def per(self, metric: str, by: str = "forget") -> pd.DataFrame:
        """Mean of ``metric`` per method (rows) and forget class or seed (columns)."""
        return self.runs.pivot_table(
            index="method", columns=by, values=metric, aggfunc="mean", sort=False
        ).reindex(self.methods)


def _runs(seeds: list, forget: list, paired: bool):
    """The ``(item, seed)`` of every run: each seed with one item (``paired``) or with every item.
    The runs a dry run's trimmed lists left out (:class:`unlearnkit.profiles.Few`) count in the
    planned cost (:mod:`unlearnkit.budget`): their work, their retrained models, and for a left-out
    seed its original (the items of one seed share it)."""
    from . import budget

    def factor(v) -> float:
        return getattr(v, "planned", len(v)) / max(1, len(v))

    if paired:
        with budget.loop(factor(seeds)):
            yield from zip(list.__iter__(forget), list.__iter__(seeds))
        return
    with budget.loop(factor(forget), shared=("original",)):
        for item in list.__iter__(forget):
            with budget.loop(factor(seeds)):
                for seed in list.__iter__(seeds):
                    yield item, seed


def run_spread(
    methods,
    make_task: Callable,
    train: dict,
    *,
    seeds: Iterable[int] = (0, 1, 2),
    forget: Iterable = (None,),
    mia: bool = True,
    reference: str = "retrain",
    extra: Iterable[str] = ("original", "retrain"),
    verbose: bool = False,
    on_run: Callable | None = None,
    paired: bool = False,
) -> Spread:
    """Repeat one comparison over ``seeds`` × ``forget`` and return a :class:`Spread`.

    ``paired=True`` runs each seed with one forget item instead (``zip(forget, seeds)``, both
    lists as long): as many runs as seeds, each its own seed and class, for a profile that cannot
    afford the product.

    ``make_task(forget_item, seed) -> Task`` builds each task (``forget`` lists forget classes, or
    ``(None,)`` for tasks without one, e.g. random forgetting). ``train`` holds the keyword
    arguments of :func:`unlearnkit.train_or_load` (model, epochs, lr, ...): the original and the
    retrain model of every seed and forget set come from the zoo (trained once, then cached).
    ``methods`` as in :func:`run_methods`; each gets ``seed`` where it takes one.
    ``on_run(run)`` sees each run as a :class:`SpreadRun` (its task, seed, forget item and models),
    e.g. to keep one run's models for a figure.
    """
    from .sweep.run import prepare

    # lists stay as given: a dry run's trimmed ones count the runs they left out (profiles.Few)
    seeds, forget = (v if isinstance(v, list) else list(v) for v in (seeds, forget))
    if not seeds or not forget:
        raise ValueError("run_spread needs at least one seed and one forget item.")
    if paired and len(seeds) != len(forget):
        raise ValueError(
            f"paired=True runs seed i with forget item i: give as many seeds ({len(seeds)}) as items "
            f"({len(forget)})."
        )
    rows, kept = [], []
    for item, seed in _runs(seeds, forget, paired):
        task = make_task(item, seed)
        original, retrained = prepare(task, train, seed)
        kept.append((item, seed, original, retrained))
        base = {"original": original, "retrain": retrained}
        df, models = run_methods(
            methods,
            original,
            task,
            {k: base[k] for k in extra},
            mia=mia,
            reference=reference,
            verbose=verbose,
            seed=seed,
        )
        if on_run is not None:
            on_run(SpreadRun(task, seed, item, models))
        df = df.reset_index()
        df.insert(1, "seed", seed)
        df.insert(2, "forget", item if item is not None else "-")
        rows.append(df)
    _settle_left_out(seeds, forget, paired, kept, make_task, train)
    return Spread(pd.concat(rows, ignore_index=True), reference=reference)


def _settle_left_out(seeds, forget, paired, kept, make_task, train) -> None:
    """In a dry run whose trimmed lists know the profile's whole lists (:class:`unlearnkit.profiles.Few`),
    the zoo keys of the left-out runs' originals and retrained models, so that a model another
    chapter of the same dry run trains or plans counts as reused, not trained
    (:func:`unlearnkit.budget.settle_left_out`)."""
    from . import budget
    from .profiles import Few
    from .zoo import train_or_load

    def full(v):
        return v.full if isinstance(v, Few) else list(v)

    all_seeds, all_items = full(seeds), full(forget)
    if not kept or not (isinstance(seeds, Few) or isinstance(forget, Few)) or None in (all_seeds, all_items):
        return
    runs = list(zip(all_items, all_seeds)) if paired else [(i, s) for i in all_items for s in all_seeds]
    done = [(i, s) for i, s, _, _ in kept]
    units = {w: float(getattr(m, "zoo_info", {}).get("planned_units", 0.0)) for w, m in
             (("original", kept[0][2]), ("retrain", kept[0][3]))}  # fmt: skip
    kw = {"verbose": False, **train}
    models = {}
    for item, seed in runs:
        if (item, seed) in done:
            continue
        task = make_task(item, seed)
        for which in ("original", "retrain"):
            models[train_or_load(task, which, **kw, seed=seed, key_only=True)] = units[which]
    budget.settle_left_out(models)


# ----------------------------------------------------------------------------- display


def format_table(df: pd.DataFrame, columns=None, digits: int = 1, names: dict | None = None) -> pd.DataFrame:
    """A display copy of a :func:`run_methods` table: rounded numbers, "diverged" in diverged rows."""
    cols = [c for c in (columns or df.columns) if c in df.columns and c not in ("diverged", "error")]
    out = df[cols].astype(object).copy()
    for c in cols:
        out[c] = [
            f"{v:.{digits}f}"
            if isinstance(v, (float, int, np.floating)) and not pd.isna(v)
            else ("–" if pd.isna(v) else v)
            for v in df[c]
        ]
    if "diverged" in df.columns:
        out.loc[df["diverged"].astype(bool), cols] = "diverged"
    return out.rename(columns=names or {})
