"""The opening chapter's experiments: the baselines' spread beside the papers, NegGrad step by
step, how far the weights moved, and relearn time.

Explained in ``book/01_unlearning_problem.ipynb``. The chapter keeps the code of its figures; the
tables and the numbers it glues into its prose are computed here.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import budget
from ..bench import Spread
from ..metrics import accuracy, per_sample_loss, relearn_time, weight_distance
from ..tables import DASH
from ..training import batches, descend

NBSP = "\u00a0"  # keeps "mean ± std" on one line in a table cell


def join_runs(spread: Spread, extra: Spread, order) -> Spread:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5): one :class:`Spread` with the
    rows of ``spread`` and the rows of ``extra`` whose method ``spread`` lacks (the deliberate
    divergence, run separately), the methods sorted by ``order`` (rows of one method keep their
    run order)."""
    add = extra.runs[~extra.runs["method"].isin(spread.methods)]
    runs = pd.concat([spread.runs, add], ignore_index=True)
    runs = runs.sort_values("method", key=lambda s: s.map(list(order).index), kind="stable")
    return Spread(runs.reset_index(drop=True))


def divergence_step(spread: Spread) -> float:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5): the largest step at which a
    diverged run of ``spread`` stopped (read from its error, "... at step N ..."); NaN when no
    run diverged."""
    errors = spread.runs.loc[spread.runs["diverged"].astype(bool), "error"].astype(str)
    steps = [int(m.group(1)) for m in map(re.compile(r"at step (\d+)").search, errors) if m]
    return float(max(steps)) if steps else float("nan")


def summary_values(summary: pd.DataFrame, short: dict, metrics: dict, prefix: str = "c1") -> dict:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5): the glue values
    ``{prefix}_{short}_{metric}`` (mean) and ``..._sd`` (standard deviation) of
    ``summary = spread.summary(...)`` for every method in ``short`` (``{method: short name}``) and
    metric in ``metrics`` (``{metric: short name}``). A method whose runs all diverged has no
    mean and gets no values; with a single run the standard deviation is 0."""
    out = {}
    for name, key in short.items():
        if name not in summary.index:
            continue
        for metric, mk in metrics.items():
            mean, std = float(summary.loc[name, f"{metric} mean"]), float(summary.loc[name, f"{metric} std"])
            if np.isnan(mean):
                continue
            out[f"{prefix}_{key}_{mk}"] = mean
            out[f"{prefix}_{key}_{mk}_sd"] = 0.0 if np.isnan(std) else std
    return out


def headline_table(spread: Spread, groups: dict, paper: dict, sources: dict, digits: int = 1) -> pd.DataFrame:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5): our mean ± std per method
    beside the papers' numbers, as printed in the papers.

    ``groups``: ``{metric: label}``; ``paper``: ``{method: {source: tuple}}``, the tuple holding
    the paper's values in the order of ``groups``; ``sources``: ``{metric: (source, ...)}``, the
    papers shown for that metric, joined by " / " in one cell ("–" where a paper has no value).
    A last column pair holds the wall time of each method."""
    ours = spread.table([*groups, "seconds"], digits=digits)
    ours = ours.map(lambda v: v.replace(" ± ", f"{NBSP}±{NBSP}") if isinstance(v, str) else v)
    cols = {}
    for i, (metric, group) in enumerate(groups.items()):
        papers = tuple(sources[metric])
        cols[(group, "ours")] = ours[metric]
        cells = []
        for name in ours.index:
            vals = [paper.get(name, {}).get(p, (None,) * len(groups))[i] for p in papers]
            cells.append(f"{NBSP}/{NBSP}".join(DASH if v is None else str(v) for v in vals))
        cols[(group, f"paper ({' / '.join(papers)})")] = cells
    cols[("wall time (s)", "ours")] = ours["seconds"]
    return pd.DataFrame(cols, index=ours.index).rename_axis(None)


def verdict_table(verdicts: dict) -> pd.DataFrame:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5): one row per computed word
    (``{(method, compared with, metric): word}`` from ``uk.verdict`` or ``uk.against_paper``)
    with the means behind it and the rule that chose it."""
    rows = []
    for (a, b, metric), w in verdicts.items():
        d = w.details
        rows.append(
            {
                "method": a,
                "compared with": b,
                "metric": metric,
                "word": str(w),
                "ours": round(d.get("mean_a", d.get("mean", np.nan)), 2),
                "theirs": round(d.get("mean_b", d.get("paper", np.nan)), 2),
                "rule": d.get("rule", f"|mean − paper| ≤ {d.get('tol', '')}"),
            }
        )
    return pd.DataFrame(rows).set_index(["method", "compared with"])


