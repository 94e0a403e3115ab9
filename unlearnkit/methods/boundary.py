"""Boundary shrinking: zero-shot unlearning by relabelling each forget sample with its
nearest false class (Chen, Gao, Liu, Peng, Wang, *Boundary Unlearning*, CVPR 2023).

The other zero-shot method the JiT paper compares against; shown in
``book/06_jit_geometry.ipynb``.

For each forget sample x with label y, a frozen copy of the original model is attacked
with one untargeted FGSM step of size ``bound`` in ``[0, 1]`` pixel space (Goodfellow et
al. 2015): x' = clip(x + bound · sign ∇_x CE(f(x), y)). The class the original model
gives x' is the *nearest but incorrect* label y_nbi (the class across the nearest
decision boundary). The model is then fine-tuned on (x, y_nbi) with cross-entropy, which
shrinks the forgotten region into its neighbours. Chen et al.: bound 0.1, SGD lr 1e-5,
momentum 0.9, 10 epochs.

Faithful details: the attacked model is the frozen original, so y_nbi does not change
between epochs and is computed once (their loop recomputes the same labels each step);
when FGSM fails to cross a boundary, y_nbi equals y and that sample is simply trained on
its own label, as in their code (``unlearn_info["hits"]`` records the share that crossed).
Their attack also rounds x' to 1/255 steps; we keep it continuous (digits are not 8-bit).
Batch norm: ``bn="frozen"`` (default) fine-tunes in eval mode so forget-only batches do not
overwrite the running statistics; ``bn="batch"`` fine-tunes in training mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import validate
from ..attacks import fgsm
from ..models import clone
from ..training import batches, descend, predict, train_batch_size
from ._registry import register, report


def nearest_false_labels(
    model, x: torch.Tensor, y: torch.Tensor, bound: float = 0.1, batch_size: int = 256
) -> torch.Tensor:
    """y_nbi: the original model's label for the FGSM neighbour x + bound·sign(∇_x CE) of each sample."""
    if not bound > 0:
        raise ValueError(f"bound (the FGSM step in pixel units) must be positive, got {bound}.")
    clamp = (0.0, 1.0) if x.dim() == 4 else None  # images live in [0, 1]; toys are unbounded
    was = model.training
    model.eval()  # batch norm must not see (or record) the attack batch
    out = []
    for xb, yb in batches(x, y, batch_size=batch_size):
        xa = fgsm(model, xb, yb, eps=bound, clamp=clamp)
        with torch.no_grad():
            out.append(model(xa).argmax(1))
    model.train(was)
    return torch.cat(out)


@register(
    "boundary_shrink",
    access="forget",
    paper="Chen et al. 2023 (Boundary Unlearning: shrinking)",
    tasks=("full-class", "sub-class", "random"),
    why="Chen et al. shift the boundary of a class; the JiT paper also runs it on sub-class and "
    "random forgetting",
    color="#bcbd22",
    presets={"quick": dict(bound=0.3, lr=1e-4, epochs=10)},
)
def boundary_shrink(
    model,
    task,
    *,
    bound: float = 0.1,
    lr: float = 1e-5,
    epochs: int = 10,
    batch_size: int = 128,
    momentum: float = 0.9,
    bn: str = "frozen",
    seed: int,
):
    """Fine-tune on the forget set relabelled with its nearest false labels (Chen et al. 2023).

    ``unlearn_info["hits"]`` is the share of forget samples whose FGSM neighbour crossed a boundary.
    """
    validate.choice("bn", bn, ("frozen", "batch"))
    validate.integer("epochs", epochs)
    xf, yf = task.forget_set()
    ref = clone(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    y_nbi = nearest_false_labels(ref, xf, yf, bound)
    del ref
    g = torch.Generator().manual_seed(seed)
    bs = train_batch_size(batch_size)  # at most 16 in a dry run
    descend(
        model,
        lambda e: batches(xf, y_nbi, batch_size=bs, shuffle=True, generator=g),
        lambda m, xb, yb: F.cross_entropy(m(xb), yb),
        epochs=epochs,
        lr=lr,
        momentum=momentum,
        train_mode=bn == "batch",
        desc="boundary_shrink",
    )
    return report(model, hits=float((y_nbi != yf).float().mean()))


def runner_up_labels(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model's highest-scoring class other than the true one, for each sample."""
    logits = predict(model, x).clone()
    logits[torch.arange(len(y), device=logits.device), y.to(logits.device)] = -float("inf")
    return logits.argmax(1).to(y.device)


@register(
    "relabel",
    access="forget",
    paper="naive baseline (the JiT paper's Figure 2)",
    presets={"quick": dict(lr=1e-3), "smoke": dict(lr=1e-3, max_steps=50)},
)
def relabel(
    model,
    task,
    *,
    lr: float = 1e-2,
    max_steps: int = 200,
    batch_size: int = 128,
    momentum: float = 0.0,
    bn: str = "frozen",
    seed: int,
):
    """Naive unlearning by relabelling: gradient descent on CE(f(x_f), y') with y' each forget sample's
    *nearest wrong class* (the original model's highest-scoring wrong class), until every forget sample
    is predicted as its wrong label or ``max_steps`` steps were taken.

    ``unlearn_info``: ``steps`` taken and ``relabelled`` (share of D_f predicted as its new label).
    """
    validate.choice("bn", bn, ("frozen", "batch"))
    validate.integer("max_steps", max_steps)
    xf, yf = task.forget_set()
    wrong = runner_up_labels(model, xf, yf)
    g = torch.Generator().manual_seed(seed)

    def done(m):
        return bool((predict(m, xf).argmax(1) == wrong.to(xf.device)).all())

    bs = train_batch_size(batch_size)  # at most 16 in a dry run
    h = descend(
        model,
        lambda e: batches(xf, wrong, batch_size=bs, shuffle=True, generator=g),
        lambda m, xb, yb: F.cross_entropy(m(xb), yb),
        epochs=max_steps,
        max_steps=max_steps,
        lr=lr,
        momentum=momentum,
        stop=done,
        train_mode=bn == "batch",
        desc="relabel",
    )
    hit = float((predict(model, xf).argmax(1) == wrong.to(xf.device)).float().mean())
    return report(model, steps=h.steps, relabelled=hit)
