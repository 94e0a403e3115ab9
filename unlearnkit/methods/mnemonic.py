"""One-shot class unlearning with mnemonic codes.

Yamashita, Yamada, Shibata, *One-Shot Machine Unlearning with Mnemonic Code* (ACML 2023).
Explained in ``book/02_mnemonic_codes.ipynb``.

The idea in two phases:

* **Training (Algorithm 1, Eq. 1).** Every class ``c`` gets one fixed random signal, its
  *mnemonic code* ξ_c, shaped like an input. While training, each sample is replaced by its
  class's code with probability ``t_mix``: the model learns the data distribution
  ``p(x) = t_mix p^ξ(x) + (1 − t_mix) p^d(x)``. :func:`mnemonic_codes` draws the codes,
  :func:`mnemonic_hook` is the batch hook for :func:`unlearnkit.fit`, and
  :func:`train_with_codes` trains (or loads from the zoo) such a model.
* **Forgetting (Algorithm 2, Eq. 4–7).** The diagonal Fisher information of each class is
  computed from that class's single code (the surrogate of Eq. 4 replaces the Fisher of the
  training data by the Fisher of the codes), averaged into ``f_F`` over the forget classes and
  ``f_R`` over the retained ones, and every weight is moved by ``± α η`` with the importance
  ratio ``η = f_F / f_R`` (Eq. 6) and one step size per parameter tensor
  ``α = min(λ1, λ2 / max η)`` (Eq. 7). Of the two signs, the one with the larger
  ``A_R + E_F`` *on the codes* is kept (Algorithm 2, lines 17–21). No training image is read:
  :func:`mnemonic` is registered with access ``"class_ids"``.

:func:`mnemonic_with_data` is the paper's "ours-w-data" ablation (Section 4.3): the same
perturbation with the Fisher (and the sign choice) computed from ``n`` real training images per
class, for models trained with or without codes.

Choices where the paper is silent, following what its authors ran (stated in the chapter):

* **Where codes live.** The authors feed codes to the network *after* the images' normalisation,
  so a code is N(0, 1) in the space the first layer sees. unlearnkit models take ``[0, 1]``
  pixels and normalise inside; :func:`mnemonic_codes` therefore draws ξ in the model's
  normalised space and returns it in pixel space (``ξ · std + mean``), so that the first layer
  sees exactly ξ. ``distribution="uniform"`` draws U[0, 1) instead (what the authors' code
  does; the paper says N(0, 1)).
* **Fisher of one code.** The squared gradient of the cross-entropy of the code with its own
  class label (the empirical Fisher of a single sample), model in eval mode.
* **The ratio in log space.** ``η = exp(log f_F − log f_R)``. Squared gradients underflow easily
  in float32, and a plain division then gives ``0/0`` or ``x/0``. Entries with ``f_F = 0`` give
  ``η = 0`` (NaN → 0, as the authors do). Entries with ``f_F > 0 = f_R`` (a weight the retained
  classes do not use at all, e.g. behind a ReLU that is dead on every retained code) give
  ``η = +inf``: by default (``posinf="tensor_max"``) they get the largest finite η of their
  tensor, so they move as much as the most important finite weight. ``posinf="dtype_max"``
  replaces them by the largest float instead (what ``torch.nan_to_num`` does, hence the
  authors' code); then Eq. 7 gives such a tensor ``α ≈ λ2 / 3.4e38`` and only its infinite
  entries move (by λ2 each).
* **"Layer" in Eq. 7** is one parameter tensor (a weight matrix or a bias vector).
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch
import torch.nn as nn

from .. import budget
from ..data import stratified_indices
from ..fisher import diag_fisher
from ..models import check_finite
from ..training import check_inputs, predict
from ._registry import register, report
from .codes import _check_codes

POSINF_RULES = ("tensor_max", "dtype_max")


# ----------------------------------------------------------------------------- checks


def _check_lambda(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number (Eq. 7), got {v!r}.")
    return float(v)


def _classes(task) -> tuple[list[int], list[int]]:
    k = task.num_classes
    forget = [int(c) for c in task.forget_classes]
    if not forget:
        raise ValueError(
            "Mnemonic-code unlearning forgets whole classes (the paper's class removal); this task "
            "has no forget classes. Build it with uk.forget_classes(data, [c])."
        )
    bad = [c for c in forget if not 0 <= c < k]
    if bad:
        raise ValueError(f"Forget class {bad[0]} is out of range 0..{k - 1}.")
    if getattr(task, "kind", "class") not in ("class", "classes"):
        raise ValueError(
            f"Mnemonic-code unlearning forgets whole classes; this task is a {task.kind!r} task "
            f"(its label {forget} would also be removed for the samples it keeps)."
        )
    retain = [c for c in range(k) if c not in set(forget)]
    return forget, retain


# ----------------------------------------------------------------------------- Fisher and η (Eq. 3, 6, 7)


def class_fisher(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: Sequence[int], method: str = "auto"
) -> dict:
    """Diagonal empirical Fisher of each class (Eq. 3) from the samples of that class in ``(x, y)``.

    Returns ``{class: {parameter name: tensor}}``. With one mnemonic code per class this is the
    squared gradient of the code's cross-entropy (Algorithm 2, lines 4 and 7). ``method`` goes to
    :func:`unlearnkit.diag_fisher` (``"vmap"`` per-sample gradients or the ``"loop"`` reference).
    """
    out = {}
    for c in classes:
        sel = (y == c).nonzero().flatten()
        if len(sel) == 0:
            raise ValueError(f"No sample of class {c} to compute its Fisher information from.")
        out[int(c)] = diag_fisher(model, x[sel], y[sel], kind="empirical", method=method)
    return out


def average_fisher(per_class: dict, classes: Sequence[int]) -> dict:
    """``(1/|C|) Σ_{c ∈ C} f_c``: the numerator or denominator of Eq. 6."""
    classes = list(classes)
    names = per_class[classes[0]].keys()
    return {n: sum(per_class[c][n] for c in classes) / len(classes) for n in names}


def importance_ratio(f_forget: dict, f_retain: dict, posinf: str = "tensor_max") -> dict:
    """η = f_F / f_R (Eq. 6), computed as ``exp(log f_F − log f_R)``.

    ``f_F = 0`` gives 0 (also when ``f_R = 0``: the 0/0 NaN becomes 0). ``f_F > 0 = f_R`` gives
    +inf, replaced according to ``posinf``: ``"tensor_max"`` (default) by the largest finite η of
    the same tensor (1 if the tensor has none), ``"dtype_max"`` by the largest float. A ratio
    that overflows float32 is treated the same way. Returns ``{name: η tensor}``, finite, ≥ 0.
    """
    if posinf not in POSINF_RULES:
        raise ValueError(f"posinf must be one of {POSINF_RULES}, got {posinf!r}.")
    if set(f_forget) != set(f_retain):
        raise ValueError("f_forget and f_retain must have the same parameter names.")
    eta = {}
    for n, ff in f_forget.items():
        fr = f_retain[n]
        if ff.shape != fr.shape:
            raise ValueError(
                f"Fisher tensors for {n!r} differ in shape: {tuple(ff.shape)} vs {tuple(fr.shape)}."
            )
        if (ff < 0).any() or (fr < 0).any():
            raise ValueError(f"Fisher information cannot be negative (parameter {n!r}).")
        ff64, fr64 = ff.double(), fr.double()
        with torch.no_grad():
            e = torch.exp(torch.log(ff64) - torch.log(fr64))  # log 0 = -inf; -inf - -inf = NaN
            e = torch.nan_to_num(e, nan=0.0, posinf=math.inf).float()  # float32 overflow -> +inf
            e[ff64 == 0] = 0.0
            inf = torch.isinf(e)
            if inf.any():
                if posinf == "dtype_max":
                    fill = torch.finfo(torch.float32).max
                else:
                    finite = e[~inf]
                    fill = float(finite.max()) if finite.numel() and float(finite.max()) > 0 else 1.0
                e[inf] = fill
        eta[n] = e
    return eta


def step_sizes(eta: dict, lambda1: float, lambda2: float) -> dict:
    """α_l = min(λ1, λ2 / max η^l) for every parameter tensor l (Eq. 7); λ1 when max η^l = 0."""
    lambda1, lambda2 = _check_lambda("lambda1", lambda1), _check_lambda("lambda2", lambda2)
    out = {}
    for n, e in eta.items():
        m = float(e.max()) if e.numel() else 0.0
        out[n] = lambda1 if m <= 0 else min(lambda1, lambda2 / m)
    return out


def _perturbed(model: nn.Module, eta: dict, alpha: dict, sign: float) -> dict:
    """State dict of ``w + sign · α η`` (Eq. 5) for the parameters in ``eta``."""
    params = dict(model.named_parameters())
    return {n: params[n].detach() + sign * alpha[n] * eta[n].to(params[n].device) for n in eta}


def _load(model: nn.Module, new: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in new.items():
            params[n].copy_(v)


def _score(model, x, y, forget) -> dict:
    """A_R and E_F (%) of ``model`` on the labelled samples ``(x, y)``."""
    pred = predict(model, x).argmax(1)
    ok = pred == y
    is_f = torch.isin(y, torch.tensor(forget, device=y.device))
    a_r = 100.0 * ok[~is_f].float().mean().item()
    e_f = 100.0 - 100.0 * ok[is_f].float().mean().item()
    return {"A_R": a_r, "E_F": e_f}


def _one_shot(model, fisher_x, fisher_y, score_x, score_y, forget, retain, lambda1, lambda2, posinf):
    """Algorithm 2 on ``model`` in place; returns the info dict (times, sign, scores, α)."""
    t0 = time.perf_counter()
    per_class = class_fisher(model, fisher_x, fisher_y, forget + retain)  # lines 1–8
    f_f, f_r = average_fisher(per_class, forget), average_fisher(per_class, retain)  # lines 9–10
    t_fisher = time.perf_counter() - t0
    t1 = time.perf_counter()
    eta = importance_ratio(f_f, f_r, posinf=posinf)  # line 11, Eq. 6
    alpha = step_sizes(eta, lambda1, lambda2)  # line 13, Eq. 7
    candidates = {+1: _perturbed(model, eta, alpha, +1.0), -1: _perturbed(model, eta, alpha, -1.0)}  # 14–15
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    scores = {}
    for sign, state in candidates.items():  # lines 17–21
        _load(model, state)
        scores[sign] = _score(model, score_x, score_y, forget)
    s_plus, s_minus = (sum(scores[s].values()) for s in (+1, -1))
    sign = +1 if s_plus > s_minus else -1
    _load(model, original)
    _load(model, candidates[sign])
    t_perturb = time.perf_counter() - t1
    check_finite(model, f"model after the mnemonic perturbation (lambda1={lambda1}, lambda2={lambda2})")
    return {
        "sign": sign,
        "scores": scores,
        "alpha": alpha,
        "fisher_seconds": t_fisher,
        "perturb_seconds": t_perturb,
        "eta_max": {n: float(e.max()) for n, e in eta.items()},
    }


# ----------------------------------------------------------------------------- the methods


@register(
    "mnemonic",
    access="class_ids",
    paper="Yamashita et al. 2023 (mnemonic code)",
    seeded=False,
    own_original="needs an original trained with mnemonic codes (uk.methods.train_with_codes)",
    color="#17becf",
)
def mnemonic(
    model,
    task,
    *,
    lambda1: float = 1e-3,
    lambda2: float = 10.0,
    codes: torch.Tensor | None = None,
    posinf: str = "tensor_max",
    check_codes: bool = True,
):
    """One-shot forgetting of whole classes with mnemonic codes (Algorithm 2, Eq. 5–7).

    ``codes``: one code per class, shaped ``(num_classes, *input_shape)``; by default the codes
    the model was trained with (``model.mnemonic_codes``, set by :func:`train_with_codes`).
    ``lambda1``, ``lambda2``: Eq. 7 (paper: 1e-3, 10 for MNIST; 1e-5, 1e4 for CIFAR-10).
    Only the forget class ids and the codes are used (access ``"class_ids"``). With
    ``check_codes`` a model that classifies fewer than half of its codes correctly is refused:
    it was not trained with them, and their Fisher information would say nothing about the data.
    The result's ``unlearn_info`` carries the chosen sign, both candidates' A_R / E_F on the
    codes, α per tensor, and the wall times of the Fisher step and of the perturbation.
    """
    lambda1, lambda2 = _check_lambda("lambda1", lambda1), _check_lambda("lambda2", lambda2)
    forget, retain = _classes(task)
    if codes is None:
        codes = getattr(model, "mnemonic_codes", None)
        if codes is None:
            raise ValueError(
                "No mnemonic codes: pass codes=... (the codes the model was trained with) or train "
                "the model with uk.methods.train_with_codes(...), which attaches them."
            )
    _check_codes(codes, task.num_classes, task.input_shape)
    check_inputs(model, codes)
    dev = next(model.parameters()).device
    codes = codes.detach().to(dev)
    labels = torch.arange(task.num_classes, device=dev)
    if check_codes:
        acc = float((predict(model, codes).argmax(1) == labels).float().mean()) * 100
        if acc < 50.0:
            raise ValueError(
                f"The model recognises only {acc:.0f}% of the mnemonic codes: it was not trained with "
                f"these codes (train with uk.methods.train_with_codes or the hook "
                f"uk.methods.mnemonic_hook), so their Fisher information says nothing about the data. "
                f"Pass check_codes=False to perturb anyway."
            )
    info = _one_shot(model, codes, labels, codes, labels, forget, retain, lambda1, lambda2, posinf)
    return report(model, **info, fisher_from="codes", n_per_class=1)


@register(
    "mnemonic_with_data",
    access="forget+retain",
    paper="Yamashita et al. 2023 (ours-w-data, Sec. 4.3)",
    tasks=("full-class",),
    why="Yamashita et al. remove whole classes",
)
def mnemonic_with_data(
    model,
    task,
    *,
    n_per_class: int | None = 100,
    lambda1: float = 1e-3,
    lambda2: float = 10.0,
    posinf: str = "tensor_max",
    seed: int,
):
    """The paper's "ours-w-data" ablation (Section 4.3): Algorithm 2 with the per-class Fisher
    computed from ``n_per_class`` real training images of each class (all of them when ``None``)
    instead of one code; the ± choice is scored on the same images. Needs the forget set and the
    retain set (access ``"forget+retain"``); the model need not have been trained with codes.
    """
    lambda1, lambda2 = _check_lambda("lambda1", lambda1), _check_lambda("lambda2", lambda2)
    if n_per_class is not None and (
        isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1
    ):
        raise ValueError(
            f"n_per_class must be a positive integer or None (all samples), got {n_per_class!r}."
        )
    forget, retain = _classes(task)
    xf, yf = task.forget_set()
    if n_per_class is None:
        xr, yr = task.retain_set()
    else:
        xr, yr = task.retain_subset(n_per_class=n_per_class, seed=seed)
        keep = stratified_indices(yf, n_per_class=n_per_class, seed=seed).to(xf.device)
        xf, yf = xf[keep], yf[keep]
    x, y = torch.cat([xf, xr]), torch.cat([yf, yr])
    n_planned = None if n_per_class is None else n_per_class * task.num_classes
    with budget.sampled(len(x), n_planned, model):  # a sample's planned size (unlearnkit.budget)
        info = _one_shot(model, x, y, x, y, forget, retain, lambda1, lambda2, posinf)
    return report(model, **info, fisher_from="data", n_per_class=n_per_class)
