"""Adversarial examples in [0, 1] pixel space: FGSM and targeted L2-PGD.

Used by the instance-wise chapter (adversarial examples as retainers) and by
boundary shrinking in the JiT chapter (nearest false label by FGSM).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import profiles


def fgsm(model, x, y, eps: float = 8 / 255, targeted: bool = False, clamp=(0.0, 1.0)) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` (away from ``y``, or toward it if ``targeted``)."""
    was = model.training
    model.eval()
    x = x.clone().detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (g,) = torch.autograd.grad(loss, x)
    model.train(was)
    step = -eps if targeted else eps
    out = x.detach() + step * g.sign()
    return out.clamp(*clamp) if clamp is not None else out


def pgd_l2(model, x, target, eps: float = 0.4, step: float = 0.1, iters: int = 100, random_start: bool = True,
           clamp=(0.0, 1.0), generator: torch.Generator | None = None) -> torch.Tensor:
    """Targeted L2 projected gradient descent: minimise CE(f(x'), target) with ‖x' − x‖₂ ≤ eps.

    Steps are normalised gradients of length ``step``; the perturbation is projected back
    onto the L2 ball of radius ``eps`` per sample, and images onto ``clamp``.
    """
    was = model.training
    model.eval()
    x = x.detach()
    view = (-1,) + (1,) * (x.dim() - 1)
    delta = torch.zeros_like(x)
    if random_start:
        r = torch.randn(x.shape, generator=generator).to(x.device)
        r = r / r.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)
        u = torch.rand(len(x), generator=generator).to(x.device).view(view)
        delta = r * u * eps
    for _ in range(profiles.active().cap(iters)):   # two steps in a dry run
        delta.requires_grad_(True)
        xa = x + delta
        if clamp is not None:
            xa = xa.clamp(*clamp)
        loss = F.cross_entropy(model(xa), target)
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = g / g.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)
            delta = delta - step * g
            norm = delta.flatten(1).norm(dim=1).view(view)
            delta = delta * (eps / norm.clamp_min(1e-12)).clamp(max=1.0)
    model.train(was)
    out = (x + delta).detach()
    return out.clamp(*clamp) if clamp is not None else out
