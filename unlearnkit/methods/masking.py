"""Unlearning with Fisher masking (Liu, Sun, Wu, Zhou 2022): mask, then fine-tune.

Explained in the Fisher-masking chapter (``book/05_fisher_masking.ipynb``).

* ``mask`` (access ``forget+retain``): zero the share ``ratio`` (R) of the parameters that
  matter most for the forget set, then fine-tune ``finetune_epochs`` (S) epochs on D_r.
  ``score`` ranks the parameters:

  - ``"fisher"``: FisherMask, the top ⌈R·n⌉ parameters by F_f − F_r (Section "Masking with
    Fisher Information", the ranking Eq. 2 suggests), F the per-sample *empirical* diagonal
    Fisher (:func:`unlearnkit.fisher.diag_fisher`), averaged over each set (``reduction="mean"``,
    our default) or summed as in the paper's linear-regression F_{f,jj} = Σ_{x ∈ D_f} x_j²
    (``"sum"``; the chapter shows that sums relearn the class during fine-tuning);
  - ``"activation"``: ActivationMask, output channels of every Conv-BN(-ReLU) by
    A_f − A_r (mean ReLU activation over each set), masking the conv kernels of those channels
    (whole channels, as many as fit in ⌈R·n⌉ parameters);
  - ``"random"``: RandomMask, ⌈R·n⌉ parameters drawn uniformly.

  n counts every trainable parameter except the final classifier, which is never masked.
  ``replay_schedule=True`` replays the original training schedule (lr, then ×0.1 at 50 % and
  75 %) compressed into the S epochs; ``False`` keeps ``lr`` constant.
* ``mask_forget_only`` (access ``forget``): the scores from D_f alone (F_f, A_f, random), no
  fine-tuning (Table 5, "no remain data").
* ``mask_retain_subset`` (access ``forget+retain_subset``): ``n_retain`` (50) retain images for
  both the scores and the fine-tuning (Table 5, "0.1 % remain data").
* ``mask_classifier`` (access ``class_ids``): zero the classifier row of each forgotten class
  (the relearn-time baseline of Fig. 2).
* ``replay_finetune`` (access ``retain``): the paper's Finetune: S epochs on D_r with the
  replayed schedule, no mask.
* ``fisher_noise`` (access ``retain``): the paper's FisherNoise, Eq. 1 (Golatkar et al.'s noise
  with std (λσ²)^{1/4} h^{-1/4}, h the true diagonal Fisher of D_r), followed by the same
  fine-tuning ("for a fair comparison, we also add a fine-tuning process"). It does not zero any
  classifier row (the benchmarks' :func:`unlearnkit.methods.fisher_forgetting` does).

Every method can keep the model after each fine-tuning epoch (``keep_epochs=True``:
``unlearn_info["epoch_states"]``, epoch 0 = after masking) so that a chapter can evaluate the
unlearn score per epoch and the stability of Table 2 without the method seeing test data.
"""

from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F

from .. import validate
from ..data import stratified_indices
from ..fisher import diag_fisher
from ..training import augment as _augment
from ..training import batches, descend, train_batch_size
from ._registry import register, report
from .masks import SCORES, _check_ratio, apply_mask, choose_mask, classifier_names
from .masks import budget as budget  # re-exported: the chapter reads ``masking.budget``
from .masks import maskable as maskable

# ----------------------------------------------------------------------------- fine-tuning


