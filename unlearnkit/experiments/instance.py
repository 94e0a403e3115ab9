"""The instance-wise chapter's own experiments: PGD iterations for a radius, the callbacks that
keep what the later sections read from the benchmark runs, the paper's tables in the layout of
:func:`unlearnkit.beside_paper`, the layer outputs behind the CKA and t-SNE figures, and the
compact "ours (paper)" summary table.

Explained in ``book/04_instance_wise.ipynb``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..tables import beside_paper
from ..training import predict


def pgd_iters(eps: float, step: float, at_least: int) -> int:
    """PGD iterations for radius ``eps``: enough steps of length ``step`` to cross the whole
    ball (``2 eps``), and at least ``at_least``.

    Explained in ``book/04_instance_wise.ipynb`` (Section 2)."""
    return max(at_least, int(np.ceil(2 * eps / step - 1e-9)))


def smallest_reaching(hit: pd.Series, share: float) -> float:
    """The smallest radius (index of ``hit``) at which at least ``share`` % of the examples reach
    their target; the largest radius when none does.

    Explained in ``book/04_instance_wise.ipynb`` (Section 2, the rule for ε)."""
    ok = hit >= share
    return float(hit.index[ok].min()) if ok.any() else float(hit.index.max())


def record_runs(info: dict, keep: dict, keep_names, first: tuple):
    """An ``on_run`` callback for ``uk.run_spread``: stores each model's ``unlearn_info`` in
    ``info[(name, seed, k)]``, the forget images' predicted labels of the models in
    ``keep_names`` in ``keep[(name, seed, k)]``, and all models of the run ``first = (seed, k)``
    in ``keep["models"]``.

    Explained in ``book/04_instance_wise.ipynb`` (Section 4)."""

    def on_run(run):
        seed, k = run.seed, run.forget
        for name, m in run.models.items():
            info[(name, seed, k)] = getattr(m, "unlearn_info", None) or {}
            if name in keep_names:
                keep[(name, seed, k)] = predict(m, run.task.forget_set()[0]).argmax(1).cpu()
        if (seed, k) == tuple(first):
            keep["models"] = run.models

    return on_run


def record_relabelled(store: dict, labels_from: str = "CORRECT"):
    """An ``on_run`` callback for ``uk.run_spread``: ``store[(name, seed, k)]`` = % of the forget
    images each model predicts as its new label (the labels the run's ``labels_from`` model drew,
    the same for every variant of one run).

    Explained in ``book/04_instance_wise.ipynb`` (Section 6, relabel)."""

    def on_run(run):
        new = torch.as_tensor(run.models[labels_from].unlearn_info["new_labels"])
        xs = run.task.forget_set()[0]
        for name, m in run.models.items():
            hit = predict(m, xs).argmax(1).cpu() == new
            store[(name, run.seed, run.forget)] = 100 * hit.float().mean().item()

    return on_run


def beside_paper_by_k(spread, ks, paper: dict, parts: dict) -> pd.DataFrame:
    """Our mean ± std over the seeds beside the paper's number, per ``k`` (forget images) and
    method, through :func:`unlearnkit.beside_paper`. ``paper``: ``{method: {k: tuple}}`` with
    one number per column of ``parts`` (``{column of spread.runs: label}``), in that order.

    Explained in ``book/04_instance_wise.ipynb`` (Sections 4 to 6)."""
    table = {m: {k: dict(zip(parts, v)) for k, v in per_k.items()} for m, per_k in paper.items()}
    runs = spread.runs[spread.runs["forget"].isin(list(ks))]
    out = beside_paper(type(spread)(runs.reset_index(drop=True)), parts, {"paper": table}, by="forget")
    out.index.names = ["k", "method"]
    return out


def layer_outputs(model, x: torch.Tensor) -> list:
    """The outputs of every conv layer of ``model`` on ``x`` and the input of its final linear
    layer (the penultimate features), each flattened per image, on the CPU.

    Explained in ``book/04_instance_wise.ipynb`` (Section 7, t-SNE and CKA)."""
    outs, hooks = [], []
    convs = [mod for mod in model.modules() if isinstance(mod, torch.nn.Conv2d)]
    lin = [mod for mod in model.modules() if isinstance(mod, torch.nn.Linear)][-1]
    for mod in convs:
        hooks.append(mod.register_forward_hook(lambda _m, i, o: outs.append(o.flatten(1))))
    hooks.append(lin.register_forward_hook(lambda _m, i, o: outs.append(i[0].flatten(1))))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return [o.float().cpu() for o in outs]


def ours_paper(spread, ks, paper: dict, methods, col: str = "train_retain", j: int = 1) -> pd.DataFrame:
    """Per method (rows) and ``k`` (columns): our mean of ``col`` over the runs that did not
    diverge, then the paper's number (entry ``j`` of its tuple) in brackets; ``"–"`` where we
    have no run.

    Explained in ``book/04_instance_wise.ipynb`` (Section 8)."""
    runs = spread.runs[~spread.runs["diverged"].astype(bool)]
    out = {}
    for m in methods:
        for k in ks:
            mu = runs[(runs["method"] == m) & (runs["forget"] == k)][col].mean()
            p = paper.get(m, {}).get(k)
            out.setdefault(m, {})[k] = ("–" if math.isnan(mu) else f"{mu:.1f}") + (
                f" ({p[j]:.1f})" if p else ""
            )
    return pd.DataFrame(out).T
