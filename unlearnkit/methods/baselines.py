"""The classic baselines every paper compares against.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

* ``retrain``: train a fresh model on D_r only: the gold standard (and the slowest).
* ``finetune``: keep training on D_r (catastrophic forgetting of D_f); SSD benchmark:
  5 epochs, lr 0.02.
* ``neggrad``: gradient *ascent* on D_f (optionally with a retain term, "NegGrad+").
* ``random_labels``: Amnesiac unlearning (Graves et al. 2021): D_f with random wrong
  labels mixed into D_r; the SSD benchmark: Adam, lr 1e-4, 3 epochs (our default).
* ``fisher_forgetting``: Golatkar et al. 2020: Gaussian noise with variance ∝ F_r^{-1}
  (the Fisher of the retain set), so weights the retain set does not need are scrambled.

All gradient steps run through :func:`unlearnkit.training.descend` (via ``fit``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import budget, validate
from ..fisher import diag_fisher
from ..models import rebuild
from ..training import batches, descend, fit, train_batch_size
from ._registry import register


@register("retrain", access="retain", paper="gold standard", color="#2ca02c")
def retrain(model, task, *, epochs: int = 10, seed: int, **fit_kwargs):
    """Train a freshly initialised twin of ``model`` on the retain set only."""
    fresh = rebuild(model)
    x, y = task.retain_set()
    fit_kwargs.setdefault("augment", task.augment)
    fit_kwargs.setdefault("progress", False)
    fit(fresh, x, y, epochs=epochs, seed=seed, desc="retrain", **fit_kwargs)
    return fresh


@register(
    "finetune",
    access="retain",
    paper="baseline (e.g. Golatkar et al. 2020)",
    color="#1f77b4",
    presets={"smoke": dict(epochs=2)},
)
def finetune(
    model, task, *, epochs: int = 5, lr: float = 0.02, batch_size: int = 128, seed: int, **fit_kwargs
):
    """Continue training on D_r alone (constant lr), so D_f is forgotten catastrophically."""
    x, y = task.retain_set()
    fit_kwargs.setdefault("schedule", "constant")
    fit_kwargs.setdefault("progress", False)
    fit_kwargs.setdefault("augment", task.augment)
    fit(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, desc="finetune", **fit_kwargs)
    return model


# One epoch over 16 instances (batch 64) is ONE ascent step, a no-op. The instance-wise paper's
# NegGrad ascends until the forget images are misclassified (capped); `neggrad` has no such stop,
# so the tasks without a retain term get a fixed budget of about 30 steps: on the smoke model
# (seed 0) 10 steps at lr 0.01 left 75 % of 16 instances correct, 30 steps none.
_ASCENT = {
    "instances": dict(epochs=30, lr=0.01),  # 16 images: 1 step per epoch
    "random": dict(epochs=10, lr=0.01),  # ~144 images: 3 steps per epoch
    "sub-class": dict(epochs=10, lr=0.01),
}  # ~145 images: 3 steps per epoch


@register(
    "neggrad",
    access="forget+retain",
    paper="baseline (Golatkar et al. 2020)",
    color="#ff7f0e",
    presets={
        "quick": {"full-class": dict(epochs=4, lr=0.01, retain_weight=1.0), **_ASCENT},
        # the instance-wise scripts' lr; on 16 instances 100 steps (Algorithm 3's MAXEP)
        "full": {
            "full-class": dict(lr=1e-3),
            "sub-class": dict(lr=1e-3),
            "random": dict(lr=1e-3),
            "instances": dict(lr=1e-3, epochs=100),
        },
    },
)
def neggrad(
    model,
    task,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 64,
    retain_weight: float = 0.0,
    momentum: float = 0.9,
    seed: int,
    max_steps: int | None = None,
):
    """Gradient ascent on D_f: minimise −CE(f(x_f), y_f) [+ retain_weight · CE on a D_r batch].

    Ascent is unbounded: a too-large ``lr`` sends the weights to infinity, which raises
    :class:`~unlearnkit.DivergedError` (a comparison records it as a diverged row).
    """
    validate.non_negative("retain_weight", retain_weight)
    xf, yf = task.forget_set()
    xr, yr = task.retain_set() if retain_weight > 0 else (None, None)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m, xb, yb):
        loss = -F.cross_entropy(m(xb), yb)
        if retain_weight > 0:
            j = torch.randint(0, len(xr), (len(xb),), generator=g).to(xr.device)
            loss = loss + retain_weight * F.cross_entropy(m(xr[j]), yr[j])
        return loss

    bs = train_batch_size(batch_size)  # at most 16 in a dry run
    descend(
        model,
        lambda e: batches(xf, yf, batch_size=bs, shuffle=True, generator=g),
        loss_fn,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        max_steps=max_steps,
        desc="neggrad",
        hint="lower lr or epochs (gradient ascent is unbounded)",
    )
    return model


@register(
    "random_labels",
    access="forget+retain",
    paper="Graves et al. 2021 (amnesiac)",
    color="#8c564b",
    presets={"smoke": dict(epochs=1)},
)
def random_labels(
    model,
    task,
    *,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 128,
    optimizer: str = "adam",
    seed: int,
    **fit_kwargs,
):
    """Amnesiac unlearning: relabel D_f with random *wrong* labels and train on D_r ∪ relabelled D_f.

    Defaults follow the SSD benchmark code that the JiT paper uses: Adam, lr 1e-4, 3 epochs,
    constant learning rate. (With SGD at 1e-4 the model barely moves; the opening chapter
    shows both.)
    """
    xf, yf = task.forget_set()
    xr, yr = task.retain_set()
    g = torch.Generator().manual_seed(seed)
    k = task.num_classes
    wrong = (yf + torch.randint(1, k, (len(yf),), generator=g).to(yf.device)) % k  # never the true label
    fit_kwargs.setdefault("schedule", "constant")
    fit_kwargs.setdefault("progress", False)
    fit_kwargs.setdefault("weight_decay", 0.0)
    fit(
        model,
        torch.cat([xr, xf]),
        torch.cat([yr, wrong]),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        optimizer=optimizer,
        seed=seed,
        desc="random labels",
        **fit_kwargs,
    )
    return model


def _fisher_variance(fisher, p, alpha, max_var, is_head):
    """Eq. 9 of Golatkar et al. with the benchmarks' clipping: α · min(1 / F, max_var), averaged over
    dim 1 of weight tensors (the input units, as the SSD benchmark does), ×10 for heads and biases."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=max_var / 10 if is_head else max_var)
    var = alpha * var
    if p.dim() > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
    return var