def finetune_on(
    model,
    x,
    y,
    epochs: int,
    lr: float = 0.1,
    replay_schedule: bool = True,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    augment: bool = False,
    seed: int = 0,
    keep_epochs: bool = False,
    freeze: dict | None = None,
    desc: str = "mask fine-tune",
) -> dict:
    """S epochs of SGD on ``(x, y)`` through :func:`unlearnkit.descend`.

    With ``replay_schedule`` the original schedule (``lr``, ×0.1 at 50 % and 75 % of the steps)
    is compressed into the S epochs (the paper's learning-rate replay); otherwise ``lr`` stays
    constant. ``freeze`` (masks) keeps masked entries at zero. Returns ``{"finetune_seconds",
    "epoch_states"}`` (the states only with ``keep_epochs``; epoch 0 is the model before).
    """
    validate.integer("finetune_epochs", epochs, lo=0)
    states = [copy.deepcopy(model.state_dict())] if keep_epochs else []
    t0 = time.perf_counter()
    if epochs > 0:
        if len(x) == 0:
            raise ValueError("Fine-tuning needs retain data, and the set given is empty.")
        batch_size = train_batch_size(batch_size)  # at most 16 in a dry run
        g = torch.Generator().manual_seed(seed)
        params = dict(model.named_parameters())

        def data(epoch):
            for xb, yb in batches(x, y, batch_size=batch_size, shuffle=True, generator=g):
                yield (_augment(xb, generator=g) if augment else xb), yb

        def loss_fn(m, xb, yb):
            return F.cross_entropy(m(xb).float(), yb)

        def on_epoch(epoch, loss):
            if freeze:
                with torch.no_grad():
                    for n, msk in freeze.items():
                        params[n][msk] = 0.0
            if keep_epochs:
                states.append(copy.deepcopy(model.state_dict()))

        descend(
            model,
            data,
            loss_fn,
            epochs=epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            schedule="step" if replay_schedule else "constant",
            steps_per_epoch=max(1, math.ceil(len(x) / batch_size)),
            on_epoch=on_epoch,
            desc=desc,
        )
    model.eval()
    return {"finetune_seconds": time.perf_counter() - t0, "epoch_states": states}


def _ft_kwargs(task, finetune_epochs, lr, replay_schedule, batch_size, seed, keep_epochs, augment):
    return dict(
        epochs=finetune_epochs,
        lr=lr,
        replay_schedule=replay_schedule,
        batch_size=batch_size,
        seed=seed,
        keep_epochs=keep_epochs,
        augment=task.augment if augment is None else augment,
    )


# ----------------------------------------------------------------------------- the methods


@register(
    "mask",
    access="forget+retain",
    paper="Liu et al. 2022 (Fisher masking)",
    presets={"quick": dict(ratio=0.04), "smoke": dict(ratio=0.04, finetune_epochs=2)},
)
def mask(
    model,
    task,
    *,
    score: str = "fisher",
    ratio: float = 0.02,
    finetune_epochs: int = 5,
    replay_schedule: bool = True,
    lr: float = 0.1,
    batch_size: int = 128,
    reduction: str = "mean",
    n_retain: int | None = None,
    freeze_mask: bool = False,
    keep_epochs: bool = False,
    augment: bool | None = None,
    fisher_method: str = "vmap",
    seed: int,
):
    """Mask the top R of the parameters by ``score`` on D_f vs D_r, then fine-tune S epochs on D_r.

    ``score``: ``"fisher"`` (F_f − F_r, Eq. 2's ranking), ``"activation"`` (A_f − A_r per
    Conv-BN channel) or ``"random"``. ``ratio`` = R in (0, 1]; exactly ⌈R·n⌉ parameters are
    masked (activation: whole kernels, at most that many); the final classifier never.
    ``finetune_epochs`` = S (0: mask only); ``replay_schedule`` compresses the original step
    schedule into S epochs. ``n_retain`` subsamples D_r for the scores (the Fisher's cost).
    ``unlearn_info``: ``masked``, ``budget``, ``score_seconds``, ``finetune_seconds``
    (+ ``channels`` for activation, ``epoch_states`` with ``keep_epochs``).
    """
    validate.choice("score", score, SCORES)
    _check_ratio(ratio)
    validate.integer("finetune_epochs", finetune_epochs, lo=0)
    validate.optional_integer("n_retain", n_retain)
    xf, yf = task.forget_set()
    xr, yr = task.retain_set()
    xs, ys, total = xr, yr, len(xr)
    if n_retain is not None and n_retain < len(xr):
        pick = stratified_indices(yr, n=n_retain, seed=seed).to(xr.device)
        xs, ys = xr[pick], yr[pick]
    masks, info = choose_mask(
        model,
        score,
        ratio,
        xf,
        yf,
        xs,
        ys,
        reduction=reduction,
        n_retain_total=total,
        seed=seed,
        fisher_method=fisher_method,
    )
    info["masked"] = apply_mask(model, masks)
    info.update(
        finetune_on(
            model,
            xr,
            yr,
            freeze=masks if freeze_mask else None,
            **_ft_kwargs(task, finetune_epochs, lr, replay_schedule, batch_size, seed, keep_epochs, augment),
        )
    )
    return report(model, **info)


