"""Diagonal Fisher information and MAS importance.

Used by the mnemonic-code, Fisher-masking and instance-wise chapters, and by the
``fisher_forgetting`` baseline (opening chapter).

For a classifier p_θ(y|x) the diagonal of the Fisher information is

* empirical:  F_i = E_x [ (∂ log p_θ(y_x | x) / ∂θ_i)^2 ]  with the true label y_x,
* true:       F_i = E_x Σ_c p_θ(c | x) (∂ log p_θ(c | x) / ∂θ_i)^2,

both averaged over *per-sample* gradients (``torch.func.vmap`` of ``grad``; a plain
loop is kept as the reference). ``kind="batch"`` is the cheaper squared mini-batch
gradient some benchmarks use instead; it is not the Fisher and is named so.
The model is evaluated in eval mode (batch-norm uses its running statistics), in float32.
In a dry run (:mod:`unlearnkit.profiles`) only the first two samples are used.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from . import budget, profiles
from .training import batches, check_inputs

FISHER_KINDS = ("empirical", "true", "batch")
FISHER_METHODS = ("auto", "vmap", "loop")


def _trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _batch_fisher(model, x, y, batch_size, dev):
    """Σ over mini-batches of len(batch) · (∂ mean CE / ∂θ)²: the squared mini-batch gradient."""
    acc = {n: torch.zeros_like(p) for n, p in _trainable(model)}
    for xb, yb in batches(x, y, batch_size=batch_size):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb.to(dev)), yb.to(dev)).backward()
        for n, p in _trainable(model):
            if p.grad is not None:
                acc[n] += p.grad.detach() ** 2 * len(xb)
    model.zero_grad(set_to_none=True)
    return acc


def _targets(logp, yi, kind):
    """(class, weight) pairs whose squared log-likelihood gradients make up one sample's Fisher."""
    if kind == "empirical":
        return [(int(yi), 1.0)]
    return [(c, float(logp[c].detach().exp())) for c in range(logp.numel())]


def _loop_fisher(model, x, y, kind, dev):
    """The reference: one backward pass per sample (and per class for the true Fisher)."""
    named = _trainable(model)
    acc = {n: torch.zeros_like(p) for n, p in named}
    for i in range(len(x)):
        logp = F.log_softmax(model(x[i : i + 1].to(dev)), 1)[0]
        for c, w in _targets(logp, y[i], kind):
            gs = torch.autograd.grad(logp[c], [p for _, p in named], retain_graph=True)
            for (n, _), g in zip(named, gs):
                acc[n] += w * g**2
    return acc


def _vmap_fisher(model, x, y, kind, batch_size, dev):
    """Per-sample gradients with ``torch.func``: one vmapped pass per batch (per class for 'true')."""
    params = {n: p.detach() for n, p in _trainable(model)}
    buffers = dict(model.named_buffers())

    def logp_fn(p, xi, c):
        return -F.cross_entropy(functional_call(model, (p, buffers), (xi[None],)), c[None])

    g_fn = vmap(grad(logp_fn), in_dims=(None, 0, 0))
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for xb, yb in batches(x, y, batch_size=batch_size):
        xb, yb = xb.to(dev), yb.to(dev)
        if kind == "empirical":
            for n, g in g_fn(params, xb, yb).items():
                acc[n] += (g**2).sum(0)
            continue
        with torch.no_grad():
            prob = F.softmax(model(xb), 1)
        for c in range(prob.shape[1]):
            for n, g in g_fn(params, xb, torch.full_like(yb, c)).items():
                acc[n] += (prob[:, c].reshape(-1, *([1] * (g.dim() - 1))) * g**2).sum(0)
    return acc


def _check_fisher_args(x, y, kind, method):
    if kind not in FISHER_KINDS:
        raise ValueError(f"Unknown Fisher kind {kind!r}: choose one of {FISHER_KINDS}.")
    if method not in FISHER_METHODS:
        raise ValueError(f"Unknown method {method!r}: choose one of {FISHER_METHODS}.")
    if len(x) == 0:
        raise ValueError("The Fisher information needs at least one sample; the set given is empty.")
    if kind in ("empirical", "batch") and y is None:
        raise ValueError(f"The {kind} Fisher needs labels y; use kind='true' for unlabelled inputs.")


