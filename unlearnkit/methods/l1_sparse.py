"""ℓ1-sparse unlearning (Jia, Liu, Ram, Yao, Liu, Liu, Sharma, Liu, *Model Sparsity Can Simplify
Machine Unlearning*, NeurIPS 2023).

Explained in the chapter on the methods that came after the five papers
(``book/08_after_the_five.ipynb``).

``l1_sparse`` (access ``retain``) fine-tunes on D_r with

    L_t(θ) = CE(f_θ(x), y) + α_t ‖θ‖₁,    α_t = α (1 − t / T),

the ℓ1 weight decaying linearly from α at the first epoch (t = 0) to 0 over the T epochs, so the
sparsity pressure comes first and plain fine-tuning last. ‖θ‖₁ sums the absolute values of every
parameter (biases and batch-norm weights included, as in the authors' code). The authors'
README example (10 epochs, SGD lr 0.01, momentum 0.9, weight decay 5e-4) is the ``full`` preset;
α is not stated in the paper and the code's default (0.2) is shared with other methods, so
``full`` takes 1e-4, the value of the published CIFAR-10 scripts that reuse the authors' code,
and ``quick`` 5e-3, chosen by a small sweep on the digits (the preset's comment gives it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate
from ..training import batches, descend, train_batch_size
from ._registry import register


def l1_norm(model) -> torch.Tensor:
    """‖θ‖₁: the sum of the absolute values of every trainable parameter."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


@register(
    "l1_sparse",
    access="retain",
    paper="Jia et al. 2023 (ℓ1-sparse)",
    tasks=("full-class", "random"),
    why="the paper evaluates class-wise and random-data forgetting",
    color="#c49c94",
    presets={
        # digits (classes 0, 3, 8; 5 epochs, lr 0.02): alpha 1e-4 and 2e-3 forgot none of the three,
        # 5e-3 all three (retained accuracy 77-99 %), 1e-2 and above damaged the retained classes
        "quick": dict(alpha=5e-3, lr=0.02, epochs=5, batch_size=64),
        "smoke": dict(alpha=5e-3, lr=0.02, epochs=2, batch_size=32),
        "full": dict(alpha=1e-4, lr=0.01, epochs=10, batch_size=256),
    },
)
def l1_sparse(
    model,
    task,
    *,
    alpha: float = 1e-4,
    epochs: int = 10,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 256,
    seed: int,
):
    """Fine-tune on D_r with CE + α_t ‖θ‖₁, α_t = α (1 − t / T) per epoch (module docstring)."""
    validate.non_negative("alpha", alpha)
    validate.integer("epochs", epochs, lo=0)
    xr, yr = task.retain_set()
    g = torch.Generator().manual_seed(seed)
    bs = train_batch_size(batch_size)
    current = {"alpha": float(alpha)}

    def epoch_batches(epoch):
        current["alpha"] = float(alpha) * (1.0 - epoch / max(epochs, 1))
        yield from batches(xr, yr, batch_size=bs, shuffle=True, generator=g)

    def loss_fn(m, xb, yb):
        loss = F.cross_entropy(m(xb).float(), yb)
        return loss + current["alpha"] * l1_norm(m) if current["alpha"] else loss

    descend(
        model,
        epoch_batches,
        loss_fn,
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        desc="l1_sparse",
        hint="lower lr or alpha",
    )
    return model
