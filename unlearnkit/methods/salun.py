"""SalUn: saliency-based unlearning (Fan, Liu, Zhang, Wong, Wei, Liu, *SalUn: Empowering Machine
Unlearning via Gradient-based Weight Saliency in Both Image Classification and Generation*,
ICLR 2024).

Explained in the chapter on the methods that came after the five papers
(``book/08_after_the_five.ipynb``), which also sets its mask beside Fisher masking's.

* **The saliency mask** (:func:`saliency_mask`): at the original weights θ₀, the gradient of the
  forget loss summed over D_f, g = ∇_θ Σ_{(x,y) ∈ D_f} CE(f_θ(x), y), and m = 1[|g| ≥ the
  ``ratio``-quantile from the top of |g| over *all* parameters] (one global threshold, every
  parameter tensor included, as in the authors' code).
* **Unlearning** (``salun``, access ``forget+retain``): random-label fine-tuning, in which each
  epoch takes a pass over D_f with labels drawn uniformly from all classes (drawn once, as the
  authors' random-label data set does; a draw may hit the true label) and then a pass over D_r
  with its true labels; both minimise cross-entropy, and only the salient weights learn: every
  gradient is multiplied by m before the optimiser step. As in the authors' code, weight decay
  is applied by the optimiser after the mask, so it still shrinks the weights the mask leaves
  alone; ``decay_masked_only=True`` masks it too.

The authors' README example for 10 % random forgetting on CIFAR-10 (10 epochs, SGD lr 0.013,
momentum 0.9, weight decay 5e-4, batch 256) with the mask of ratio 0.5 is the ``full`` preset.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate
from ..training import batches, descend, train_batch_size
from ._registry import register, report


def saliency(model, x, y, batch_size: int = 256) -> dict:
    """``{name: |∂ Σ CE(f(x), y) / ∂θ|}``: SalUn's weight saliency at the current weights, in eval
    mode (what :func:`saliency_mask` thresholds). The model is left in the mode it was in, with no
    gradient kept."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was = model.training
    model.eval()
    try:
        for xb, yb in batches(x, y, batch_size=batch_size):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb).float(), yb, reduction="sum").backward()
            for n, p in params.items():
                if p.grad is not None:
                    grads[n] += p.grad
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    return {n: g.abs() for n, g in grads.items()}


def saliency_mask(model, x, y, ratio: float, batch_size: int = 256) -> dict:
    """``{name: bool tensor}``: the weights whose |∂ Σ CE(f(x), y) / ∂θ| is among the top
    ``ratio`` share of all parameters (ties at the threshold included), at the current weights.
    The model is left in the mode it was in, with no gradient kept."""
    ratio = validate.probability("ratio", ratio, "It is the share of weights the mask keeps.")
    if ratio == 0:
        raise ValueError("ratio must be above 0: a mask of no weight would unlearn nothing.")
    scores = saliency(model, x, y, batch_size)
    flat = torch.cat([g.flatten() for g in scores.values()])
    k = max(1, int(round(ratio * flat.numel())))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    return {n: g >= threshold for n, g in scores.items()}


@register(
    "salun",
    access="forget+retain",
    paper="Fan et al. 2024 (SalUn)",
    tasks=("full-class", "random"),
    why="the paper evaluates class-wise and random-data forgetting",
    color="#aec7e8",
    presets={
        # digits: lr 0.02 left 17-44 % of classes 3 and 8 after 5 or 10 epochs, 0.05 forgot both
        "quick": dict(lr=0.05, epochs=5, ratio=0.5, batch_size=64),
        "smoke": dict(lr=0.01, epochs=2, ratio=0.5, batch_size=32),
        "full": dict(lr=0.013, epochs=10, ratio=0.5, batch_size=256),
    },
)
def salun(
    model,
    task,
    *,
    ratio: float = 0.5,
    epochs: int = 10,
    lr: float = 0.013,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 256,
    decay_masked_only: bool = False,
    seed: int,
):
    """SalUn: random-label fine-tuning on D_f, then D_r, each epoch, through the saliency mask
    (module docstring). Reports the share of weights the mask lets learn."""
    validate.integer("epochs", epochs, lo=0)
    xf, yf = task.forget_set()
    xr, yr = task.retain_set()
    mask = saliency_mask(model, xf, yf, ratio)
    g = torch.Generator().manual_seed(seed)
    y_random = torch.randint(0, task.num_classes, (len(yf),), generator=g).to(yf.device)
    bs = train_batch_size(batch_size)
    params = dict(model.named_parameters())
    hooks = [params[n].register_hook(lambda grad, m=m: grad * m) for n, m in mask.items()]

    def epoch_batches(epoch):
        yield from batches(xf, y_random, batch_size=bs, shuffle=True, generator=g)
        yield from batches(xr, yr, batch_size=bs, shuffle=True, generator=g)

    def loss_fn(m, xb, yb):
        loss = F.cross_entropy(m(xb).float(), yb)
        if decay_masked_only and weight_decay:
            loss = loss + 0.5 * weight_decay * sum((p[mask[n]] ** 2).sum() for n, p in params.items())
        return loss

    try:
        descend(
            model,
            epoch_batches,
            loss_fn,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=0.0 if decay_masked_only else weight_decay,
            desc="salun",
        )
    finally:
        for h in hooks:
            h.remove()
    kept = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return report(model, mask_share=kept / total, mask=mask)