def diag_fisher(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    kind: str = "empirical",
    batch_size: int = 64,
    method: str = "auto",
) -> dict:
    """Diagonal Fisher information of ``model`` over ``(x, y)``, averaged over samples.

    Returns ``{parameter name: tensor shaped like the parameter}``. ``method``: ``"vmap"``
    (per-sample gradients with torch.func), ``"loop"`` (one backward per sample; the reference
    the tests compare against) or ``"auto"`` (vmap: 2 to 12 times faster than the loop on a
    2-core CPU, more on a GPU; ``tests/bench_fisher.py`` measures both).
    """
    _check_fisher_args(x, y, kind, method)
    check_inputs(model, x)
    n = profiles.active().cap(len(x))
    with budget.loop(len(x) / max(1, n)):  # a dry run's two samples count as all of them
        return _fisher_of(model, x[:n], y, n, kind, method, batch_size)


def _fisher_of(model, x, y, n, kind, method, batch_size):
    x = x[:n]
    y = y[:n] if y is not None else torch.zeros(n, dtype=torch.long, device=x.device)
    dev = next(model.parameters()).device
    if method == "auto":
        method = "vmap"
    was = model.training
    model.eval()
    try:
        if kind == "batch":
            acc = _batch_fisher(model, x, y, batch_size, dev)
        elif method == "loop":
            acc = _loop_fisher(model, x, y, kind, dev)
        else:
            acc = _vmap_fisher(model, x, y, kind, batch_size, dev)
    finally:
        model.train(was)
    return {k: a / n for k, a in acc.items()}


MAS_METHODS = ("auto", "vmap", "loop")


def _output_norm(out, squared):
    """‖out‖₂ per row (or its square)."""
    return out.pow(2).sum(-1) if squared else out.norm(dim=-1)


def _mas_batch_mean(model, x, batch_size, squared, dev):
    """|∂ mean_n ‖f(x_n)‖ / ∂θ|: one gradient of the mean over all of ``x``, then its absolute value."""
    model.zero_grad(set_to_none=True)
    for (xb,) in batches(x, batch_size=batch_size):
        out = model(xb.to(dev)).float()
        (_output_norm(out, squared).sum() / len(x)).backward()
    imp = {
        n: p.grad.detach().abs().clone() if p.grad is not None else torch.zeros_like(p)
        for n, p in _trainable(model)
    }
    model.zero_grad(set_to_none=True)
    return imp


def _mas_loop(model, x, squared, dev):
    """Σ_n |∂ ‖f(x_n)‖ / ∂θ|, one backward pass per sample (the reference)."""
    named = _trainable(model)
    acc = {n: torch.zeros_like(p) for n, p in named}
    for i in range(len(x)):
        norm = _output_norm(model(x[i : i + 1].to(dev)).float()[0], squared)
        gs = torch.autograd.grad(norm, [p for _, p in named], allow_unused=True)
        for (n, _), g in zip(named, gs):
            if g is not None:
                acc[n] += g.abs()
    return acc


def _mas_vmap(model, x, squared, chunk, dev):
    """Σ_n |∂ ‖f(x_n)‖ / ∂θ| with per-sample gradients from ``torch.func``, ``chunk`` samples at once."""
    params = {n: p.detach() for n, p in _trainable(model)}
    buffers = dict(model.named_buffers())

    def norm_fn(p, xi):
        return _output_norm(functional_call(model, (p, buffers), (xi[None],)).float()[0], squared)

    g_fn = vmap(grad(norm_fn), in_dims=(None, 0))
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for (xb,) in batches(x, batch_size=chunk):
        for n, g in g_fn(params, xb.to(dev)).items():
            acc[n] += g.abs().sum(0)
    return acc


