"""The JiT chapter's own experiments: the 2-D toy's grid and how far a boundary moved, the 1-D
toy, the σ × η sweep and its rule, the benchmark's methods and its table beside the paper, and
the small measurements of the later sections (FGSM crossings, batch size, batch norm).

Explained in ``book/06_jit_geometry.ipynb``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import methods as _methods
from ..data import Dataset
from ..models import clone
from ..tables import beside_paper, pm
from ..training import DivergedError, accuracy, predict
from ..zoo import train_or_load

# the benchmark's JiT rows: the chosen setting, the paper's setting, Algorithm 1 (batch 1)
JIT, JIT_PAPER, JIT_ONE = "JiT", "JiT, paper's σ η", "JiT, batch 1"


class ToyGrid:
    """A square grid over a 2-D toy and the questions the chapter asks of it.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 2): ``grid`` holds ``n × n`` points on
    ``[lim[0], lim[1]]²``; ``near`` marks the grid points within ``r`` of a training point of
    ``x`` (the region the data covers); :meth:`ball` the grid points in ``B_r(x_i)``;
    :meth:`moved` the share of grid points where two models predict different classes."""

    def __init__(self, x: torch.Tensor, lim, n: int, r: float):
        g1 = np.linspace(lim[0], lim[1], n, dtype=np.float32)
        grid = torch.from_numpy(np.stack([a.ravel() for a in np.meshgrid(g1, g1)], 1))
        self.grid, self.x, self.r = grid.to(x.device), x, r
        self.near = torch.cdist(self.grid, x).min(1).values <= r

    def ball(self, i: int) -> torch.Tensor:
        """The grid points in ``B_r(x_i)`` (a boolean mask)."""
        return torch.cdist(self.grid, self.x[i : i + 1]).flatten() <= self.r

    def moved(self, a, b, where: torch.Tensor | None = None) -> float:
        """% of the grid points in ``where`` (default: :attr:`near`) at which models ``a`` and ``b``
        predict different classes."""
        where = self.near if where is None else where
        pa, pb = predict(a, self.grid).argmax(1), predict(b, self.grid).argmax(1)
        return 100.0 * (pa != pb)[where].float().mean().item()


def p_label(model, x: torch.Tensor, y: torch.Tensor, i: int) -> float:
    """The model's probability for the own label of point ``i``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 2)."""
    return torch.softmax(predict(model, x[i : i + 1]), 1)[0, y[i]].item()


def line_dataset(n: int, gap: float, std: float, seed: int = 0) -> Dataset:
    """The 1-D toy: two Gaussians of standard deviation ``std`` at ``∓gap``, ``n`` points each for
    class 0 and class 1, train set then test set from one generator seeded with ``seed`` (the same
    data for every profile and seed of the chapter).

    Explained in ``book/06_jit_geometry.ipynb`` (Section 3)."""
    g = torch.Generator().manual_seed(seed)

    def draw():
        xs = torch.cat(
            [torch.randn(n, 1, generator=g) * std - gap, torch.randn(n, 1, generator=g) * std + gap]
        )
        return xs, torch.cat([torch.zeros(n), torch.ones(n)]).long()

    train = draw()
    test = draw()
    return Dataset("line", *train, *test, classes=["0", "1"])


def train_kwargs(model: str, width, *, epochs: int, lr: float, batch_size: int) -> dict:
    """The keyword arguments of ``uk.train_or_load`` for the chapter's image models (one-cycle
    schedule; ``width`` is the width multiplier, ``None`` for the model's own).

    Explained in ``book/06_jit_geometry.ipynb`` (Section 4)."""
    return dict(
        model=model,
        model_kwargs={} if width is None else {"width_mult": width},
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        schedule="onecycle",
        progress=False,
    )


def wilcoxon_p(a, b) -> float:
    """The p-value of the paired two-sided Wilcoxon signed-rank test of ``a`` against ``b``; NaN
    when it cannot be computed (e.g. all pairs equal).

    Explained in ``book/06_jit_geometry.ipynb`` (Section 4)."""
    try:
        return float(stats.wilcoxon(a, b).pvalue)
    except ValueError:
        return float("nan")


def forget_acc(model, task, which: str) -> float:
    """Accuracy on the forget set as the authors measure it: ``which="test_forget"``, the forgotten
    class's test images; ``"train_forget"``, the forgotten training samples.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 5)."""
    if which not in ("test_forget", "train_forget"):
        raise ValueError(f"which is 'test_forget' or 'train_forget', got {which!r}.")
    xs, ys = task.forget_set() if which == "train_forget" else task.test_forget()
    return accuracy(model, xs, ys)


