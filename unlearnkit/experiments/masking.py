"""The Fisher-masking chapter's experiments: Proposition 1 on linear regression, the per-epoch
curves of the masking methods, the paper's Tables 1, 2, 3 and 5 beside ours.

Explained in ``book/05_fisher_masking.ipynb``. The chapter keeps the code of its figures; the
tables and the numbers it glues into its prose are computed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import theory
from ..metrics import accuracy, unlearn_score
from ..models import clone
from ..tables import DASH, pm_of

# feature group: (scale in D_f, scale in D_r) of the linear problem
GROUP_SCALE = {"hub": (5.0, 5.0), "semi": (2.5, 1.0), "specific": (3.0, 0.1), "other": (1.0, 1.0)}
GROUPS = ("hub", "semi", "specific", "other")


# ----------------------------------------------------------------------------- Proposition 1


def shared_problem(
    seed: int,
    *,
    n: int,
    d: int,
    hub: int,
    semi: int,
    specific: int,
    scales: dict = GROUP_SCALE,
    forget_share: float = 0.1,
    noise: float = 0.1,
):
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 1): a linear-regression problem
    whose ``d`` features fall into groups, ``hub`` features large on every sample, ``semi``
    features large on D_f and with large true weights, ``specific`` features large on D_f only
    (where the forget set's targets use different weights), the rest ``other``; ``scales`` gives
    each group's (D_f, D_r) scale. The first ``forget_share`` of the ``n`` samples are D_f.

    Returns ``(X, y, forget, group)``: inputs ``(n, d)``, targets, the forget mask and each
    feature's group name."""
    g = np.random.default_rng(seed)
    forget = np.arange(n) < round(forget_share * n)
    n_other = d - hub - semi - specific
    group = np.array(["hub"] * hub + ["semi"] * semi + ["other"] * n_other + ["specific"] * specific)
    s_f, s_r = (np.array([scales[k][i] for k in group]) for i in (0, 1))
    X = g.normal(size=(n, d)) * np.where(forget[:, None], s_f, s_r)
    w_true = g.normal(size=d)
    w_true[group == "semi"] = 10.0 * g.choice([-1.0, 1.0], size=semi)
    w_forget = w_true + np.where(group == "specific", g.normal(scale=2.0, size=d), 0.0)
    y = np.where(forget, X @ w_forget, X @ w_true) + noise * g.normal(size=n)
    return X, y, forget, group


def masked_models(X, y, forget, k: int, seed: int, rules: dict):
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 1): ``(w*, w*_r, masks)``: the least
    squares weights on D and on D_r, and per rule (``{label: rule of theory.mask_by}``) the mask of
    the ``k`` coordinates it zeroes in ``w*``."""
    w_all = theory.solve(X, y)
    w_r = theory.solve(X[~forget], y[~forget])
    masks = {label: theory.mask_by(rule, X, forget, k, seed=seed, w=w_all) for label, rule in rules.items()}
    return w_all, w_r, masks


def linear_sweep(X, y, forget, rules: dict, seed: int) -> pd.DataFrame:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 1): for every mask size k = 0..d and
    every rule, the exact KL between w*_r and the masked w*, the proof's intermediate step and
    the bound of Eq. 2; one row per (rule, ratio R = k / d)."""
    d = X.shape[1]
    rows = []
    for k in range(d + 1):
        w_all, w_r, masks = masked_models(X, y, forget, k, seed, rules)
        for label, m in masks.items():
            w_hat = theory.masked(w_all, m)
            rows.append(
                dict(
                    rule=label,
                    R=k / d,
                    KL=theory.kl(X, w_r, w_hat),
                    step=theory.proof_step(X, w_r, w_hat),
                    bound=theory.bound(X, y, forget, m),
                )
            )
    return pd.DataFrame(rows)


def at(lin: pd.DataFrame, rule: str, R: float) -> pd.Series:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 1): the row of :func:`linear_sweep`
    for ``rule`` at ratio ``R``."""
    return lin[(lin.rule == rule) & np.isclose(lin.R, R)].iloc[0]


def linear_draws(seeds, rules: dict, k: int, groups=GROUPS, **problem) -> pd.DataFrame:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 1): one :func:`shared_problem` per
    seed (``problem``: its keyword arguments); per draw the KL of the unmasked model (rule "no
    mask") and of each rule's model with ``k`` coordinates masked, and for the rules the share
    (%) of each feature group among the masked coordinates."""
    draws = []
    for s, seed in enumerate(seeds):
        X, y, forget, group = shared_problem(seed, **problem)
        w, w_r, masks = masked_models(X, y, forget, k, seed, rules)
        draws.append(dict(draw=s, rule="no mask", KL=theory.kl(X, w_r, w)))
        for label, m in masks.items():
            draws.append(
                dict(
                    draw=s,
                    rule=label,
                    KL=theory.kl(X, w_r, theory.masked(w, m)),
                    **{f"% {gr}": 100 * (group[m] == gr).mean() for gr in groups},
                )
            )
    return pd.DataFrame(draws)


# ----------------------------------------------------------------------------- curves and tables


