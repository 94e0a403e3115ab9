"""Selective Synaptic Dampening (Foster, Schoepf, Brintrup, *Fast Machine Unlearning Without
Retraining Through Selective Synaptic Dampening*, AAAI 2024).

Explained in the chapter on the methods that came after the five papers
(``book/08_after_the_five.ipynb``), beside Fisher masking and Fisher forgetting: three uses of
the diagonal Fisher information.

``ssd`` (access ``forget+retain``: D_f and the training data D = D_r ∪ D_f) trains nothing. With
the importance of each parameter on a data set, []_D and []_f (the diagonal Fisher information:
squared gradients of the cross-entropy, averaged over mini-batches, as the authors' code computes
it), every parameter θ_i with

    []_{f,i} > α · []_{D,i}          (selection, α the selection weighting)

is multiplied by

    β_i = min(λ · []_{D,i} / []_{f,i}, 1)          (dampening, λ the dampening constant),

and every other parameter is left as it is. Parameters that matter much more for the forget
set than for the data as a whole are shrunk towards 0, in proportion to how much more. The
authors' ResNet-18 setting (α = 10, λ = 1) is the default and the ``full`` preset.
``n_samples`` subsamples D for its importance (all of D by default, as the authors do).
"""

from __future__ import annotations

import torch

from .. import validate
from ..fisher import diag_fisher
from ._registry import register, report


@register(
    "ssd",
    access="forget+retain",
    paper="Foster et al. 2024 (SSD)",
    tasks=("full-class", "sub-class", "random"),
    why="the paper evaluates full-class, sub-class and random forgetting",
    color="#9edae5",
    presets={
        "quick": dict(alpha=10.0, lam=1.0),
        "smoke": dict(alpha=10.0, lam=1.0, n_samples=300),
        "full": dict(alpha=10.0, lam=1.0),
    },
)
def ssd(
    model,
    task,
    *,
    alpha: float = 10.0,
    lam: float = 1.0,
    batch_size: int = 64,
    n_samples: int | None = None,
    seed: int,
):
    """Dampen the parameters far more important to D_f than to D (module docstring). Reports
    the share of parameters it selected."""
    validate.positive("alpha", alpha, "It is the selection weighting (10 for the authors' ResNet-18).")
    validate.positive("lam", lam, "It is the dampening constant (1 for the authors' ResNet-18).")
    imp_d, imp_f = importances(model, task, batch_size=batch_size, n_samples=n_samples, seed=seed)
    beta, pick = dampening(imp_d, imp_f, alpha, lam)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in beta:
                p.mul_(beta[n].to(p.dtype))
    selected, total = sum(int(v.sum()) for v in pick.values()), sum(v.numel() for v in pick.values())
    return report(model, selected_share=selected / max(total, 1))


def importances(model, task, *, batch_size: int = 64, n_samples: int | None = None, seed: int = 0):
    """``(imp_D, imp_f)``: SSD's importances, ``{name: tensor}``, the diagonal Fisher (squared
    mini-batch gradients of the cross-entropy) on D = D_r ∪ D_f and on D_f. ``n_samples``
    subsamples D (drawn with ``seed``)."""
    xf, yf = task.forget_set()
    xr, yr = task.retain_set()
    x, y = torch.cat([xr, xf]), torch.cat([yr, yf])  # D = D_r ∪ D_f
    if n_samples is not None and n_samples < len(x):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=g)[:n_samples].to(x.device)
        x, y = x[idx], y[idx]
    imp_d = diag_fisher(model, x, y, kind="batch", batch_size=batch_size)
    imp_f = diag_fisher(model, xf, yf, kind="batch", batch_size=batch_size)
    return imp_d, imp_f


def dampening(imp_d: dict, imp_f: dict, alpha: float, lam: float) -> tuple[dict, dict]:
    """``(beta, selected)`` per parameter: the selection []_f > α []_D and the factor
    β = min(λ []_D / []_f, 1) where selected, 1 elsewhere (the module docstring's rule)."""
    beta, pick = {}, {}
    for n, f in imp_f.items():
        d = imp_d[n]
        pick[n] = f > alpha * d
        beta[n] = torch.where(pick[n], (lam * d / f.clamp_min(1e-30)).clamp(max=1.0), torch.ones_like(f))
    return beta, pick
