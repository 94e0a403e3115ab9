"""Run many methods on one task, time each, and return one pandas table.

Used by the opening chapter and the side-by-side chapter; ``python -m unlearnkit``
runs it from the command line.
"""
from __future__ import annotations

import time
from typing import Callable

import pandas as pd
import torch

from .metrics import evaluate
from .tasks import Task


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable, *args, **kwargs):
    """Call ``fn`` and return ``(result, seconds)``, synchronising CUDA before and after."""
    _sync()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    _sync()
    return out, time.perf_counter() - t0


def run_methods(methods: dict, model, task: Task, extra_models: dict | None = None, mia: bool = True,
                reference: str = "retrain", verbose: bool = True):
    """Apply each ``name -> callable(model, task)`` to ``model`` on ``task``; return (table, models).

    ``extra_models`` (e.g. ``{"original": model, "retrain": retrained}``) are evaluated
    alongside. The table has the metrics of :func:`unlearnkit.evaluate` and a ``seconds``
    column with each call's wall time.
    """
    models = dict(extra_models or {})
    seconds = {}
    for name, fn in methods.items():
        out, s = timed(fn, model, task)
        models[name] = out
        seconds[name] = s
        if verbose:
            print(f"{name:>20s}: {s:8.2f}s")
    df = evaluate(models, task, mia=mia, reference=reference)
    for name, s in seconds.items():
        df.loc[name, "seconds"] = s
    for name, m in models.items():
        if name not in seconds and getattr(m, "zoo_info", None):
            df.loc[name, "seconds"] = m.zoo_info.get("train_seconds", float("nan"))
    return df, models


def results_table(df: pd.DataFrame, columns=None, digits: int = 2) -> pd.DataFrame:
    """A rounded copy of an evaluation table for display."""
    cols = columns or [c for c in df.columns]
    return df[cols].round(digits)