def curve(model, task) -> pd.DataFrame:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 2): test accuracy on the retained
    (``remain``) and forgotten (``forget``) classes and the unlearn score after every fine-tuning
    epoch of a masking method run with ``keep_epochs=True`` (epoch 0: before fine-tuning)."""
    net, out = clone(model), []
    for e, st in enumerate(model.unlearn_info["epoch_states"]):
        net.load_state_dict(st)
        r, f = accuracy(net, *task.test_retain()), accuracy(net, *task.test_forget())
        out.append(dict(epoch=e, remain=r, forget=f, score=unlearn_score(r, f)))
    return pd.DataFrame(out)


def curve_points(curves: pd.DataFrame, keys) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 3): from the per-epoch curves of
    every run (one run per value of ``keys``), the rows before fine-tuning, at the epoch of the
    best unlearn score, and at the last epoch, each indexed by ``keys``."""
    keys = list(keys)
    before = curves[curves.epoch == 0].set_index(keys)
    best = curves.loc[curves.groupby(keys)["score"].idxmax()].set_index(keys)
    final = curves[curves.epoch == curves.groupby(keys).epoch.transform("max")].set_index(keys)
    return before, best, final


def mean_of(src: pd.DataFrame, label: str, col: str) -> float:
    """Explained in ``book/05_fisher_masking.ipynb``: the mean of ``col`` over the runs of method
    ``label`` in a table of :func:`curve_points`."""
    return float(src.loc[label][col].mean())


def std_of(src: pd.DataFrame, label: str, col: str) -> float:
    """Explained in ``book/05_fisher_masking.ipynb``: the standard deviation of ``col`` over the
    runs of ``label`` (0 with one run)."""
    v = src.loc[label][col]
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def by_method(src: pd.DataFrame, col: str, methods) -> dict:
    """Explained in ``book/05_fisher_masking.ipynb``: ``{method: values of col over its runs}``."""
    return {label: src.loc[label][col].values for label in methods}


def _cell(v):
    if isinstance(v, float) and np.isnan(v):
        return DASH
    return f"{v:.1f}" if isinstance(v, float) else v


def table1(cols, sources: dict, paper: pd.DataFrame, methods, retrain: dict, paper_suffix: str = ""):
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 3): the paper's Table 1 beside ours.

    ``cols``: ``[(column, label)]``; ``sources``: ``{our column label: table of curve_points}``;
    ``paper``: the paper's table (rows ``"Retrain"`` and ``methods``, columns ``column +
    paper_suffix``); ``retrain``: the retrained model's values over the runs per column (it is
    not fine-tuned, so every source shows the same). Ours: mean ± std over the runs."""
    rows = {label: {} for label in ["Retrain"] + list(methods)}
    for label, row in rows.items():
        for c, name in cols:
            row[(name, "paper")] = paper.loc[label, c + paper_suffix]
            for col, src in sources.items():
                if label == "Retrain":
                    v = retrain.get(c, [])
                else:
                    v = src.loc[label]["epoch" if c == "epochs" else c]
                row[(name, col)] = pm_of(v)
    return pd.DataFrame(rows).T.map(_cell)


def stability(curves: pd.DataFrame, keys) -> pd.DataFrame:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 4): per run (one per value of
    ``keys``) the mean absolute change from one fine-tuning epoch to the next of the remain and
    forget accuracy and of the unlearn score (the paper's Table 2)."""

    def one(c):
        c = c.sort_values("epoch")
        return pd.Series({m: c[m].diff().abs().iloc[1:].mean() for m in ("remain", "forget", "score")})

    return curves.groupby(list(keys)).apply(one, include_groups=False)


def stability_table(stab: pd.DataFrame, paper: dict, methods) -> pd.DataFrame:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 4): Table 2, the paper's mean change
    per epoch (``{method: (remain, forget, score)}``) beside ours (mean ± std over the runs)."""
    t2 = {}
    for label in methods:
        s = stab.loc[label]
        t2[label] = {
            (f"Δ {m}", w): (paper[label][i] if w == "paper" else pm_of(s[m]))
            for i, m in enumerate(("remain", "forget", "score"))
            for w in ("paper", "ours")
        }
    return pd.DataFrame(t2).T


def dead_layers(model) -> int:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 5): the number of batch-norm layers
    whose scale and shift are all zero (ReLU(0) = 0, and no gradient flows back through them)."""
    return sum(
        int((bn.weight == 0).all() and (bn.bias == 0).all())
        for bn in model.modules()
        if isinstance(bn, torch.nn.BatchNorm2d)
    )


def poison_row(model, pdata, ptask) -> dict:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 5): clean test accuracy
    (``remain``), accuracy on the poisoned training images (``forget``), the unlearn score and the
    backdoor's attack success (%) on the triggered test set."""
    from ..poison import attack_success

    r, f = accuracy(model, pdata.x_test, pdata.y_test), accuracy(model, *ptask.forget_set())
    return {
        "remain": r,
        "forget": f,
        "score": unlearn_score(r, f),
        "attack success": attack_success(model, pdata),
    }


def split_row(model, task) -> dict:
    """Explained in ``book/05_fisher_masking.ipynb`` (Section 6): test accuracy on the retained and
    the forgotten classes, and the unlearn score."""
    r, f = accuracy(model, *task.test_retain()), accuracy(model, *task.test_forget())
    return {"remain": r, "forget": f, "score": unlearn_score(r, f)}
