"""JiT: zero-shot unlearning by smoothing the model around each forget sample.

Foster, Fogarty, Schoepf, Dugue, Öztireli, Brintrup, *An Information Theoretic Approach
to Machine Unlearning* (TMLR). Explained in ``book/06_jit_geometry.ipynb``.

The idea: a sample that can be inferred from its neighbourhood (Definitions 4.1–4.2,
:func:`sample_information`) taught the model little, and the model barely changes around
it; a sample the neighbourhood contradicts lies where the model's output changes fast.
JiT minimises a finite-difference estimate of the model's local rate of change (Eq. 1,
:func:`jit_loss`) around every forget sample, one pass over the forget set
(Algorithm 1, :func:`jit`). It sees the forget set and nothing else.

Choices the paper leaves open, made here deliberately (the chapter shows each):

* **Batch norm (and dropout).** Eq. 1 treats ``f`` as a function of one input. A batch-norm
  layer in training mode makes ``f(x)`` depend on the other inputs of the batch (here the
  noisy copies) and writes their statistics into the running averages. By default
  (``bn="frozen"``) the model runs in eval mode while unlearning: running statistics stay
  as trained, every copy is mapped independently, and the affine batch-norm weights are
  still trained. ``bn="batch"`` runs it in training mode instead (what happens when a
  model in train mode is handed to the authors' loop).
* **Where the noise lives.** The authors' pipelines feed normalised images to the network,
  so their σ is in normalised units. unlearnkit models take ``[0, 1]`` pixels and normalise
  inside; ``noise_space="model"`` (default) therefore draws ξ in the model's normalised
  space (pixel noise σ·std per channel) so that the paper's σ keeps its meaning, and
  ‖ξ‖ is measured there. ``noise_space="input"`` adds ξ to the raw input.
* **Clamping.** Eq. 1 does not clamp. The authors clamp each noisy copy to the batch's
  min/max (a proxy for the valid pixel range). ``clamp=None`` (default) is Eq. 1;
  ``clamp=(0, 1)`` keeps images valid. The denominator is always the realised
  perturbation ‖x' − x‖ (= ‖ξ‖ when nothing is clamped), the middle term of Eq. 1; a copy
  that clamping maps back onto x itself (0/0) is left out of the average.
* **Which term carries the gradient.** The authors compute f(x + ξ) without gradient, so
  the step pulls f(x) towards the outputs of its neighbours (``detach_noisy=True``,
  default). ``detach_noisy=False`` differentiates Eq. 1 through both terms; then the
  output layer's bias gets exactly zero gradient (it cancels in f(x) − f(x + ξ)).
* **Gradients are cleared at every step.** (The authors' public code never clears them,
  so each step there applies the sum of all previous gradients.)
* **Batching.** Algorithm 1 steps once per forget sample (``batch_size=1``). The default is
  the authors' code instead: ``batch_size=128``, the per-sample losses of a batch *summed*
  before one step, which equals 128 per-sample steps to first order, so η keeps its meaning.
  The chapter measured both on the digits (full class, 3 seeds × 3 classes): similar
  accuracy and spread, and batches of 128 several times faster (26 forward passes per
  sample batched instead of one small step per sample).
* **Output.** ``f`` is the logit vector, as in the authors' code (``output="probs"`` uses
  the softmax instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import validate
from ..models import Normalize
from ..training import batches, check_inputs, descend, predict, train_batch_size
from ._registry import register, report

BN_MODES = ("frozen", "batch")
NOISE_SPACES = ("model", "input")
OUTPUTS = ("logits", "probs")


# ----------------------------------------------------------------------------- checks


def _check_sigma(sigma) -> float:
    if sigma is None:
        raise TypeError(
            "JiT needs sigma, the standard deviation of the input noise (Eq. 1); the paper's "
            "VGG11 values are 0.5 for full-class and 0.01 for sub-class and random forgetting."
        )
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not math.isfinite(sigma)
        or sigma <= 0
    ):
        raise ValueError(f"sigma must be a positive number (the noise standard deviation), got {sigma!r}.")
    return float(sigma)


_check_int = validate.integer
_check_clamp = validate.clamp_pair
_choice = validate.choice


# ----------------------------------------------------------------------------- the loss (Eq. 1)


def _noise_scale(model: nn.Module, x: torch.Tensor, noise_space: str) -> torch.Tensor | float:
    """Per-feature factor turning model-space noise into input-space noise (the Normalize std)."""
    if noise_space == "input":
        return 1.0
    norm = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if norm is None:
        return 1.0
    std = norm.std.to(x.device, x.dtype)
    if x.dim() == 4 and std.numel() in (1, x.shape[1]):
        return std.view(1, 1, -1, 1, 1)  # (B, N, C, H, W)
    if x.dim() == 2 and std.numel() in (1, x.shape[1]):
        return std.view(1, 1, -1)  # (B, N, D)
    if std.numel() == 1:
        return std.reshape(())
    return 1.0


def jit_loss(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float,
    n_samples: int = 25,
    *,
    generator: torch.Generator | None = None,
    clamp=None,
    detach_noisy: bool = True,
    noise_space: str = "model",
    output: str = "logits",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""The JiT loss of Eq. 1, a finite-difference estimate of the model's local rate of change:

    .. math:: \ell(x) = \frac{1}{N}\sum_{j=1}^N \frac{\|f(x) - f(x + \xi_j)\|_2}{\|\xi_j\|_2},
              \qquad \xi_j \sim \mathcal{N}(0, \sigma^2 I).

    ``x`` is a batch (B, ...); each sample gets its own ``n_samples`` copies. ``reduction``:
    ``"mean"`` or ``"sum"`` over the batch, or ``"none"`` for the B per-sample losses.
    The model is used in whatever mode it is in (:func:`jit` sets it). See the module
    docstring for ``clamp``, ``detach_noisy``, ``noise_space`` and ``output``.

    Properties (tested): zero for a constant function; for a linear model it does not
    depend on σ (‖Wξ‖/‖ξ‖ is scale-free); gradients reach every trainable parameter
    (with ``detach_noisy=False`` except the output bias, which cancels).
    """
    sigma = _check_sigma(sigma)
    n_samples = _check_int("n_samples", n_samples)
    clamp = _check_clamp(clamp)
    _choice("noise_space", noise_space, NOISE_SPACES)
    _choice("output", output, OUTPUTS)
    _choice("reduction", reduction, ("mean", "sum", "none"))
    if not torch.is_tensor(x) or x.dim() < 2 or len(x) == 0:
        raise ValueError(
            "x must be a non-empty batch tensor of shape (B, ...); add a batch dimension "
            "with x[None] for a single sample."
        )
    check_inputs(model, x)
    b, shape = len(x), tuple(x.shape[1:])
    scale = _noise_scale(model, x, noise_space)
    xi = torch.randn((b, n_samples) + shape, generator=generator, dtype=x.dtype).to(x.device) * sigma
    xp = x[:, None] + xi * scale  # noisy copies in input space
    if clamp is not None:
        xp = xp.clamp(*clamp)
    step = ((xp - x[:, None]) / scale).flatten(2).norm(dim=2)  # realised ‖ξ_j‖ in noise space
    f = (lambda z: F.softmax(model(z).float(), 1)) if output == "probs" else (lambda z: model(z).float())
    flat = xp.reshape((b * n_samples,) + shape)
    if model.training:
        # batch statistics: the samples and their copies form one batch (and share its statistics)
        both = f(torch.cat([x, flat]))
        out, out_p = both[:b], both[b:]
        out_p = out_p.detach() if detach_noisy else out_p
    else:
        out = f(x)  # (B, K)
        if detach_noisy:
            with torch.no_grad():
                out_p = f(flat)
        else:
            out_p = f(flat)
    out_p = out_p.view(b, n_samples, -1)
    diff = (out[:, None] - out_p).norm(dim=2)  # (B, N)
    valid = step > 0  # a copy clamped back onto x carries no slope
    ratio = torch.where(valid, diff / step.clamp_min(1e-12), torch.zeros_like(diff))
    per_sample = ratio.sum(1) / valid.sum(1).clamp_min(1)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


