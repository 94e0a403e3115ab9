"""One fast training loop, ``fit``, and batched prediction.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``); the batch
hook is used by the mnemonic-code chapter.

Batches are sliced from device-resident tensors (no DataLoader, no host copies),
augmentation runs batched on the device, and on CUDA the forward pass runs under
bf16 autocast with channels-last memory.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import augment as _augment
from .data import batches


@dataclass
class History:
    loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    eval_acc: list = field(default_factory=list)
    seconds: float = 0.0
    epochs: int = 0


def check_inputs(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a clear error when ``x`` does not have the shape the model was built for."""
    arch = getattr(model, "arch", None)
    if arch is not None and tuple(x.shape[1:]) != tuple(arch["in_shape"]):
        raise ValueError(f"Input shape {tuple(x.shape[1:])} does not match the model's input shape "
                         f"{tuple(arch['in_shape'])}: was the model built for another dataset?")
    if not torch.is_floating_point(x):
        raise TypeError(f"Inputs must be floating point in [0, 1], got {x.dtype}.")


def _device(model):
    return next(model.parameters()).device


def _autocast(device, amp):
    use = (device.type == "cuda") if amp is None else amp
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(use and device.type == "cuda"))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024, amp: bool | None = None) -> torch.Tensor:
    """Logits (float32) for all of ``x``, in eval mode, batched."""
    check_inputs(model, x)
    was = model.training
    model.eval()
    dev = _device(model)
    out = []
    with _autocast(dev, amp):
        for (xb,) in batches(x, batch_size=batch_size):
            out.append(model(xb.to(dev)).float())
    model.train(was)
    if not out:
        return torch.empty(0, getattr(model, "arch", {}).get("num_classes", 0), device=dev)
    return torch.cat(out)


def make_optimizer(params, optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 5e-4):
    opt = optimizer.lower()
    if lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"The learning rate must be a positive number, got {lr}.")
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {optimizer!r}: choose sgd, adam or adamw.")


def make_schedule(opt, schedule: str, total_steps: int, steps_per_epoch: int, lr: float,
                  milestones=(0.5, 0.75), gamma: float = 0.1):
    s = (schedule or "constant").lower()
    if s == "constant":
        return None
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    if s == "step":
        ms = [int(m * total_steps) if m < 1 else int(m) * steps_per_epoch for m in milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=gamma)
    if s == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, total_steps),
                                                   pct_start=0.25, anneal_strategy="linear")
    raise ValueError(f"Unknown schedule {schedule!r}: choose constant, cosine, step or onecycle.")


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10, batch_size: int = 128,
        lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
        schedule: str = "cosine", milestones=(0.5, 0.75), gamma: float = 0.1, augment: bool = False,
        label_smoothing: float = 0.0, hook: Callable | None = None, eval_data=None, amp: bool | None = None,
        channels_last: bool | None = None, clip_grad: float | None = None, progress: bool | None = None,
        seed: int | None = None, desc: str = "fit") -> History:
    """Train ``model`` in place with cross-entropy; returns a :class:`History`.

    ``hook(xb, yb, epoch, step) -> (xb, yb)`` may rewrite each batch before the forward
    pass (the mnemonic-code chapter replaces samples by class codes there).
    ``eval_data=(x, y)`` records test accuracy after each epoch.
    """
    from tqdm.auto import tqdm

    if progress is None:
        progress = os.environ.get("UNLEARNKIT_PROGRESS", "1") not in ("0", "false", "no")

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}.")
    if len(x) == 0:
        raise ValueError("Cannot train on an empty set.")
    check_inputs(model, x)
    dev = _device(model)
    x, y = x.to(dev), y.to(dev)
    if channels_last is None:
        channels_last = dev.type == "cuda" and x.dim() == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], optimizer, lr, momentum, weight_decay)
    steps_per_epoch = max(1, math.ceil(len(x) / batch_size))
    sched = make_schedule(opt, schedule, epochs * steps_per_epoch, steps_per_epoch, lr, milestones, gamma)
    hist = History()
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        tot_loss = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        seen = 0
        for step, (xb, yb) in enumerate(batches(x, y, batch_size=batch_size, shuffle=True, generator=gen)):
            if augment:
                xb = _augment(xb, generator=gen)
            if hook is not None:
                xb, yb = hook(xb, yb, epoch, step)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                out = model(xb)
                loss = F.cross_entropy(out.float(), yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            opt.step()
            if sched is not None:
                sched.step()
            tot_loss += loss.detach() * len(yb)
            correct += (out.argmax(1) == yb).sum()
            seen += len(yb)
        hist.loss.append(float(tot_loss) / seen)
        hist.train_acc.append(100.0 * float(correct) / seen)
        if not math.isfinite(hist.loss[-1]):
            raise FloatingPointError(f"Training diverged at epoch {epoch} (loss {hist.loss[-1]}): "
                                     f"lower the learning rate (now {lr}).")
        if eval_data is not None:
            hist.eval_acc.append(accuracy(model, *eval_data))
            bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", test=f"{hist.eval_acc[-1]:.1f}")
        else:
            bar.set_postfix(loss=f"{hist.loss[-1]:.3f}")
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    hist.seconds = time.perf_counter() - t0
    hist.epochs = epochs
    model.eval()
    return hist


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent; NaN for an empty set."""
    if len(x) == 0:
        return float("nan")
    return 100.0 * (predict(model, x, batch_size).argmax(1) == y.to(_device(model))).float().mean().item()