def jit_sweep(make_task, items, seed: int, train: dict, sigmas, lrs, which: str, **jit_kw) -> pd.DataFrame:
    """JiT at every ``(σ, η)`` of the grid on every forget item of one seed: one row per item and
    setting with ``D_r`` (retained test accuracy), ``D_f`` (:func:`forget_acc`), the retrained
    model's ``ref_D_r`` and ``gap`` = |D_f − the retrained model's D_f| (a diverged run counts as
    the worst case: ``D_r`` 0, ``D_f`` NaN, ``gap`` 100). ``train`` holds the keyword arguments of
    ``uk.train_or_load``; ``jit_kw`` go to ``uk.methods.jit``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 5, choosing σ and η)."""
    rows = []
    for item in items:
        task = make_task(item, seed)
        kw = dict(seed=seed, verbose=False, **train)
        orig = train_or_load(task, "original", **kw)
        rt = train_or_load(task, "retrain", **kw)
        ref = forget_acc(rt, task, which)
        ref_r = accuracy(rt, *task.test_retain())
        for s in sigmas:
            for lr in lrs:
                try:
                    m = _methods.jit(orig, task, sigma=s, lr=lr, seed=seed, **jit_kw)
                    d_r = accuracy(m, *task.test_retain())
                    d_f = forget_acc(m, task, which)
                except DivergedError:
                    d_r, d_f = 0.0, np.nan
                rows.append(
                    dict(
                        forget=item,
                        sigma=s,
                        lr=lr,
                        D_r=d_r,
                        D_f=d_f,
                        ref_D_r=ref_r,
                        gap=100.0 if np.isnan(d_f) else abs(d_f - ref),
                    )
                )
    return pd.DataFrame(rows)


def choose(grid: pd.DataFrame, tol: float):
    """The chapter's rule for σ and η: among the settings whose ``gap`` is within ``tol`` for every
    forget item, the one with the best worst-case ``D_r``; if none qualifies, the one with the
    smallest worst gap. Returns ``(dict(sigma=, lr=), rule satisfied, per-setting worst_D_r and
    worst_gap)``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 5, choosing σ and η)."""
    worst = grid.groupby(["sigma", "lr"]).agg(worst_D_r=("D_r", "min"), worst_gap=("gap", "max"))
    fine = worst[worst["worst_gap"] <= tol]
    best = fine["worst_D_r"].idxmax() if len(fine) else worst["worst_gap"].idxmin()
    return dict(sigma=float(best[0]), lr=float(best[1])), bool(len(fine)), worst


def benchmark_methods(
    pick: dict,
    paper_pick: dict,
    jit_kw: dict,
    *,
    finetune: dict,
    amnesiac: dict,
    boundary: dict,
    batch_one: bool,
) -> dict:
    """The benchmark's methods for ``uk.run_spread``: fine-tuning, amnesiac, boundary shrinking,
    JiT at ``pick``, JiT with batch 1 when ``batch_one``, and JiT at the paper's setting when it
    differs from ``pick``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6)."""
    ms = {
        "finetune": ("finetune", finetune),
        "amnesiac": ("random_labels", amnesiac),
        "boundary shrink": ("boundary_shrink", boundary),
        JIT: ("jit", {**pick, **jit_kw}),
    }
    if batch_one:
        ms[JIT_ONE] = ("jit", {**pick, **jit_kw, "batch_size": 1})
    if pick != paper_pick:
        ms[JIT_PAPER] = ("jit", {**paper_pick, **jit_kw})
    return ms


def keep_first(store: dict, key, seed, item):
    """An ``on_run`` callback for ``uk.run_spread`` that keeps, under ``store[key]``, the task and
    the models of the run with this ``seed`` and forget ``item``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6)."""

    def on_run(run):
        if run.seed == seed and run.forget == item:
            store[key] = {"task": run.task, **run.models}

    return on_run


def versus(spread, which: str, paper: dict, same_as_paper: bool) -> pd.DataFrame:
    """Our D_r, D_f and MIA (mean ± std over the runs) beside the paper's, then our seconds and the
    number of runs. ``paper``: ``{method: ((D_r mean, std), (D_f mean, std), (MIA mean, std))}``;
    the paper's JiT row stands beside ours at the paper's setting (``JIT`` itself when
    ``same_as_paper``, else ``JIT_PAPER``); the other JiT rows have no paper number.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6)."""
    cols = {"test_retain": "D_r acc", which: "D_f acc", "MIA_entropy_%": "MIA %"}
    have = {c: label for c, label in cols.items() if c in spread.runs.columns}
    table = {m: {c: p[k] for k, c in enumerate(cols)} for m, p in paper.items()}
    jit_row = JIT if same_as_paper else JIT_PAPER
    names = {m: ("JiT" if m == jit_row else "") for m in spread.methods if m.startswith("JiT")}
    out = beside_paper(spread, have, {"paper": table}, names=names)
    for label in cols.values():
        if (label, "ours") not in out.columns:
            out[(label, "ours")] = "–"
            out[(label, "paper")] = "–"
    ours = spread.table(["seconds"], digits=1)
    out[("seconds", "ours")] = ours["seconds"]
    out[("runs", "")] = ours["runs"]
    order = [(label, who) for label in cols.values() for who in ("paper", "ours")]
    return out[order + [("seconds", "ours"), ("runs", "")]]


