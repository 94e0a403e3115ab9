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

import hashlib
import math
import time
from typing import Sequence

import torch
import torch.nn as nn

from ..data import stratified_indices
from ..fisher import diag_fisher
from ..models import Normalize, check_finite
from ..training import check_inputs, predict
from ._registry import register, report

CODE_DISTRIBUTIONS = ("normal", "uniform")
POSINF_RULES = ("tensor_max", "dtype_max")


# ----------------------------------------------------------------------------- codes (Algorithm 1)


def _normalisation(model_or_data, shape):
    """(mean, std) broadcastable to ``(K, *shape)`` from a model's Normalize layer or a dataset."""
    mean = std = None
    if isinstance(model_or_data, nn.Module):
        norm = next((m for m in model_or_data.modules() if isinstance(m, Normalize)), None)
        if norm is not None:
            mean, std = norm.mean.detach().cpu(), norm.std.detach().cpu()
    elif model_or_data is not None:
        if getattr(model_or_data, "mean", None) is not None:
            mean = torch.as_tensor(model_or_data.mean, dtype=torch.float32)
        if getattr(model_or_data, "std", None) is not None:
            std = torch.as_tensor(model_or_data.std, dtype=torch.float32)

    def shaped(v, default):
        if v is None:
            return torch.tensor(default)
        v = v.float().flatten()
        if len(shape) == 3 and v.numel() == shape[0]:
            return v.view(1, -1, 1, 1)
        if v.numel() == 1:
            return v.reshape(())
        if len(shape) == 1 and v.numel() == shape[0]:
            return v.view(1, -1)
        return torch.tensor(default)

    return shaped(mean, 0.0), shaped(std, 1.0)


def mnemonic_codes(
    data=None,
    *,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    distribution: str = "normal",
    space: str = "model",
    device=None,
) -> torch.Tensor:
    """One random code per class (Algorithm 1, line 1), shaped ``(num_classes, *input_shape)``.

    ``data`` is a :class:`~unlearnkit.data.Dataset` or a model built by unlearnkit (its
    normalisation is used); or give ``num_classes`` and ``input_shape``. The codes are a
    function of ``seed`` alone (drawn on the CPU), so the same seed gives the same codes on
    every machine. ``distribution``: ``"normal"`` (ξ ~ N(0, 1), the paper) or ``"uniform"``
    (ξ ~ U[0, 1), the authors' code). ``space="model"`` (default) draws ξ in the normalised
    space the network's first layer sees and returns ``ξ · std + mean`` (pixel space, what the
    model takes); ``space="input"`` returns ξ itself as the pixel-space input.
    """
    if distribution not in CODE_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {CODE_DISTRIBUTIONS}, got {distribution!r}.")
    if space not in ("model", "input"):
        raise ValueError(f"space must be 'model' or 'input', got {space!r}.")
    if isinstance(data, nn.Module):
        arch = getattr(data, "arch", None) or {}
        num_classes = num_classes or arch.get("num_classes")
        input_shape = input_shape or arch.get("in_shape")
        device = device or next(data.parameters()).device
    elif data is not None:
        num_classes = num_classes or data.num_classes
        input_shape = input_shape or data.input_shape
        device = device or data.x_train.device
    if num_classes is None or input_shape is None:
        raise ValueError(
            "mnemonic_codes needs a dataset, a model built by unlearnkit, or both "
            "num_classes and input_shape."
        )
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    shape = tuple(int(s) for s in input_shape)
    g = torch.Generator().manual_seed(int(seed))
    size = (int(num_classes), *shape)
    xi = torch.randn(size, generator=g) if distribution == "normal" else torch.rand(size, generator=g)
    if space == "model":
        mean, std = _normalisation(data, shape)
        xi = xi * std + mean
    return xi.to(device) if device is not None else xi


def codes_fingerprint(codes: torch.Tensor) -> str:
    """A short hash of the code values (part of the zoo key of a model trained with them)."""
    return hashlib.sha256(codes.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:12]


def _check_t_mix(t_mix) -> float:
    if isinstance(t_mix, bool) or not isinstance(t_mix, (int, float)) or not 0.0 <= t_mix <= 1.0:
        raise ValueError(
            f"t_mix is the probability of replacing a sample by its class code (Eq. 1): a "
            f"number in [0, 1], got {t_mix!r}. The paper uses 0.1 (MNIST) and 0.3 (CIFAR-10)."
        )
    return float(t_mix)