# ----------------------------------------------------------------------------- the method (Algorithm 1)


def _per_task(full_class: dict, other: dict) -> dict:
    return {"full-class": full_class, "sub-class": other, "random": other, "instances": other}


@register(
    "jit",
    access="forget",
    paper="Foster et al. 2024 (JiT), Algorithm 1",
    color="#9467bd",
    # the paper's VGG11 settings; on the digits CNN lr 3e-5 (the JiT chapter's quick setting)
    presets={
        "default": _per_task(dict(sigma=0.5, lr=3e-4), dict(sigma=0.01, lr=3e-4)),
        "quick": _per_task(dict(sigma=0.5, lr=3e-5), dict(sigma=0.01, lr=3e-5)),
    },
)
def jit(
    model,
    task,
    *,
    sigma: float | None = None,
    lr: float | None = None,
    n_samples: int = 25,
    batch_size: int = 128,
    epochs: int = 1,
    bn: str = "frozen",
    clamp=None,
    detach_noisy: bool = True,
    noise_space: str = "model",
    output: str = "logits",
    optimizer: str = "sgd",
    momentum: float = 0.0,
    seed: int,
):
    """JiT unlearning (Algorithm 1): one pass over the forget set; for each batch of
    ``batch_size`` samples (default 128, the authors' code; ``batch_size=1`` is Algorithm 1's
    one step per sample) draw ``n_samples`` copies x + ξ, ξ ~ N(0, σ²) per sample, sum the
    per-sample losses of Eq. 1 (:func:`jit_loss`) and take one optimiser step of learning rate
    ``lr``.

    Zero-shot: registered with access ``"forget"``, so asking the task for retain data raises
    :class:`~unlearnkit.AccessError`. Plain SGD (``momentum=0``, no weight decay) as in the paper;
    gradients are cleared before every step. ``bn="frozen"`` (default) runs the model in eval
    mode so batch-norm running statistics stay as trained and each copy is mapped on its own;
    ``bn="batch"`` runs it in training mode. The paper's VGG11 settings: full class σ = 0.5,
    η = 3e-4; sub-class and random σ = 0.01, η = 3e-4; N = 25. ``epochs > 1`` repeats the pass (the
    paper suggests extra epochs with a smaller η where runtime allows); ``seed`` fixes the order and
    the noise, so the same seed gives the same model.
    """
    sigma = _check_sigma(sigma)
    if lr is None:
        raise TypeError("JiT needs lr, the learning rate η of Algorithm 1 (the paper uses 3e-4 for VGG11).")
    n_samples = _check_int("n_samples", n_samples)
    batch_size = _check_int("batch_size", batch_size)
    epochs = _check_int("epochs", epochs)
    _choice("bn", bn, BN_MODES)
    clamp = _check_clamp(clamp)
    xf, _ = task.forget_set()
    g = torch.Generator().manual_seed(seed)

    def loss_fn(m, xb):
        return jit_loss(
            m,
            xb,
            sigma,
            n_samples,
            generator=g,
            clamp=clamp,
            detach_noisy=detach_noisy,
            noise_space=noise_space,
            output=output,
            reduction="sum",
        )

    bs = train_batch_size(batch_size)  # at most 16 in a dry run
    h = descend(
        model,
        lambda e: batches(xf, batch_size=bs, shuffle=True, generator=g),
        loss_fn,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=0.0,
        train_mode=bn == "batch",
        desc="jit",
        hint="lower lr or sigma",
    )
    return report(model, steps=h.steps)