def relative_distance(model: torch.nn.Module, original: torch.nn.Module) -> float:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.1): ‖θ − θ_o‖ / ‖θ_o‖ over all
    parameters at once (the per-layer distances of ``uk.weight_distance`` combined)."""
    d = weight_distance(model, original)
    norm = torch.cat([p.detach().flatten() for p in original.parameters()]).norm().item()
    return float(np.sqrt((d["distance"] ** 2).sum())) / norm


def layer_distances(models: dict, original: torch.nn.Module) -> pd.DataFrame:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.4): ‖θ^(l) − θ_o^(l)‖ /
    ‖θ_o^(l)‖ for every weight matrix or kernel ``l`` of ``original`` (rows, in order) and every
    model of ``models`` except the one named ``"original"`` (columns)."""
    layers = [n for n, p in original.named_parameters() if p.dim() > 1]
    return pd.DataFrame(
        {
            name: weight_distance(m, original, relative=True).set_index("layer").loc[layers, "distance"]
            for name, m in models.items()
            if name != "original"
        }
    )


def neggrad_trace(model, task, *, epochs: int, lr: float, seed: int, batch_size: int = 64) -> pd.DataFrame:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.2): gradient ascent on the
    forget set, step by step, on a copy of ``model`` (``model`` itself is not changed).

    Each step is a batch of ``batch_size`` forget samples (shuffled from ``seed``); returns the
    test-forget and test-retain accuracy (%) before the first step (row 0) and after every step."""
    from ..models import clone

    xf, yf = task.forget_set()
    xtf, ytf = task.test_forget()
    xtr, ytr = task.test_retain()
    net = clone(model)
    trace = []

    def record(m):
        trace.append({"test_forget": accuracy(m, xtf, ytf), "test_retain": accuracy(m, xtr, ytr)})
        return False  # never stop early: the whole path is wanted

    record(net)
    g = torch.Generator().manual_seed(seed)
    with budget.kind("unlearn"):  # NegGrad, traced: its cost is an unlearning method's
        descend(
            net,
            lambda e: batches(xf, yf, batch_size=batch_size, shuffle=True, generator=g),
            lambda m, xb, yb: -F.cross_entropy(m(xb), yb),  # ascent on the cross-entropy
            epochs=epochs,
            lr=lr,
            stop=record,
        )
    return pd.DataFrame(trace).rename_axis("step")


def relearn_targets(model, task) -> tuple[float, float]:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.5): the original's accuracy (%)
    and mean loss on the forget set, the targets of UNSIR's and Fisher masking's relearn time."""
    xf, yf = task.forget_set()
    return accuracy(model, xf, yf), per_sample_loss(model, xf, yf).mean().item()


def relearn_times(models: dict, task, targets, *, seed: int, unsir: dict, mask: dict):
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.5): relearn time of every
    model except ``"original"`` in both definitions, ``uk.relearn_time`` with ``unsir`` and
    ``mask`` as its settings and ``targets = (accuracy, loss)`` from :func:`relearn_targets`.

    Returns a DataFrame (columns ``RT_unsir``, ``RT_mask``, one row per model) and the curves
    ``{model: (unsir curve, mask curve)}``."""
    target_acc, target_loss = targets
    relearn, curves = {}, {}
    for name, m in models.items():
        if name == "original":
            continue
        cu, cm = [], []
        ru = relearn_time(m, task, target_acc, definition="unsir", curve=cu, seed=seed, **unsir)
        rm = relearn_time(m, task, target_loss, definition="mask", curve=cm, seed=seed, **mask)
        relearn[name], curves[name] = {"RT_unsir": ru, "RT_mask": rm}, (cu, cm)
    return pd.DataFrame(relearn).T, curves


def epochs_cell(value, max_epochs: int) -> str:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 4.6): a relearn time as the
    table shows it, ``">max_epochs"`` when the model never got there."""
    return f">{max_epochs}" if value > max_epochs else str(int(value))


def relearn_beside_paper(relearn: pd.DataFrame, paper: dict, max_unsir: int, max_mask: int) -> pd.DataFrame:
    """Explained in ``book/01_unlearning_problem.ipynb`` (Section 5.5): our relearn times in both
    definitions beside UNSIR's (``paper``: ``{method: printed value}``, "–" where it has none)."""
    return pd.DataFrame(
        {
            "RT UNSIR (epochs), ours": [epochs_cell(v, max_unsir) for v in relearn.RT_unsir],
            "RT UNSIR, paper: UNSIR T1": [paper.get(n, DASH) for n in relearn.index],
            "RT mask (epochs), ours": [epochs_cell(v, max_mask) for v in relearn.RT_mask],
        },
        index=relearn.index,
    )
