"""One descent loop for training and for every gradient-based unlearning method.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``); the batch hook is
used by the mnemonic-code chapter.

* :func:`descend` takes gradient steps on ``loss_fn(model, *batch)`` over mini-batches: the
  optimiser and schedule, progress bar, step cap (two steps in a dry run), early stop and the
  divergence check (:class:`DivergedError`) live here once. Every method that takes gradient
  steps (finetune, NegGrad, random labels, boundary shrinking, JiT, relabelling, ...) runs
  through it.
* :func:`fit` is :func:`descend` with cross-entropy on labelled data, augmentation and a hook.
* Batches are sliced from device-resident tensors (:func:`batches`, no DataLoader), and
  augmentation runs batched on the device (:func:`augment`).
* Mixed precision (bf16 autocast, channels-last on CUDA) is for *training* only:
  :func:`predict`, :func:`accuracy` and every metric run in float32 on every device.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import budget, profiles


class DivergedError(ValueError):
    """An unlearning method (or training) produced non-finite weights or losses.

    ``method`` names who diverged and ``step`` the first step with a non-finite loss (or
    ``None`` when only the final weights were checked). A subclass of ``ValueError`` so that
    callers written for the old error keep working.
    """

    def __init__(self, message: str, method: str = "", step: int | None = None):
        super().__init__(message)
        self.method, self.step = method, step


@dataclass
class History:
    loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    eval_acc: list = field(default_factory=list)
    seconds: float = 0.0
    epochs: int = 0
    steps: int = 0
    stopped_early: bool = False


# ----------------------------------------------------------------------------- batches


def batches(
    *tensors: torch.Tensor,
    batch_size: int = 128,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
):
    """Yield aligned mini-batches of device-resident tensors (no DataLoader, no copies to the host)."""
    n = len(tensors[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    order = torch.randperm(n, generator=generator, device="cpu").to(tensors[0].device) if shuffle else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        if order is None:
            yield tuple(t[i : i + batch_size] for t in tensors)
        else:
            j = order[i : i + batch_size]
            yield tuple(t[j] for t in tensors)


#: One training recipe for the CIFAR ResNet-18 that a reader's GPU can afford: 15 epochs of
#: one-cycle SGD (peak 0.2, momentum 0.9, weight decay 5e-4) on batches of 512 with label
#: smoothing 0.1, random crops and flips, bf16 on a GPU that has it, test accuracy every 5
#: epochs. About 15 ResNet-18 epoch-equivalents per model (:mod:`unlearnkit.budget`). The
#: chapters' ``full`` profiles train their originals and retrained models with it wherever the
#: comparison does not need a paper's own schedule, so one zoo serves the whole book. Its
#: accuracy target (≥ 93 % on CIFAR-10, 92 % on the JPEG copy) is checked by
#: ``tests/bench_fit.py --recipe`` on a GPU. Explained in the introduction ("What a chapter costs").
FAST_RESNET18 = dict(
    model="resnet18",
    model_kwargs={},
    epochs=15,
    lr=0.2,
    batch_size=512,
    schedule="onecycle",
    weight_decay=5e-4,
    label_smoothing=0.1,
    eval_every=5,
)


def train_batch_size(batch_size: int) -> int:
    """``batch_size`` for training, or at most ``DRY_RUN_BATCH`` in a dry run (a dry run checks
    the code path, not the numbers: a ResNet step on 256 images takes seconds on a CPU).
    Every method that builds its own training batches for :func:`descend` goes through this."""
    if not profiles.active().dry_run:
        return batch_size
    capped = min(batch_size, profiles.DRY_RUN_BATCH)
    budget.note_batch_cap(batch_size, capped)  # the next training loop counts at the planned batch
    return capped


def augment(
    x: torch.Tensor, pad: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip for a whole batch, on its device."""
    if x.dim() != 4:
        return x
    n, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(dev)
        rows = dy[:, None] + torch.arange(h, device=dev)[None]
        cols = dx[:, None] + torch.arange(w, device=dev)[None]
        x = xp[
            torch.arange(n, device=dev)[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    if flip:
        m = (torch.rand(n, generator=generator) < 0.5).to(dev)
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    return x


# ----------------------------------------------------------------------------- checks and evaluation


def check_inputs(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a clear error when ``x`` does not have the shape the model was built for."""
    arch = getattr(model, "arch", None)
    if arch is not None and tuple(x.shape[1:]) != tuple(arch["in_shape"]):
        raise ValueError(
            f"Input shape {tuple(x.shape[1:])} does not match the model's input shape "
            f"{tuple(arch['in_shape'])}: was the model built for another dataset?"
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"Inputs must be floating point in [0, 1], got {x.dtype}.")


def _device(model):
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits for all of ``x``, in eval mode, batched, in float32 on every device."""
    check_inputs(model, x)
    was = model.training
    model.eval()
    dev = _device(model)
    out = [model(xb.to(dev)).float() for (xb,) in batches(x, batch_size=batch_size)]
    model.train(was)
    if not out:
        return torch.empty(0, getattr(model, "arch", {}).get("num_classes", 0), device=dev)
    return torch.cat(out)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent; NaN for an empty set."""
    if len(x) == 0:
        return float("nan")
    return 100.0 * (predict(model, x, batch_size).argmax(1) == y.to(_device(model))).float().mean().item()


# ----------------------------------------------------------------------------- optimiser and schedule


def make_optimizer(
    params, optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4
):
    opt = str(optimizer).lower()
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0 or not math.isfinite(lr):
        raise ValueError(f"The learning rate must be a positive number, got {lr!r}.")
    if opt == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if opt == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if opt == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {optimizer!r}: choose sgd, adam or adamw.")


def make_schedule(
    opt,
    schedule: str,
    total_steps: int,
    steps_per_epoch: int,
    lr: float,
    milestones=(0.5, 0.75),
    gamma: float = 0.1,
):
    s = (schedule or "constant").lower()
    if s == "constant":
        return None
    if s == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    if s == "step":
        ms = [int(m * total_steps) if m < 1 else int(m) * steps_per_epoch for m in milestones]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=ms, gamma=gamma)
    if s == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=max(1, total_steps), pct_start=0.25, anneal_strategy="linear"
        )
    raise ValueError(f"Unknown schedule {schedule!r}: choose constant, cosine, step or onecycle.")


def _autocast(device: torch.device, amp: bool | None):
    use = device.type == "cuda" if amp is None else bool(amp)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use and device.type == "cuda")


def _non_finite_weights(model: nn.Module) -> list[str]:
    """Names of the parameters and floating-point buffers (batch-norm statistics) that hold a
    NaN or an infinity: either makes the model's outputs NaN."""
    tensors = list(model.named_parameters()) + [
        (n, b) for n, b in model.named_buffers() if b.is_floating_point()
    ]
    return [n for n, t in tensors if not torch.isfinite(t).all()]


def check_outputs(model: nn.Module, input_shape, method: str, hint: str = "") -> None:
    """Raise :class:`DivergedError` when ``model`` gives non-finite outputs on probe inputs.

    Finite weights can still overflow in a forward pass (e.g. huge weights times a huge
    activation). Two probe images of ``input_shape`` (all 0.5, and a fixed random one in
    [0, 1]) go through the model in eval mode.
    """
    if input_shape is None:
        return
    dev = next(iter(model.parameters())).device
    g = torch.Generator().manual_seed(0)
    probe = torch.stack([torch.full(tuple(input_shape), 0.5), torch.rand(tuple(input_shape), generator=g)])
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(probe.to(dev)).float()
    model.train(was)
    if not torch.isfinite(out).all():
        raise DivergedError(
            f"{method} diverged: its weights are finite but its outputs are NaN or "
            f"infinite.{' ' + hint if hint else ''}",
            method=method,
        )


def check_diverged(model: nn.Module, method: str, step: int | None = None, hint: str = "") -> None:
    """Raise :class:`DivergedError` when any weight (or batch-norm statistic) is NaN or infinite."""
    bad = _non_finite_weights(model)
    if bad:
        where = f" at step {step}" if step is not None else ""
        raise DivergedError(
            f"{method} diverged{where}: the weights {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''} became NaN or infinite."
            f"{' ' + hint if hint else ''}",
            method=method,
            step=step,
        )


# ----------------------------------------------------------------------------- the loop


def _batch_len(batch) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return int(len(first)) if torch.is_tensor(first) else 1


class _Plan:
    """What a training loop capped by a dry run would have run (:mod:`unlearnkit.budget`):
    ``min(epochs × images per epoch × data factor, max_steps × planned batch)`` images through
    its steps, and the evaluations inside (stopping rule, ``on_epoch``) once per planned epoch.
    The loop counts its steps and its evaluations apart and scales each at the end."""

    def __init__(self, model, epochs: int, max_steps: int | None):
        self.data = budget.data_factor(model)
        self.epochs, self.max_steps = epochs, max_steps
        self.steps, self.checks, self.evals = budget.Frame(), budget.Frame(), budget.Frame()
        self.step_images, self.first_batch, self.epoch_images, self.epochs_run = 0, 0, None, 0

    def step(self, batch):
        n = _batch_len(batch)
        self.step_images += n
        self.first_batch = self.first_batch or n
        return budget.into(self.steps, data=1.0)  # the planned images already hold the data factor

    def check(self):
        """The stopping rule, asked every few steps: counts once per planned step."""
        return budget.into(self.checks)

    def eval(self):
        """``on_epoch``: counts once per planned epoch."""
        return budget.into(self.evals)

    def end_epoch(self, seen: int, rest) -> None:
        """After an epoch that saw ``seen`` images; ``rest`` iterates what the cap left of it."""
        self.epochs_run += 1
        if self.epoch_images is None:
            with budget.quiet():
                seen += sum(_batch_len(b) for b in rest)
            self.epoch_images = seen

    def commit(self) -> None:
        if not self.step_images:
            for f in (self.steps, self.checks, self.evals):
                budget.commit(f, 1.0)
            return
        per_epoch = max(self.epoch_images or self.step_images, 1) * self.data
        batch = self.first_batch * budget.batch_ratio(self.first_batch)  # the planned batch
        planned = self.epochs * per_epoch
        if self.max_steps is not None:
            planned = min(planned, self.max_steps * batch)
        steps_run = self.step_images / max(1, self.first_batch)
        budget.commit(self.steps, planned / self.step_images)
        budget.commit(self.checks, planned / batch / max(1.0, steps_run))
        budget.commit(self.evals, planned / per_epoch / max(1, self.epochs_run))


@dataclass
class _Run:
    """The state of one :func:`descend` call: optimiser, schedule, counters, divergence tracker."""

    opt: torch.optim.Optimizer
    sched: object
    total: int | None
    max_steps: int | None
    first_bad: torch.Tensor
    step: int = 0

    def full(self) -> bool:
        return self.max_steps is not None and self.step >= self.max_steps

    def record(self, loss: torch.Tensor) -> None:
        """Remember the first step whose loss is not finite, without a device sync."""
        bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, self.step), self.first_bad)
        self.step += 1


def _start(
    model, params, optimizer, lr, momentum, weight_decay, schedule, epochs, steps_per_epoch, max_steps
) -> _Run:
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    max_steps = profiles.active().cap(max_steps)
    total = epochs * steps_per_epoch if steps_per_epoch else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    sched = (
        None
        if schedule == "constant"
        else make_schedule(opt, schedule, total or max(1, epochs), steps_per_epoch or 1, lr)
    )
    dev = _device(model)
    return _Run(opt, sched, total, max_steps, torch.full((), -1, dtype=torch.long, device=dev))


def _step(run: _Run, model, loss_fn, batch, amp, clip_grad) -> torch.Tensor:
    """One optimiser step on ``loss_fn(model, *batch)``; returns the detached loss."""
    with _autocast(_device(model), amp):
        loss = loss_fn(model, *batch)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad:
        nn.utils.clip_grad_norm_([p for g in run.opt.param_groups for p in g["params"]], clip_grad)
    run.opt.step()
    if run.sched is not None and (run.total is None or run.step < run.total):
        run.sched.step()
    loss = loss.detach().float()
    run.record(loss)
    return loss


def descend(
    model: nn.Module,
    data: Callable[[int], Iterable] | Iterable,
    loss_fn: Callable,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    steps_per_epoch: int | None = None,
    max_steps: int | None = None,
    stop: Callable[[nn.Module], bool] | None = None,
    stop_every: int = 1,
    clip_grad: float | None = None,
    amp: bool | None = False,
    params=None,
    train_mode: bool = True,
    progress: bool | None = None,
    desc: str = "descend",
    hint: str = "lower the learning rate",
    on_epoch: Callable | None = None,
) -> History:
    """Take gradient steps on ``loss_fn(model, *batch)`` and return a :class:`History`.

    ``data`` is either a callable ``epoch -> iterable of batches`` (fresh shuffling each epoch)
    or a re-iterable of batches (tuples of tensors). ``loss_fn`` returns a scalar loss tensor.
    ``max_steps`` caps the total number of steps (a dry run caps it at two); ``stop(model)``,
    evaluated every ``stop_every`` steps, ends the loop early when it returns ``True``. A loss
    or weight that becomes NaN or infinite raises :class:`DivergedError` naming ``desc`` and
    the first bad step. ``train_mode=False`` keeps the model in eval mode (frozen batch norm).
    ``on_epoch(epoch, mean_loss)`` is called after each epoch. Mixed precision only with
    ``amp=True`` (or ``None``: on CUDA).
    """
    from tqdm.auto import tqdm

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}.")
    plan = _Plan(model, epochs, max_steps) if profiles.active().dry_run else None
    nothing = contextlib.nullcontext()
    run = _start(
        model, params, optimizer, lr, momentum, weight_decay, schedule, epochs, steps_per_epoch, max_steps
    )
    hist, t0 = History(), time.perf_counter()
    bar = tqdm(
        total=run.total,
        desc=desc,
        leave=False,
        disable=not (profiles.progress_default() if progress is None else progress),
    )
    with bar:
        for epoch in range(epochs):
            model.train(train_mode)
            losses, seen = [], 0
            batches_ = iter(data(epoch) if callable(data) else data)
            for batch in batches_:
                seen += _batch_len(batch)
                if run.full():
                    break
                with plan.step(batch) if plan else nothing:
                    losses.append(_step(run, model, loss_fn, batch, amp, clip_grad))
                bar.update(1)
                if stop is not None and run.step % stop_every == 0:
                    with plan.check() if plan else nothing:
                        done = stop(model)
                    if done:
                        hist.stopped_early = True
                        break
            if plan:
                plan.end_epoch(seen, batches_)
            hist.loss.append(float(torch.stack(losses).mean()) if losses else float("nan"))
            hist.epochs = epoch + 1
            if int(run.first_bad) >= 0:
                raise DivergedError(
                    f"{desc} diverged at step {int(run.first_bad)} (epoch {epoch}): the loss "
                    f"became NaN or infinite; {hint} (now {lr}).",
                    method=desc,
                    step=int(run.first_bad),
                )
            if on_epoch is not None:
                with plan.eval() if plan else nothing:
                    on_epoch(epoch, hist.loss[-1])
            bar.set_postfix(loss=f"{hist.loss[-1]:.3f}")
            if hist.stopped_early or run.full():
                break
    if plan:
        plan.commit()
    check_diverged(model, desc, run.step, hint=hint[0].upper() + hint[1:] + ".")
    if _device(model).type == "cuda":
        torch.cuda.synchronize(_device(model))
    hist.seconds, hist.steps = time.perf_counter() - t0, run.step
    return hist


