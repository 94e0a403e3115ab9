"""The tables of a sweep: one spread per task, and the ranking by distance to retraining.

Part of :mod:`unlearnkit.sweep`; the showdown chapter (``book/09_showdown.ipynb``) explains it.
"""

from __future__ import annotations

import math

import pandas as pd

from ..results import SweepError, stale_message

TABLE_METRICS = (
    "train_retain",
    "train_forget",
    "test_retain",
    "test_forget",
    "MIA_entropy_%",
    "MIA_loss_AUC",
    "relearn_epochs",
    "seconds",
)


def spreads(results: pd.DataFrame) -> dict:
    """One :class:`~unlearnkit.Spread` per task of a results table (rows ordered as run).
    :class:`SweepError` if some rows were made by older code (see :mod:`unlearnkit.results`)."""
    from ..bench import Spread
    from ..quality import add_tug_of_war

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
        if "MIA_loss_AUC" in tab.columns:  # an AUC in [0, 1]: two more digits
            tab["MIA_loss_AUC"] = sp.table(["MIA_loss_AUC"], digits=digits + 1)["MIA_loss_AUC"]
        tab.insert(tab.columns.get_loc("runs"), "ToW", sp.table(["ToW"], digits=3)["ToW"])
        access = sp.runs.groupby("method", sort=False)["access"].first()
        tab.insert(0, "access", access.reindex(tab.index))
        secs = sp.runs.groupby("method", sort=False)["seconds"].mean()
        ratio = secs / secs.get("retrain", float("nan"))
        tab["time / retrain"] = [f"{v:.3f}" if not math.isnan(v) else "–" for v in ratio.reindex(tab.index)]
        gap = sum(sp.gap(m) for m in ("train_forget", "train_retain", "test_retain")) / 3
        tab["gap to retrain"] = [
            f"{v:.{digits}f}" if not math.isnan(v) else "diverged" for v in gap.reindex(tab.index)
        ]
        order = gap.reindex(tab.index).fillna(float("inf")).sort_values(kind="stable").index
        out[t] = tab.loc[order]
    return out