@register(
    "mask_forget_only",
    access="forget",
    paper="Liu et al. 2022 (Table 5, no remain data)",
    presets={"quick": dict(ratio=0.01)},
)
def mask_forget_only(
    model,
    task,
    *,
    score: str = "fisher",
    ratio: float = 0.02,
    keep_epochs: bool = False,
    fisher_method: str = "vmap",
    seed: int,
):
    """Masking with D_f alone: the top R by F_f (``"fisher"``), by A_f (``"activation"``) or at
    random; no fine-tuning (nothing to fine-tune on). Access ``forget``: D_r is never read."""
    xf, yf = task.forget_set()
    masks, info = choose_mask(model, score, ratio, xf, yf, seed=seed, fisher_method=fisher_method)
    info["masked"] = apply_mask(model, masks)
    info["finetune_seconds"] = 0.0
    info["epoch_states"] = [copy.deepcopy(model.state_dict())] if keep_epochs else []
    return report(model, **info)


@register(
    "mask_retain_subset",
    access="forget+retain_subset",
    paper="Liu et al. 2022 (Table 5, 0.1 % remain data)",
    presets={"quick": dict(ratio=0.04), "smoke": dict(ratio=0.04, finetune_epochs=2)},
)
def mask_retain_subset(
    model,
    task,
    *,
    score: str = "fisher",
    ratio: float = 0.02,
    n_retain: int = 50,
    finetune_epochs: int = 5,
    replay_schedule: bool = True,
    lr: float = 0.1,
    batch_size: int = 128,
    keep_epochs: bool = False,
    augment: bool | None = None,
    fisher_method: str = "vmap",
    seed: int,
):
    """Masking and fine-tuning with D_f and ``n_retain`` class-balanced retain images only.

    The Fisher scores compare per-sample means (``reduction="mean"``): the method does not know
    how large D_r is, so it cannot scale the subset's Fisher to a sum over D_r.
    """
    validate.integer("n_retain", n_retain)
    xf, yf = task.forget_set()
    k_r = max(1, task.num_classes - len(task.forget_classes))
    xs, ys = task.retain_subset(n_per_class=math.ceil(n_retain / k_r), seed=seed)
    if len(xs) > n_retain:  # drop the surplus at random: classes stay within one
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(xs), generator=g)[:n_retain].sort().values.to(xs.device)
        xs, ys = xs[pick], ys[pick]
    masks, info = choose_mask(
        model, score, ratio, xf, yf, xs, ys, reduction="mean", seed=seed, fisher_method=fisher_method
    )
    info["masked"] = apply_mask(model, masks)
    info["n_retain"] = len(xs)
    info.update(
        finetune_on(
            model,
            xs,
            ys,
            **_ft_kwargs(task, finetune_epochs, lr, replay_schedule, batch_size, seed, keep_epochs, augment),
        )
    )
    return report(model, **info)


@register("mask_classifier", access="class_ids", paper="Liu et al. 2022 (Fig. 2 baseline)", seeded=False)
def mask_classifier(model, task):
    """MaskClassifier: zero the final classifier's row (weights and bias) of each forgotten class."""
    if task.kind not in ("class", "classes"):
        raise ValueError(
            "mask_classifier removes classes: the task must forget whole classes "
            f"(uk.forget_classes), not {task.kind!r}."
        )
    forget = list(task.forget_classes)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n in classifier_names(model):
            params[n][forget] = 0.0
    return report(model, masked=sum(params[n][forget].numel() for n in classifier_names(model)))