# --------------------------------------------------------------------- information of a sample (Defs 4.1-4.2)


def sample_information(
    x: torch.Tensor,
    y: torch.Tensor,
    ref_x: torch.Tensor | None = None,
    ref_y: torch.Tensor | None = None,
    r: float = 0.5,
    include_self: bool = False,
) -> torch.Tensor:
    """α(x) of Definitions 4.1–4.2: the share of the points in the ball B_r(x) (radius ``r``,
    Euclidean) whose label equals x's label. High α: the neighbourhood already implies the
    sample (low information); low α: the neighbourhood contradicts it (high information).

    ``ref_x, ref_y`` are the labelled points that make up the neighbourhood (default: ``x, y``
    themselves). Definition 4.1's ball contains x itself; ``include_self=False`` (default)
    leaves the query point out so that an isolated point is not called "low information" by
    its own vote. Points with an empty neighbourhood get NaN.
    """
    if ref_x is None:
        ref_x, ref_y = x, y
    if ref_y is None:
        raise ValueError("Give ref_y, the labels of the reference points ref_x.")
    if r <= 0:
        raise ValueError(f"The radius r must be positive, got {r}.")
    if len(x) != len(y) or len(ref_x) != len(ref_y):
        raise ValueError("x and y (and ref_x and ref_y) must have the same length.")
    a, b = x.flatten(1).float().cpu(), ref_x.flatten(1).float().cpu()
    ya, yb = y.cpu(), ref_y.cpu()
    d = torch.cdist(a, b)
    inside = d <= r
    if not include_self:
        inside &= d > 0
    same = (ya[:, None] == yb[None, :]) & inside
    n = inside.sum(1).float()
    return torch.where(n > 0, same.sum(1).float() / n.clamp_min(1), torch.full_like(n, float("nan")))


def model_information(
    model: nn.Module,
    x: torch.Tensor,
    r: float = 0.5,
    n_samples: int = 256,
    y: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The zero-shot reading of Definition 4.2: the share of points drawn uniformly from the
    ball B_r(x) that the *model* assigns to x's class (``y``, default: the model's prediction
    at x). This is what the model itself says about x's neighbourhood, the only thing a
    zero-shot method can see; Eq. 1 probes the same neighbourhood with Gaussian noise.
    """
    if r <= 0:
        raise ValueError(f"The radius r must be positive, got {r}.")
    n_samples = _check_int("n_samples", n_samples)
    g = torch.Generator().manual_seed(seed)
    d = x[0].numel()
    dirs = torch.randn((len(x), n_samples, d), generator=g)
    dirs = dirs / dirs.norm(dim=2, keepdim=True).clamp_min(1e-12)
    rad = r * torch.rand((len(x), n_samples, 1), generator=g) ** (1.0 / d)
    pts = (x.flatten(1).cpu()[:, None] + dirs * rad).to(x.device, x.dtype)
    if y is None:
        y = predict(model, x).argmax(1)
    pred = predict(model, pts.reshape((-1,) + tuple(x.shape[1:]))).argmax(1).view(len(x), n_samples)
    return (pred == y.to(pred.device)[:, None]).float().mean(1).cpu()