def mas_importance(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 128,
    squared: bool = False,
    *,
    per_sample: bool = True,
    method: str = "auto",
    chunk: int = 16,
) -> dict:
    """Memory-Aware-Synapses importance (Aljundi et al. 2018) of every trainable parameter on ``x``.

    * ``per_sample=True`` (default, Eq. 2 of Cha et al. 2024 as written):
      Ω_i = (1/N) Σ_n |∂ ‖f(x_n)‖₂ / ∂θ_i|, the mean over samples of absolute per-sample gradients;
    * ``per_sample=False`` (the authors' scripts): Ω_i = |∂ ((1/N) Σ_n ‖f(x_n)‖₂) / ∂θ_i|, the
      absolute value of the gradient of the mean. Per-sample gradients of opposite signs cancel
      here and add up in the per-sample form, so the per-sample form is never smaller.

    ``squared=True`` differentiates the squared norm ‖f(x)‖²₂, as Eq. 2 is printed; the authors'
    scripts (and the default) use the norm itself. The result is not normalised
    (:func:`mas_weights` normalises as Algorithm 2 does). The model is evaluated in eval mode
    (batch norm uses its running statistics, so samples do not interact), in float32.

    Per-sample gradients: ``method="vmap"`` (``torch.func``, ``chunk`` samples at once: memory
    grows as ``chunk`` × the number of parameters), ``"loop"`` (one backward pass per sample, the
    reference) or ``"auto"`` (vmap). ``batch_size``: the batches of the batch-mean form. In a
    dry run (:mod:`unlearnkit.profiles`) only the first two samples are used.
    """
    if len(x) == 0:
        raise ValueError("MAS importance needs at least one sample; the set given is empty.")
    if method not in MAS_METHODS:
        raise ValueError(f"Unknown method {method!r}: choose one of {MAS_METHODS}.")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}.")
    check_inputs(model, x)
    n = profiles.active().cap(len(x))
    with budget.loop(len(x) / max(1, n)):  # a dry run's two samples count as all of them
        return _mas_of(model, x[:n], per_sample, batch_size, squared, method, chunk)


def _mas_of(model, x, per_sample, batch_size, squared, method, chunk):
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        if not per_sample:
            return _mas_batch_mean(model, x, batch_size, squared, dev)
        if method == "loop":
            acc = _mas_loop(model, x, squared, dev)
        else:
            acc = _mas_vmap(model, x, squared, chunk, dev)
        return {n: a / len(x) for n, a in acc.items()}
    finally:
        model.train(was)


def mas_weights(importance: dict) -> dict:
    """The penalty weights of Algorithm 2 (Cha et al. 2024): per tensor, min–max normalise the
    importance Ω to [0, 1], then return Ω̄ = 1 − Ω.

    Weights that matter most for the forget set get Ω̄ = 0 (free to move); the least important
    get Ω̄ = 1 (held in place by the penalty Σ Ω̄ (θ − θ̃)² of Eq. 7). A tensor whose importance
    is constant (e.g. all zero: no gradient reached it) has nothing to single out and is held
    in place entirely (Ω̄ = 1).
    """
    if not isinstance(importance, dict) or not importance:
        raise ValueError("mas_weights needs a non-empty dict {parameter name: importance tensor}.")
    out = {}
    for n, v in importance.items():
        if not torch.is_tensor(v):
            raise TypeError(f"The importance of {n!r} is a {type(v).__name__}, not a tensor.")
        if not torch.isfinite(v).all():
            raise ValueError(f"The importance of {n!r} has NaN or infinite entries.")
        lo, hi = v.min(), v.max()
        span = hi - lo
        omega = (v - lo) / span if span > 0 else torch.zeros_like(v)
        out[n] = 1.0 - omega
    return out


def flatten(d: dict) -> torch.Tensor:
    """Concatenate a ``{name: tensor}`` dict into one vector (for comparing Fisher estimates)."""
    return torch.cat([v.flatten() for v in d.values()])