@register(
    "replay_finetune",
    access="retain",
    paper="Liu et al. 2022 (Finetune baseline)",
    presets={"smoke": dict(finetune_epochs=2)},
)
def replay_finetune(
    model,
    task,
    *,
    finetune_epochs: int = 5,
    replay_schedule: bool = True,
    lr: float = 0.1,
    batch_size: int = 128,
    keep_epochs: bool = False,
    augment: bool | None = None,
    seed: int,
):
    """The paper's Finetune: S epochs on D_r from w* with the original optimiser and the replayed
    schedule (the library's ``finetune`` is the SSD benchmark's constant-lr version)."""
    xr, yr = task.retain_set()
    info = finetune_on(
        model,
        xr,
        yr,
        **_ft_kwargs(task, finetune_epochs, lr, replay_schedule, batch_size, seed, keep_epochs, augment),
    )
    return report(model, masked=0, **info)


def eq1_noise(model, fisher: dict, lam_sigma2: float, max_std: float, generator) -> dict:
    """Add Eq. 1's noise in place: w ← w* + (λσ²)^{1/4} · h^{-1/4} · n, n ~ N(0, I), h the diagonal
    Fisher (``fisher``) of each parameter; the per-weight std is capped at ``max_std`` (where h is
    about zero, h^{-1/4} is unbounded). Returns the mean std per parameter tensor."""
    scale = lam_sigma2**0.25
    stds = {}
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n not in fisher:
                continue
            std = (scale * (fisher[n].float() + 1e-12) ** -0.25).clamp(max=max_std)
            p.add_((std * torch.randn(p.shape, generator=generator)).to(p.device, p.dtype))
            stds[n] = float(std.mean())
    return stds


@register(
    "fisher_noise",
    access="retain",
    paper="Golatkar et al. 2020, as FisherNoise (Eq. 1) in Liu et al. 2022",
    presets={
        "quick": dict(n_samples=500),
        "smoke": dict(n_samples=100, finetune_epochs=2),
        "full": dict(n_samples=10_000),
    },
)
def fisher_noise(
    model,
    task,
    *,
    lam_sigma2: float = 1e-6,
    max_std: float = 1.0,
    n_samples: int | None = None,
    finetune_epochs: int = 5,
    replay_schedule: bool = True,
    lr: float = 0.1,
    batch_size: int = 128,
    keep_epochs: bool = False,
    augment: bool | None = None,
    seed: int,
):
    """FisherNoise as Eq. 1 of Liu et al. states it, then the same S epochs of fine-tuning on D_r as
    the masks get ("for a fair comparison").

    Eq. 1: ŵ_r = w* + (λσ²)^{1/4} h^{-1/4} (Golatkar et al.'s noise, std ∝ h^{-1/4}, i.e. variance
    ∝ h^{-1/2}), h the diagonal of the Hessian of the loss on D_r, here its Gauss–Newton stand-in,
    the *true* diagonal Fisher of D_r (``n_samples`` images; all when ``None``). ``lam_sigma2`` is
    λσ², the one free constant, which the paper does not give (the chapter picks it by a sweep);
    ``max_std`` caps each weight's std where h ≈ 0. No classifier row is zeroed: forgetting, if
    any, comes from the noise. This is not :func:`unlearnkit.methods.fisher_forgetting`, the
    benchmarks' variant (variance α/F, clipped, and the forgotten class's output row set to zero).
    """
    validate.positive("lam_sigma2", lam_sigma2, hint="λσ² scales Eq. 1's noise (try 1e-10 … 1e-6).")
    validate.positive("max_std", max_std)
    t0 = time.perf_counter()
    x, y = task.retain_set()
    g = torch.Generator(device="cpu").manual_seed(seed)
    if n_samples is not None and n_samples < len(x):
        idx = torch.randperm(len(x), generator=g)[:n_samples].to(x.device)
        x, y = x[idx], y[idx]
    fisher = diag_fisher(model, x, y, kind="true", batch_size=64)
    stds = eq1_noise(model, fisher, lam_sigma2, max_std, g)
    score_seconds = time.perf_counter() - t0
    xr, yr = task.retain_set()
    info = finetune_on(
        model,
        xr,
        yr,
        **_ft_kwargs(task, finetune_epochs, lr, replay_schedule, batch_size, seed, keep_epochs, augment),
    )
    return report(
        model,
        masked=0,
        score_seconds=score_seconds,
        noise_std_mean=sum(stds.values()) / max(1, len(stds)),
        **info,
    )
