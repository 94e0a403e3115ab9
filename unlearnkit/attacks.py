"""Adversarial examples in [0, 1] pixel space: FGSM and targeted L2-PGD.

Used by the instance-wise chapter (``book/04_instance_wise.ipynb``: adversarial examples as
stand-ins for the retain data, Cha et al. 2024, Eq. 1 and Algorithm 1) and by boundary
shrinking in the JiT chapter (nearest false label by FGSM).

* :func:`fgsm`: one signed-gradient step.
* :func:`pgd_l2`: targeted L2 projected gradient descent (Madry et al. 2018) on a batch.
* :func:`random_targets`: a random label different from the true one, per sample.
* :func:`adversarial_examples`: Algorithm 1 batched: ``n_adv`` targeted L2-PGD examples per
  forget image, all images and all runs attacked at once (in chunks of ``batch_size``); one
  random target per image by default (``targets="per_image"``), or one per run (``"per_run"``).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from . import budget, profiles, validate


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


def pgd_l2(
    model,
    x,
    target,
    eps: float = 0.4,
    step: float = 0.1,
    iters: int = 100,
    random_start: bool = True,
    clamp=(0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Targeted L2 projected gradient descent: minimise CE(f(x'), target) with ‖x' − x‖₂ ≤ eps
    (Eq. 1 of Cha et al. 2024, approximated as Madry et al. 2018 do).

    Steps are normalised gradients of length ``step``; the perturbation is projected back
    onto the L2 ball of radius ``eps`` per sample, and images onto ``clamp`` (clamping a
    point of the box only shortens the perturbation, so the ball still holds). The random
    start draws a direction uniformly and a radius uniformly in [0, eps]. The model is
    attacked in eval mode (batch norm uses its running statistics).
    """
    validate.positive("eps", eps)
    validate.positive("step", step)
    validate.integer("iters", iters, lo=0)
    clamp = validate.clamp_pair(clamp)
    if len(x) != len(target):
        raise ValueError(f"pgd_l2 needs one target per image: got {len(x)} images and {len(target)} targets.")
    was = model.training
    model.eval()
    x = x.detach()
    target = target.to(x.device)
    view = (-1,) + (1,) * (x.dim() - 1)
    delta = torch.zeros_like(x)
    if random_start:
        r = torch.randn(x.shape, generator=generator).to(x.device)
        r = r / r.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)
        u = torch.rand(len(x), generator=generator).to(x.device).view(view)
        delta = r * u * eps
    steps = profiles.active().cap(iters)  # two steps in a dry run, counted as ``iters`` (budget)
    with budget.loop(iters / max(1, steps)):
        delta = _pgd_steps(model, x, target, delta, steps, step, eps, clamp, view)
    model.train(was)
    out = (x + delta).detach()
    return out.clamp(*clamp) if clamp is not None else out


def _pgd_steps(model, x, target, delta, steps, step, eps, clamp, view):
    for _ in range(steps):
        delta.requires_grad_(True)
        xa = x + delta
        if clamp is not None:
            xa = xa.clamp(*clamp)
        loss = F.cross_entropy(model(xa), target, reduction="sum")  # per-sample gradients stay unscaled
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            g = g / g.flatten(1).norm(dim=1).view(view).clamp_min(1e-12)
            delta = delta - step * g
            norm = delta.flatten(1).norm(dim=1).view(view)
            delta = delta * (eps / norm.clamp_min(1e-12)).clamp(max=1.0)
    return delta