def mnemonic_hook(codes: torch.Tensor, t_mix: float = 0.1, seed: int = 0):
    """The batch hook of Algorithm 1 (lines 4–9) for :func:`unlearnkit.fit` / ``train_or_load``.

    Each sample of a batch is replaced, with probability ``t_mix``, by the code of its own class;
    its label is kept. The replacement draws depend only on ``(seed, epoch, step)``, so a run is
    reproducible and the hook can be reused. The hook carries a ``tag`` naming it for the zoo.
    """
    t_mix = _check_t_mix(t_mix)
    if not torch.is_tensor(codes) or codes.dim() < 2:
        raise ValueError(
            "codes must be a tensor shaped (num_classes, *input_shape), e.g. from "
            "uk.methods.mnemonic_codes(data)."
        )
    codes = codes.detach()

    def hook(xb, yb, epoch, step):
        if tuple(xb.shape[1:]) != tuple(codes.shape[1:]):
            raise ValueError(
                f"Mnemonic codes are shaped {tuple(codes.shape[1:])} but the batch has inputs "
                f"shaped {tuple(xb.shape[1:])}: draw the codes for this dataset."
            )
        if int(yb.max()) >= len(codes):
            raise ValueError(f"A label {int(yb.max())} has no code: only {len(codes)} codes were given.")
        if t_mix == 0.0:
            return xb, yb
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 100_003 + int(step))
        swap = (torch.rand(len(yb), generator=g) < t_mix).to(xb.device)
        c = codes.to(xb.device, xb.dtype)[yb]
        mask = swap.view(-1, *([1] * (xb.dim() - 1)))
        return torch.where(mask, c, xb), yb

    hook.tag = f"mnemonic(t_mix={t_mix:g},seed={int(seed)},codes={codes_fingerprint(codes)})"
    hook.codes, hook.t_mix = codes, t_mix
    return hook


def train_with_codes(
    task_or_data,
    codes: torch.Tensor | None = None,
    t_mix: float = 0.1,
    *,
    code_seed: int = 0,
    distribution: str = "normal",
    which: str = "original",
    **train_kwargs,
) -> nn.Module:
    """Train (or load from the zoo) a model with mnemonic codes (Algorithm 1).

    A thin wrapper of :func:`unlearnkit.train_or_load` with :func:`mnemonic_hook`; the codes are
    drawn with :func:`mnemonic_codes` unless given, and are attached to the returned model as
    ``model.mnemonic_codes`` (with ``model.mnemonic_t_mix``), which :func:`mnemonic` reads.
    """
    from ..tasks import as_task
    from ..zoo import train_or_load

    data = task_or_data if not hasattr(task_or_data, "forget_idx") else as_task(task_or_data).data
    if codes is None:
        codes = mnemonic_codes(data, seed=code_seed, distribution=distribution)
    _check_codes(codes, data.num_classes, data.input_shape)
    hook = mnemonic_hook(codes, t_mix, seed=train_kwargs.get("seed", 0))
    model = train_or_load(task_or_data, which, hook=hook, tag=hook.tag, **train_kwargs)
    model.mnemonic_codes = codes.detach().to(next(model.parameters()).device)
    model.mnemonic_t_mix = float(t_mix)
    return model


# ----------------------------------------------------------------------------- checks


def _check_codes(codes, num_classes: int, input_shape) -> None:
    if not torch.is_tensor(codes):
        raise TypeError(
            f"codes must be a tensor shaped (num_classes, *input_shape), got {type(codes).__name__}."
        )
    want = (int(num_classes), *(int(s) for s in input_shape))
    if tuple(codes.shape) != want:
        raise ValueError(
            f"The mnemonic codes are shaped {tuple(codes.shape)}, but this task needs one code "
            f"per class shaped like an input: {want}."
        )
    if not torch.is_floating_point(codes) or not torch.isfinite(codes).all():
        raise ValueError("The mnemonic codes must be finite floating-point tensors.")


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
    info = _one_shot(model, x, y, x, y, forget, retain, lambda1, lambda2, posinf)
    return report(model, **info, fisher_from="data", n_per_class=n_per_class)