def summary_value(summary: pd.DataFrame, method: str, metric: str, stat: str = "mean") -> float:
    """``metric``'s ``stat`` (``"mean"`` or ``"std"``) for ``method`` in a ``Spread.summary``; NaN
    when the method or the metric is missing.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6)."""
    if method not in summary.index or f"{metric} {stat}" not in summary.columns:
        return float("nan")
    return float(summary.loc[method, f"{metric} {stat}"])


def row_values(summary: pd.DataFrame, key: str, which: str, prefix: str = "c6") -> dict:
    """The glue values of one benchmark table: for every method (``"JiT, paper's σ η"`` becomes
    ``JiT_paper``, ``"JiT, batch 1"`` ``JiT_b1``, spaces underscores) and metric (``dr``: D_r,
    ``df``: D_f as ``which``, ``mia``, ``sec``), ``{prefix}_{key}_{method}_{metric}`` the mean and
    ``..._sd`` the std over the runs (0 with a single run: no spread).

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6)."""
    out = {}
    for method in summary.index:
        m = method.replace(", paper's σ η", "_paper").replace(", batch 1", "_b1").replace(" ", "_")
        runs = summary.loc[method, "runs"] - summary.loc[method, "diverged"]
        for metric, short in (
            ("test_retain", "dr"),
            (which, "df"),
            ("MIA_entropy_%", "mia"),
            ("seconds", "sec"),
        ):
            sd = summary_value(summary, method, metric, "std")
            out[f"{prefix}_{key}_{m}_{short}"] = summary_value(summary, method, metric)
            out[f"{prefix}_{key}_{m}_{short}_sd"] = 0.0 if runs == 1 and np.isnan(sd) else sd
    return out


def crossed(model, task, bound: float) -> float:
    """% of the forget samples whose one-step FGSM neighbour (``bound``) lands in another class:
    the samples for which boundary shrinking's "nearest false label" is not the true label.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 6, boundary shrinking's FGSM bound)."""
    xf, yf = task.forget_set()
    hits = _methods.nearest_false_labels(model, xf, yf, bound=bound) != yf
    return 100.0 * hits.float().mean().item()


def batch_row(summary: pd.DataFrame, runs: pd.DataFrame, method: str) -> dict:
    """One row of the batch-size table: D_r, the worst run's D_r, D_f and seconds of ``method``.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 7)."""

    def cell(metric, digits=1):
        return pm(
            summary_value(summary, method, metric), summary_value(summary, method, metric, "std"), digits
        )

    worst = runs[runs["method"] == method]["test_retain"].min()
    return {
        "D_r acc": cell("test_retain"),
        "worst D_r acc": f"{worst:.1f}",
        "D_f acc": cell("test_forget"),
        "seconds": cell("seconds", 2),
    }


def first_sample_loss(
    model, batch: torch.Tensor, train: bool, sigma: float, n_samples: int, generator
) -> float:
    """Eq. 1 of the paper (``uk.methods.jit_loss``) for the first sample of ``batch``, with the
    model in training (``train=True``, batch statistics) or eval mode: with batch statistics it
    depends on the other samples of the batch.

    Explained in ``book/06_jit_geometry.ipynb`` (Section 8)."""
    m = clone(model).train(train)
    return _methods.jit_loss(m, batch, sigma, n_samples, generator=generator, reduction="none")[0].item()


def out_bias(model) -> torch.Tensor:
    """The bias of the model's last linear layer (the output layer).

    Explained in ``book/06_jit_geometry.ipynb`` (Exercise 1)."""
    return [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)][-1].bias


def nearer_word(dist_a: float, dist_b: float) -> str:
    """How model A's distance to the retrained model compares with model B's, as the words that
    go between "A is ..." and "B": ``"closer to the retrained model than"`` when ``dist_a <
    dist_b``, ``"further from the retrained model than"`` when it is larger, ``"as far from the
    retrained model as"`` when they are equal (distances: shares of grid points that disagree).

    Explained in ``book/06_jit_geometry.ipynb`` (Section 2, Figure 2)."""
    if dist_a < dist_b:
        return "closer to the retrained model than"
    if dist_a > dist_b:
        return "further from the retrained model than"
    return "as far from the retrained model as"