@register(
    "fisher_forgetting",
    access="retain",
    paper="Golatkar et al. 2020",
    color="#e377c2",
    presets={
        "quick": dict(alpha=1e-7, n_samples=500),
        "smoke": dict(alpha=1e-7, n_samples=100),
        "full": dict(alpha=1e-6, n_samples=10_000),
    },
)
def fisher_forgetting(
    model,
    task,
    *,
    alpha: float = 1e-6,
    max_var: float = 1e3,
    batch_size: int = 64,
    n_samples: int | None = None,
    seed: int,
):
    """Fisher forgetting (Golatkar, Achille, Soatto 2020, Eq. 9 with the diagonal Fisher).

    Adds Gaussian noise with variance ``alpha / F_r`` to every weight, F_r the *true*
    diagonal Fisher of the retain set: weights the retain set is insensitive to are
    scrambled, the others barely move. As in the SSD benchmark code, the variance is
    clipped at ``max_var`` (``max_var / 10`` for the classifier layer), averaged over dim 1 of
    each weight tensor (input units; for a conv kernel the kernel positions are kept), and the
    forgotten classes' output weights are set to zero with a tiny variance (class forgetting
    only). ``n_samples`` subsamples D_r to keep the Fisher affordable.
    """
    validate.positive("alpha", alpha)
    x, y = task.retain_set()
    if n_samples is not None and n_samples < len(x):
        idx = torch.randperm(len(x))[:n_samples].to(x.device)
        x, y = x[idx], y[idx]
    with budget.sampled(len(x), n_samples, model):  # a sample's planned size (unlearnkit.budget)
        fisher = diag_fisher(model, x, y, kind="true", batch_size=batch_size)
    k = task.num_classes
    forget = list(task.forget_classes) if task.kind in ("class", "classes") else []
    g = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n not in fisher:
                continue
            is_head = p.shape[0] == k and p.dim() <= 2
            var = _fisher_variance(fisher[n], p, alpha, max_var, is_head)
            mu = p.detach().clone()
            if is_head and forget:
                mu[forget] = 0.0
                var[forget] = 1e-4
            if is_head or p.dim() == 1:
                var = var * 10
            p.copy_(mu + var.sqrt() * torch.randn(p.shape, generator=g).to(p.device))
    return model
