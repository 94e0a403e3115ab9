"""The experiments of the UNSIR chapter (impair and repair), explained in
``book/03_unsir_impair_repair.ipynb``.

The chapter's settings per profile (:data:`CONFIGS`), the paper's numbers it sets its results
beside (Tables 1, 2 and 5–9 of Tarun et al.), and the code that runs the spreads, the sweeps and
the labelling-bug exercise and turns them into the chapter's tables. The chapter keeps only the
code of its figures.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from .. import metrics as _metrics
from .. import models as _models
from ..bench import run_spread
from ..methods import error_maximizing_noise, unsir
from ..tables import DASH, pm_of, std_of
from ..tasks import forget_classes
from ..training import accuracy, predict
from ..zoo import train_or_load

# the settings and the paper's numbers (re-exported: the chapter reads ``ex.CONFIGS``, ...)
from .unsir_settings import (  # noqa: F401
    CONFIGS,
    DIGITS,
    PAPER_MULTI,
    PAPER_T1,
    PAPER_T5,
    PAPER_T6,
    PAPER_T7,
    PAPER_T8,
    PAPER_T9,
    PAPER_UNSIR,
    TABLE1_SETS,
    trim_for_dry_run,
)

# ---------------------------------------------------------------------------------------------
# small measurements
# ---------------------------------------------------------------------------------------------


def accs(model, task) -> dict:
    """Test accuracy (%) of ``model`` on the task's retained classes (``A_Dr``) and forgotten
    classes (``A_Df``)."""
    return {"A_Dr": accuracy(model, *task.test_retain()), "A_Df": accuracy(model, *task.test_forget())}


def per_class_accuracy(model, data) -> list:
    """Test accuracy (%) of ``model`` on each class of ``data``, in class order."""
    xt, yt = data.x_test, data.y_test
    return [accuracy(model, xt[yt == c], yt[yt == c]) for c in range(data.num_classes)]


def z_norm(model, noise) -> float:
    """Mean per-image L2 norm of ``noise`` (pixel space) in the normalised space that the first
    layer of ``model`` (its :class:`~unlearnkit.models.Normalize`) hands on: the space in which
    UNSIR optimises and penalises its noise."""
    norm_layer = next(m for m in model.modules() if isinstance(m, _models.Normalize))
    with torch.no_grad():
        return float(norm_layer(noise).flatten(1).norm(dim=1).mean())


def noise_norm(model, classes, lam, *, batch_size, steps, lr, seed) -> float:
    """:func:`z_norm` of the error-maximising noise of the first of ``classes`` learned at
    penalty ``lam`` (Table 9's question: what λ does to the noise)."""
    noise = error_maximizing_noise(
        model, list(classes), batch_size=batch_size, steps=steps, lr=lr, lam=lam, seed=seed
    )
    return z_norm(model, noise[0])


def prediction_shares(model, task, num_classes: int) -> pd.Series:
    """Where the forgotten classes' test images go: the share (%) of them ``model`` predicts as
    each class."""
    x, _ = task.test_forget()
    p = predict(model, x).argmax(1).cpu()
    return pd.Series(np.bincount(p.numpy(), minlength=num_classes) / len(p) * 100)


def layer_distances(a, b) -> pd.Series:
    """Euclidean distance between the weight tensors (more than one dimension: no biases or
    batch-norm scales) of two models of one architecture, by parameter name, input to output
    (:func:`unlearnkit.weight_distance`)."""
    shapes = {n: p.dim() for n, p in a.named_parameters()}
    d = _metrics.weight_distance(a, b)
    d = d[[shapes[n] > 1 for n in d["layer"]]]
    return pd.Series(d["distance"].to_numpy(float), index=d["layer"].tolist())


def total_distance(a, b) -> float:
    """Euclidean distance between all the parameters of two models (Table 7):
    ``sqrt(sum of the squared per-tensor distances of`` :func:`unlearnkit.weight_distance` ``)``."""
    return float(np.sqrt((_metrics.weight_distance(a, b)["distance"].to_numpy(float) ** 2).sum()))


def mean_sd(name: str, values) -> dict:
    """``{name: mean, name_sd: standard deviation}`` of runs, for one glue call (the standard
    deviation is 0 for a single run)."""
    return {name: float(np.mean(values)), f"{name}_sd": std_of(values)}


def append_step(trace: list, task, stage: str, epoch: int, model) -> None:
    """Explained in ``book/03_unsir_impair_repair.ipynb``. A ``callback`` for UNSIR (bind
    ``trace`` and ``task`` with :func:`functools.partial`): appends ``{"step": "<stage> <epoch>",
    "A_Dr": ..., "A_Df": ...}`` (:func:`accs` of ``model`` on ``task``) to ``trace``."""
    trace.append({"step": f"{stage} {epoch}", **accs(model, task)})


def summary_mean(summary: pd.DataFrame, method: str, metric: str) -> float:
    """Explained in ``book/03_unsir_impair_repair.ipynb``. The mean of ``metric`` for ``method``
    in a spread's ``summary`` table (column ``"<metric> mean"``); NaN for a method the summary
    lacks."""
    return float(summary.loc[method, f"{metric} mean"]) if method in summary.index else float("nan")


def column_values(table: pd.DataFrame, column: str) -> np.ndarray:
    """Explained in ``book/03_unsir_impair_repair.ipynb``. The ``column`` of ``table`` as an array
    of floats, in the table's row order (the aligned runs of one method)."""
    return table[column].to_numpy(float)


def with_without(lo: str, hi: str, thing: str, *, than_without: bool = True) -> tuple:
    """Explained in ``book/03_unsir_impair_repair.ipynb``. The three ``words`` of a paired
    verdict between runs with ``thing`` and without it: ``"<lo> with <thing>[ than without it]"``,
    the same with ``hi``, and ``"not distinguishable with and without <thing>"``."""
    tail = " than without it" if than_without else ""
    return (
        f"{lo} with {thing}{tail}",
        f"{hi} with {thing}{tail}",
        f"not distinguishable with and without {thing}",
    )


def n_kept(share: float, n_min: int) -> int:
    """Explained in ``book/03_unsir_impair_repair.ipynb``. Images per class UNSIR keeps at a
    ``share`` of the smallest retained class (``n_min`` images): ``round(share * n_min)``, at
    least 1."""
    return max(1, round(share * n_min))


def pm_table(df: pd.DataFrame, by, cols) -> pd.DataFrame:
    """``mean ± std`` of ``cols`` over the rows of ``df``, grouped by ``by`` (groups in order of
    appearance)."""
    return df.groupby(by, sort=False)[cols].agg(pm_of)


# ---------------------------------------------------------------------------------------------
# relearn time, the spreads and their tables
# ---------------------------------------------------------------------------------------------


def rt_cell(values, cap: int) -> str:
    """Relearn times over runs as ``mean ± std``, led by ``≥`` when a run hit the budget of
    ``cap`` epochs (counted as ``cap + 1``); ``–`` without runs."""
    v = pd.Series(values, dtype=float).dropna()
    return DASH if v.empty else ("≥ " if (v > cap).any() else "") + pm_of(v)


def capped(values, cap: int) -> str:
    """``k/n``: how many of ``n`` runs did not relearn within ``cap`` epochs."""
    v = pd.Series(values, dtype=float).dropna()
    return DASH if v.empty else f"{int((v > cap).sum())}/{len(v)}"


def paper_number(v) -> str:
    """A number of the paper as its tables print it: ``–`` for none, ``>100`` for the relearn
    times stored as 101."""
    return DASH if v is None else (">100" if v == 101 else f"{v:g}")


class Runs:
    """Runs UNSIR and its baselines over seeds × forget sets (:func:`unlearnkit.run_spread`) and
    keeps, per run, what the chapter needs beyond the spread's table: the relearn time of every
    model (``rt``), UNSIR's info record (``info``), the first seed's models of each forget set
    (``kept``) and the test accuracy after impair and after repair of every UNSIR run of a
    single-class spread (``steps``)."""

    def __init__(self, relearn: dict):
        self.relearn = dict(relearn)
        self.rt, self.info, self.kept = {}, {}, {}
        self.steps, self._pending = [], []

    def keep_steps(self, variant: str):
        """A ``callback`` for UNSIR that keeps a copy of the model after each step."""
        return lambda stage, epoch, m: self._pending.append((variant, stage, copy.deepcopy(m)))

    def on_run(self, tag: str):
        """The ``on_run`` hook of :func:`unlearnkit.run_spread` for the spread ``tag``."""

        def hook(run):
            t, seed, item, models = run.task, run.seed, run.forget, run.models
            target = accuracy(models["original"], *t.forget_set())
            for name, m in models.items():
                if name != "original":
                    self.rt[(tag, seed, item, name)] = _metrics.relearn_time(
                        m, t, target, definition="unsir", seed=seed, **self.relearn
                    )
            if "unsir" in models:
                self.info[(tag, seed, item)] = models["unsir"].unlearn_info
            self.kept.setdefault((tag, item), (seed, models))
            for variant, stage, m in self._pending:
                if tag.startswith("single"):
                    self.steps.append(
                        {"variant": variant, "seed": seed, "class": item, "stage": stage, **accs(m, t)}
                    )
            self._pending.clear()

        return hook

    def spread(self, tag: str, methods, make_task, forget, train: dict, seeds, paired: bool = False):
        """The spread of ``methods`` over ``seeds`` × ``forget`` (``paired``: seed i with item i),
        with a column ``RT`` (relearn epochs; NaN for the original)."""
        sp = run_spread(
            methods,
            make_task,
            train,
            seeds=seeds,
            forget=forget,
            mia=False,
            on_run=self.on_run(tag),
            paired=paired,
        )
        r = sp.runs
        sp.runs["RT"] = [
            self.rt.get((tag, s, f, m), np.nan) for s, f, m in zip(r["seed"], r["forget"], r["method"])
        ]
        return sp

    def paths(self) -> pd.DataFrame:
        """One row per UNSIR run (variant, seed, class) with ``A_Dr``/``A_Df`` after ``impair``
        and after ``repair``."""
        p = pd.DataFrame(self.steps).pivot_table(
            index=["variant", "seed", "class"], columns="stage", values=["A_Dr", "A_Df"]
        )
        p.columns = [f"{k} {s}" for k, s in p.columns]
        return p.reset_index()


def set_tasks(data, sets: dict):
    """``make_task(item, seed)`` for :func:`unlearnkit.run_spread`: forget the classes
    ``sets[item]``."""
    return lambda item, seed: forget_classes(data, sets[item])


T1_METRICS = {"test_retain": "A_Dr", "test_forget": "A_Df", "RT": "RT"}


def table1(sp, arch: str, cap: int, digits: int = 1) -> pd.DataFrame:
    """One class forgotten (Tables 1 and 2): our ``A_Dr``, ``A_Df`` and relearn time (with the
    runs that did not relearn within ``cap``) beside the paper's ResNet-18 and AllCNN, and our
    wall time."""
    ours = sp.table(list(T1_METRICS) + ["seconds"], digits=digits)
    ok = sp.runs[~sp.runs["diverged"]]
    rts = {m: r["RT"].to_numpy(float) for m, r in ok.groupby("method")}
    ours["RT"] = [rt_cell(rts.get(r, []), cap) for r in ours.index]
    cols = {}
    for i, (m, label) in enumerate(T1_METRICS.items()):
        cols[(label, f"ours ({arch})")] = ours[m]
        for model in PAPER_T1:
            cols[(label, f"paper {model}")] = [
                paper_number(PAPER_T1[model].get(r, (None,) * 3)[i]) for r in ours.index
            ]
    cols[("RT", f"not relearned in {cap}")] = [capped(rts.get(r, []), cap) for r in ours.index]
    cols[("time (s)", f"ours ({arch})")] = ours["seconds"]
    return pd.DataFrame(cols, index=ours.index)


def multi_table(sp, arch: str, cap: int):
    """Several classes forgotten (Table 1): ``(table, mean, std)``; the table puts our ``A_Dr``,
    ``A_Df`` and relearn time per (number of classes, method) beside the paper's; ``mean`` and
    ``std`` are per (forget set, method) over the runs that did not diverge."""
    ok = sp.runs[~sp.runs["diverged"]]
    g = ok.groupby(["forget", "method"], sort=False)[["test_retain", "test_forget", "RT"]]
    mu, sd, cells = g.mean(), g.std(), g.agg(pm_of)
    rows = {}
    for k, m in mu.index:
        row = {
            (lab, f"ours ({arch})"): cells.loc[(k, m), c]
            for c, lab in [("test_retain", "A_Dr"), ("test_forget", "A_Df")]
        }
        for i, lab in enumerate(["A_Dr", "A_Df"]):
            for model in PAPER_MULTI:
                row[(lab, f"paper {model}")] = paper_number(PAPER_MULTI[model][k].get(m, (None, None))[i])
        runs_km = ok[(ok["forget"] == k) & (ok["method"] == m)]["RT"]
        row[("RT", f"ours ({arch})")] = rt_cell(runs_km, cap)
        row[("RT", f"not relearned in {cap}")] = capped(runs_km, cap)
        rows[(k, m)] = row
    return pd.DataFrame(rows).T.rename_axis(["# classes", "method"]), mu, sd


# ---------------------------------------------------------------------------------------------
# single UNSIR runs and the sweeps
# ---------------------------------------------------------------------------------------------


def run_unsir(model, task, settings: dict, **kw) -> dict:
    """UNSIR on ``task`` with ``settings`` changed by ``kw``: test accuracy after each step
    (``"A_Dr impair 1"``, ``"A_Df repair 1"``, ...) and the wall ``seconds``."""
    steps = {}
    cb = lambda stage, epoch, m: steps.setdefault(f"{stage} {epoch}", accs(m, task))  # noqa: E731
    m = unsir(model, task, callback=cb, **{**settings, **kw})
    out = {f"{k} {s}": v for s, a in steps.items() for k, v in a.items()}
    return {**out, "seconds": m.unlearn_info["seconds"]}


def lr_tables(grid: pd.DataFrame, impair_lr: float) -> pd.DataFrame:
    """Tables 5 (impair rate varied, repair 0.01) and 6 (repair rate varied, impair at
    ``impair_lr``): our accuracies after repair from the learning-rate ``grid`` beside the paper's
    (NaN where the paper has no such rate)."""
    rows = []
    for table, fixed, var, paper in [
        ("5", ("repair lr", 0.01), "impair lr", PAPER_T5),
        ("6", ("impair lr", impair_lr), "repair lr", PAPER_T6),
    ]:
        sub = grid[np.isclose(grid[fixed[0]], fixed[1])]
        for _, r in sub.iterrows():
            p = paper.get(r[var], (np.nan,) * 4)
            rows.append(
                {
                    "table": table,
                    "varied": var,
                    "lr": r[var],
                    "A_Dr ours": r["A_Dr repair 1"],
                    "A_Dr paper R18": p[0],
                    "A_Dr paper AllCNN": p[2],
                    "A_Df ours": r["A_Df repair 1"],
                    "A_Df paper R18": p[1],
                    "A_Df paper AllCNN": p[3],
                }
            )
    return pd.DataFrame(rows).set_index(["table", "varied", "lr"])


def repair_path(run: dict, repairs: int) -> pd.DataFrame:
    """``A_Dr`` and ``A_Df`` after impair and after each of ``repairs`` repair epochs, from a
    :func:`run_unsir` result (Figure 7's repeated repair)."""
    return pd.DataFrame(
        {
            k: [run[f"{k} impair 1"]] + [run[f"{k} repair {i}"] for i in range(1, repairs + 1)]
            for k in ["A_Dr", "A_Df"]
        },
        index=["impair"] + [f"repair {i}" for i in range(1, repairs + 1)],
    )


def sequential(model, data, requests, settings: dict):
    """Forget ``requests`` one after the other, each UNSIR call on the previous result:
    ``(per request A_Dr/A_Df, per-class test accuracy before and after each request)``."""
    seq, per_class = [], {"original": per_class_accuracy(model, data)}
    for i in range(len(requests)):
        t = forget_classes(data, requests[: i + 1])
        model = unsir(model, t, **settings)
        label = f"after forgetting {requests[i]}"
        per_class[label] = per_class_accuracy(model, data)
        seq.append({"request": label, **accs(model, t)})
    return pd.DataFrame(seq).set_index("request"), pd.DataFrame(per_class, index=range(data.num_classes)).T


def label_bug(data, sets: dict, seeds, train: dict, settings: dict) -> pd.DataFrame:
    """The authors' labelling bug: UNSIR on each class set of ``sets`` × ``seeds`` with each noise
    batch labelled with its own class and with every batch labelled 0. One row per run: class 0's
    test accuracy, the largest of the requested classes' and the mean of the other retained ones;
    each run's original comes from the model zoo, trained with ``train``."""
    rows = []
    for s in seeds:
        for k, cls in sets.items():
            t = forget_classes(data, cls)
            orig = train_or_load(t, "original", seed=s, **train)
            for name, kw in [("own labels", {}), ("all labelled 0", {"noise_label": 0})]:
                m = unsir(orig, t, **{**settings, "seed": s, **kw})
                pcs = per_class_accuracy(m, data)
                others = [pcs[c] for c in range(1, data.num_classes) if c not in cls]
                rows.append(
                    {
                        "labels": name,
                        "seed": s,
                        "classes": k,
                        "class 0": pcs[0],
                        "requested (largest)": max(pcs[c] for c in cls),
                        "other retained (mean)": float(np.mean(others)),
                    }
                )
    return pd.DataFrame(rows)
