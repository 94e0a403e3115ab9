"""Diagonal Fisher information and MAS importance.

Used by the mnemonic-code, Fisher-masking and instance-wise chapters, and by the
``fisher_forgetting`` baseline (opening chapter).

For a classifier p_θ(y|x) the diagonal of the Fisher information is

* empirical:  F_i = E_x [ (∂ log p_θ(y_x | x) / ∂θ_i)^2 ]  with the true label y_x,
* true:       F_i = E_x Σ_c p_θ(c | x) (∂ log p_θ(c | x) / ∂θ_i)^2,

both averaged over *per-sample* gradients (``torch.func.vmap`` of ``grad``; a plain
loop is kept as the reference). ``kind="batch"`` is the cheaper squared mini-batch
gradient some benchmarks use instead; it is not the Fisher and is named so.
The model is evaluated in eval mode (batch-norm uses its running statistics).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .data import batches
from .training import check_inputs

FISHER_KINDS = ("empirical", "true", "batch")


def _params(model):
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _zeros(model):
    return {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}


def diag_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, kind: str = "empirical",
                batch_size: int = 64, method: str = "auto") -> dict:
    """Diagonal Fisher information of ``model`` over ``(x, y)``, averaged over samples.

    Returns ``{parameter name: tensor shaped like the parameter}``.
    ``method`` is ``"vmap"`` (per-sample gradients with torch.func), ``"loop"`` (one
    backward per sample; the reference the tests compare against) or ``"auto"``: vmap on
    CUDA and for the true Fisher (one vmapped pass per class), the loop for the empirical
    Fisher on a CPU, where ``tests/bench_fisher.py`` measured the two within 20% of each
    other for the book's small models (vmap 2x faster for the true Fisher).
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"Unknown Fisher kind {kind!r}: choose one of {FISHER_KINDS}.")
    if len(x) == 0:
        raise ValueError("The Fisher information needs at least one sample; the set given is empty.")
    if kind in ("empirical", "batch") and y is None:
        raise ValueError(f"The {kind} Fisher needs labels y; use kind='true' for unlabelled inputs.")
    check_inputs(model, x)
    dev = next(model.parameters()).device
    if method == "auto":
        method = "vmap" if (dev.type == "cuda" or kind == "true") else "loop"
    was = model.training
    model.eval()
    params = _params(model)
    buffers = {n: b for n, b in model.named_buffers()}
    acc = _zeros(model)
    n_total = len(x)
    y = y if y is not None else torch.zeros(len(x), dtype=torch.long, device=x.device)
    try:
        if kind == "batch":
            for xb, yb in batches(x, y, batch_size=batch_size):
                model.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb.to(dev)), yb.to(dev)).backward()
                for n, p in model.named_parameters():
                    if p.requires_grad and p.grad is not None:
                        acc[n] += p.grad.detach() ** 2 * len(xb)
            model.zero_grad(set_to_none=True)
        elif method == "loop":
            for i in range(len(x)):
                xi = x[i:i + 1].to(dev)
                logp = F.log_softmax(model(xi), 1)[0]
                targets = [(int(y[i]), 1.0)] if kind == "empirical" else \
                    [(c, float(logp[c].detach().exp())) for c in range(logp.numel())]
                for c, w in targets:
                    gs = torch.autograd.grad(logp[c], [p for p in model.parameters() if p.requires_grad],
                                             retain_graph=True)
                    for (n, _), g in zip(params.items(), gs):
                        acc[n] += w * g ** 2
        elif method == "vmap":
            def logp_fn(p, xi, c):
                out = functional_call(model, (p, buffers), (xi[None],))
                return -F.cross_entropy(out, c[None])     # log p(c | x)
            g_fn = vmap(grad(logp_fn), in_dims=(None, 0, 0))
            for xb, yb in batches(x, y, batch_size=batch_size):
                xb, yb = xb.to(dev), yb.to(dev)
                if kind == "empirical":
                    gs = g_fn(params, xb, yb)
                    for n in acc:
                        acc[n] += (gs[n] ** 2).sum(0)
                else:
                    with torch.no_grad():
                        prob = F.softmax(model(xb), 1)
                    for c in range(prob.shape[1]):
                        gs = g_fn(params, xb, torch.full_like(yb, c))
                        for n in acc:
                            w = prob[:, c].reshape(-1, *([1] * (gs[n].dim() - 1)))
                            acc[n] += (w * gs[n] ** 2).sum(0)
        else:
            raise ValueError(f"Unknown method {method!r}: choose 'vmap' or 'loop'.")
    finally:
        model.train(was)
    return {n: a / n_total for n, a in acc.items()}


def mas_importance(model: nn.Module, x: torch.Tensor, batch_size: int = 128) -> dict:
    """Memory-Aware-Synapses importance: |∂ mean_x ‖f(x)‖_2 / ∂θ| (Aljundi et al. 2018).

    The gradient of the mean L2 norm of the outputs over ``x`` with respect to each
    parameter, in absolute value (not normalised; callers normalise as their paper says).
    """
    if len(x) == 0:
        raise ValueError("MAS importance needs at least one sample; the set given is empty.")
    check_inputs(model, x)
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    for (xb,) in batches(x, batch_size=batch_size):
        (model(xb.to(dev)).norm(dim=1).sum() / len(x)).backward()
    imp = {n: p.grad.detach().abs().clone() if p.grad is not None else torch.zeros_like(p)
           for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    model.train(was)
    return imp


def flatten(d: dict) -> torch.Tensor:
    """Concatenate a ``{name: tensor}`` dict into one vector (for comparing Fisher estimates)."""
    return torch.cat([v.flatten() for v in d.values()])
