"""Mnemonic codes (Algorithm 1 of Yamashita et al., ACML 2023): one fixed random signal per class,
mixed into training with probability ``t_mix``.

:func:`mnemonic_codes` draws the codes, :func:`mnemonic_hook` is the batch hook for
:func:`unlearnkit.fit` and :func:`train_with_codes` trains (or loads from the zoo) such a model.
Part of :mod:`unlearnkit.methods.mnemonic`, whose docstring says where the codes live and why;
explained in ``book/02_mnemonic_codes.ipynb``.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
import torch.nn as nn

from ..models import Normalize

CODE_DISTRIBUTIONS = ("normal", "uniform")


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
    from ..access import as_task
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