def _shuffled(x, y, batch_size, gen, augment_on, hook):
    """The batch source of :func:`fit`: shuffled, augmented, hooked."""

    def epoch_batches(epoch):
        for step, (xb, yb) in enumerate(batches(x, y, batch_size=batch_size, shuffle=True, generator=gen)):
            if augment_on:
                xb = augment(xb, generator=gen)
            if hook is not None:
                xb, yb = hook(xb, yb, epoch, step)
            yield xb, yb

    return epoch_batches


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 0.1,
    augment: bool = False,
    label_smoothing: float = 0.0,
    hook: Callable | None = None,
    eval_data=None,
    eval_every: int = 1,
    channels_last: bool | None = None,
    seed: int | None = None,
    desc: str = "fit",
    **loop,
) -> History:
    """Train ``model`` in place with cross-entropy on ``(x, y)``; returns a :class:`History`.

    ``hook(xb, yb, epoch, step) -> (xb, yb)`` may rewrite each batch before the forward pass
    (the mnemonic-code chapter replaces samples by class codes there). ``eval_data=(x, y)``
    records test accuracy after every ``eval_every``-th epoch and after the last one. ``loop``
    goes to :func:`descend` (optimizer, momentum, weight_decay (default 5e-4), schedule (default
    cosine), clip_grad, amp, progress, max_steps, stop, ...).
    """
    if len(x) == 0:
        raise ValueError("Cannot train on an empty set.")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(
            f"eval_every must be an integer >= 1 (epochs between test evaluations), got {eval_every!r}."
        )
    check_inputs(model, x)
    batch_size = train_batch_size(batch_size)
    dev = _device(model)
    x, y = x.to(dev), y.to(dev)
    channels_last = dev.type == "cuda" and x.dim() == 4 if channels_last is None else channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    correct = [0, 0]

    def ce(m, xb, yb):
        xb = xb.contiguous(memory_format=torch.channels_last) if channels_last else xb
        out = m(xb)
        correct[0] += (out.argmax(1) == yb).sum()
        correct[1] += len(yb)
        return F.cross_entropy(out.float(), yb, label_smoothing=label_smoothing)

    hist = History()
    dry = profiles.active().dry_run
    n_evals = sum((e + 1) % eval_every == 0 or e + 1 == epochs for e in range(epochs))

    def on_epoch(epoch, loss):
        hist.train_acc.append(100.0 * float(correct[0]) / max(correct[1], 1))
        correct[:] = [0, 0]
        if eval_data is None:
            return
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            hist.eval_acc.append(accuracy(model, *eval_data))
        elif dry and epoch == 0:  # a dry run stops in its first epoch: one evaluation stands for all
            with budget.loop(n_evals / epochs):
                hist.eval_acc.append(accuracy(model, *eval_data))

    loop.setdefault("momentum", 0.9)
    loop.setdefault("weight_decay", 5e-4)
    loop.setdefault("schedule", "cosine")
    loop.setdefault("amp", None)
    loop.setdefault("hint", "lower the learning rate")
    h = descend(
        model,
        _shuffled(x, y, batch_size, gen, augment, hook),
        ce,
        epochs=epochs,
        lr=lr,
        steps_per_epoch=max(1, math.ceil(len(x) / batch_size)),
        desc=desc,
        on_epoch=on_epoch,
        **loop,
    )
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    h.train_acc, h.eval_acc = hist.train_acc, hist.eval_acc
    return h