def random_targets(
    y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A label drawn uniformly from the ``num_classes − 1`` classes other than ``y``, per sample."""
    validate.integer("num_classes", num_classes, lo=2, hint="A wrong label needs at least two classes.")
    shift = torch.randint(1, num_classes, (len(y),), generator=generator).to(y.device)
    return (y + shift) % num_classes


TARGET_RULES = ("per_image", "per_run")


def _target_rule(targets, same_target):
    """The rule for drawing targets: ``targets`` when it names one, else ``same_target`` (the
    older flag: ``True`` is ``"per_image"``, ``False`` is ``"per_run"``), else ``"per_image"``."""
    if same_target is not None and not isinstance(same_target, bool):
        raise TypeError(f"same_target must be True, False or None, got {same_target!r}.")
    legacy = None if same_target is None else ("per_image" if same_target else "per_run")
    if isinstance(targets, str):
        validate.choice("targets", targets, TARGET_RULES)
        if legacy is not None and legacy != targets:
            raise ValueError(f"same_target={same_target} contradicts targets={targets!r}; give only targets.")
        return targets
    return legacy or "per_image"


def adversarial_examples(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    n_adv: int = 20,
    eps: float = 4.0,
    step: float = 0.1,
    iters: int = 100,
    num_classes: int | None = None,
    targets: torch.Tensor | str | None = None,
    same_target: bool | None = None,
    batch_size: int = 2048,
    clamp=(0.0, 1.0),
    generator: torch.Generator | None = None,
    info: dict | None = None,
):
    """Algorithm 1 of Cha et al. 2024, batched: ``n_adv`` targeted L2-PGD examples per image.

    Returns ``(x_adv, y_adv)``: ``len(x) * n_adv`` images, ordered run by run (the first
    ``len(x)`` rows are run 0 of every image, and so on), each labelled with the target class
    it was attacked towards.

    ``targets``: a tensor (one label per image, or ``(n_adv, len(x))``: one per example), or the
    rule by which random wrong labels are drawn from ``generator``:

    * ``"per_image"`` (default, Algorithm 1 as written: line 4 samples ȳ⁽ⁱ⁾ once per image, the
      inner loop reuses it): one target per image, drawn once, shared by its ``n_adv`` runs;
    * ``"per_run"``: a fresh wrong label for every PGD run of every image, as the authors'
      scripts do (they draw the attack label inside the loop over runs), so one image's
      examples point towards several classes.

    ``same_target`` is the older spelling (``True``: ``"per_image"``, ``False``: ``"per_run"``);
    ``None`` leaves the choice to ``targets``. All images and runs are attacked together, in
    chunks of ``batch_size``.

    ``info`` (a dict) receives ``seconds``, ``success`` (share of examples the model gives
    their target class), ``mean_norm`` (mean ‖x' − x‖₂) and ``targets`` (the rule used, or
    ``"given"``).
    """
    validate.integer("n_adv", n_adv, lo=1)
    validate.integer("batch_size", batch_size)
    if len(x) == 0:
        raise ValueError("adversarial_examples needs at least one image; the set given is empty.")
    if len(x) != len(y):
        raise ValueError(f"Got {len(x)} images and {len(y)} labels.")
    k = num_classes or getattr(model, "arch", {}).get("num_classes")
    if k is None:
        raise ValueError("Give num_classes: the model does not say how many classes it has.")
    rule = _target_rule(targets, same_target)
    t0 = time.perf_counter()
    y = y.to(x.device)
    if targets is not None and not isinstance(targets, str):
        rule = "given"
        targets = torch.as_tensor(targets).to(x.device).long()
        if targets.dim() == 1:
            targets = targets.expand(n_adv, -1)
        if targets.shape != (n_adv, len(x)):
            raise ValueError(
                f"targets must hold one label per image ({len(x)},) or per example "
                f"({n_adv}, {len(x)}); got {tuple(targets.shape)}."
            )
        if (targets == y[None]).any():
            raise ValueError("A target equals the image's true label: targeted examples need a wrong label.")
        if targets.min() < 0 or targets.max() >= k:
            raise ValueError(f"targets must lie in [0, {k}).")
    elif rule == "per_image":
        targets = random_targets(y, k, generator).expand(n_adv, -1)
    else:
        targets = torch.stack([random_targets(y, k, generator) for _ in range(n_adv)])
    xs = x.detach().repeat(n_adv, *([1] * (x.dim() - 1)))
    ts = targets.reshape(-1)
    # chosen images, not a share of the data; a dry run's fewer examples count as the planned
    # number (profiles.Profile.fewer, unlearnkit.budget)
    with budget.data_scale(1.0), budget.loop(getattr(n_adv, "planned", n_adv) / max(1, int(n_adv))):
        out = [
            pgd_l2(
                model,
                xs[i : i + batch_size],
                ts[i : i + batch_size],
                eps=eps,
                step=step,
                iters=iters,
                clamp=clamp,
                generator=generator,
            )
            for i in range(0, len(xs), batch_size)
        ]
    x_adv = torch.cat(out)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    if info is not None:
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            was = model.training
            model.eval()
            hit = torch.cat(
                [model(x_adv[i : i + batch_size]).argmax(1) for i in range(0, len(x_adv), batch_size)]
            )
            model.train(was)
        info.update(
            seconds=seconds,
            success=float((hit == ts).float().mean()),
            mean_norm=float((x_adv - xs).flatten(1).norm(dim=1).mean()),
            targets=rule,
        )
    return x_adv, ts
