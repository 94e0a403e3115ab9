"""UNSIR: unlearning by selective impair and repair with error-maximising noise.

Tarun, Chundawat, Mandal, Kankanhalli, *Fast Yet Effective Machine Unlearning* (IEEE TNNLS
2023). Explained in ``book/03_unsir_impair_repair.ipynb``.

The method never reads a forget image ("zero-glance"); it knows only *which* classes to forget
and keeps a small class-balanced subset of the retain data, D_r_sub:

1. **Error-maximising noise (Eq. 1).** For each forget class ``c`` one batch of noise ``N_c``,
   initialised from N(0, 1), is optimised with the model frozen to *maximise* the model's
   cross-entropy for label ``c``, with an L2 penalty that keeps the noise small::

       N_c = argmin_N  −CE(f(N), c) + λ · (1/B) Σ_b ‖N_b‖²     (Eq. 1, λ = 0.1)

   (:func:`error_maximizing_noise`; Adam, lr 0.1, 40 steps, batches of 256 as the authors ran it).
   The penalty is the authors' notebook's: each noise image's squared values summed over its
   pixels, then averaged over the batch of B images (not a mean over every pixel, which would be
   C·H·W times weaker: 64× on digits, 3072× on CIFAR).
2. **Impair.** One epoch on D_r_sub ∪ {(N_c, c)} at a high learning rate (Adam 0.02, batch 256):
   training the model to call anti-samples of ``c`` "c" destroys the weights that recognise
   ``c``. The authors repeat each noise batch 20 times in the impair set (:func:`impair_set`).
3. **Repair.** One epoch on D_r_sub alone at a lower learning rate (Adam 0.01) heals the
   retained classes.

Choices where the paper is silent, following the authors' code (stated in the chapter):

* **Where the noise lives.** unlearnkit models take ``[0, 1]`` pixels and normalise inside their
  first layer. As for mnemonic codes (:mod:`.mnemonic`), the noise is a tensor ``z`` in the
  *normalised* space the first layer sees: it starts as N(0, 1) there and λ·mean_b ‖z_b‖² penalises
  it there (the authors feed noise to the network after the images' normalisation). It is
  returned in the model's pixel input space, ``z · std + mean``, so ``model(noise)`` sees ``z``.
  It is not clipped to ``[0, 1]``: it is not an image. The same code runs for 8×8 grey digits
  and 32×32 colour CIFAR: the shape comes from ``model.arch["in_shape"]``.
* **Labels.** Every noise batch carries its *own* forget class. The authors' notebook labels
  every noise sample class 0, which is harmless for the paper's class-0 experiment and breaks
  multi-class forgetting; ``noise_label=0`` reproduces that bug on purpose (the chapter's
  exercise), the default ``None`` is the method of the paper.
* **The frozen model.** The noise is optimised with the model in eval mode (batch-norm running
  statistics untouched) and its weights' gradients switched off. The authors' notebook leaves the
  model in train mode, so their batch-norm layers normalise with the noise batch's statistics and
  update their running statistics on the noise: a deviation the chapter states.

All gradient steps, the noise's included, run through :func:`unlearnkit.training.descend`
(``params=[noise]`` for Eq. 1), so a dry run caps each at two steps.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import budget, validate
from ..training import accuracy, batches, descend, train_batch_size
from ._registry import register, report, seed_or_active
from .codes import _normalisation


def _in_shape(model: nn.Module, input_shape=None) -> tuple:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    arch = getattr(model, "arch", None)
    if not arch or "in_shape" not in arch:
        raise ValueError(
            "error_maximizing_noise needs a model built by unlearnkit (it reads model.arch) "
            "or input_shape=(C, H, W)."
        )
    return tuple(int(s) for s in arch["in_shape"])


def _classes(classes, num_classes: int | None) -> list[int]:
    if isinstance(classes, (int,)) and not isinstance(classes, bool):
        classes = [classes]
    try:
        out = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise ValueError(f"classes must be a list of class ids, got {classes!r}.") from None
    if any(isinstance(c, bool) for c in classes):
        raise ValueError(f"A class is an integer id, got {classes!r}.")
    if not out:
        raise ValueError("UNSIR needs at least one class to forget (the noise is learned per forget class).")
    if len(set(out)) != len(out):
        raise ValueError(f"Repeated forget classes: {out}.")
    if num_classes is not None and any(c < 0 or c >= num_classes for c in out):
        raise ValueError(f"Forget classes must lie in 0..{num_classes - 1}, got {out}.")
    return out


def noise_penalty(z: torch.Tensor) -> torch.Tensor:
    """The L2 term of Eq. 1 as the authors compute it: (1/B) Σ_b ‖z_b‖², each image's squares summed
    over its pixels, then averaged over the batch."""
    return z.pow(2).flatten(1).sum(1).mean()


def error_maximizing_noise(
    model: nn.Module,
    classes: Sequence[int],
    *,
    batch_size: int = 256,
    steps: int = 40,
    lr: float = 0.1,
    lam: float = 0.1,
    seed: int | None = None,
    input_shape=None,
    return_loss: bool = False,
):
    """The error-maximising noise of Eq. 1: one batch per forget class, in pixel space.

    For each class ``c`` in ``classes`` a noise batch ``z`` of shape ``(batch_size, *in_shape)``
    is drawn from N(0, 1) in the normalised space the model's first layer sees, and ``steps``
    Adam steps (learning rate ``lr``) minimise ``−CE(f(z), c) + lam · mean_b Σ_pixels z_b²`` with the model
    frozen (eval mode, no weight gradients). Returns a tensor shaped
    ``(len(classes), batch_size, *in_shape)`` in the model's *pixel* input space
    (``z · std + mean``), on the model's device; with ``return_loss=True`` also a dict
    ``{class: (CE before, CE after)}`` of the model's mean cross-entropy on the noise.

    Authors' setting (CIFAR-10): batch 256, 40 steps, Adam lr 0.1, λ = 0.1. A dry run caps
    the steps at two and the batch at :data:`unlearnkit.profiles.DRY_RUN_BATCH` images.
    """
    validate.model("model", model)
    # the noise is a batch the model trains on (Eq. 1): a dry run caps it like every training batch
    batch_size = train_batch_size(validate.integer("batch_size", batch_size))
    steps = validate.integer("steps", steps, lo=0)
    validate.positive("lr", lr)
    lam = validate.non_negative("lam", lam, hint="λ weighs the L2 penalty of Eq. 1 (the paper uses 0.1).")
    k = (getattr(model, "arch", None) or {}).get("num_classes")
    classes = _classes(classes, k)
    shape = _in_shape(model, input_shape)
    dev = next(model.parameters()).device
    mean, std = (t.to(dev) for t in _normalisation(model, shape))
    g = torch.Generator().manual_seed(seed_or_active(seed))
    was_training = model.training
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    out, losses = [], {}
    try:
        model.eval()
        for c in classes:
            z = torch.randn((batch_size, *shape), generator=g).to(dev).requires_grad_(True)
            y = torch.full((batch_size,), c, dtype=torch.long, device=dev)

            def loss_fn(m, yb, z=z):
                return -F.cross_entropy(m(z * std + mean), yb) + lam * noise_penalty(z)

            with torch.no_grad():
                before = F.cross_entropy(model(z * std + mean), y).item()
            if steps > 0:
                descend(
                    model,
                    [(y,)] * steps,
                    loss_fn,
                    epochs=1,
                    lr=lr,
                    optimizer="adam",
                    weight_decay=0.0,
                    params=[z],
                    train_mode=False,
                    max_steps=steps,
                    progress=False,
                    desc=f"error-maximising noise (class {c})",
                    hint="lower the noise learning rate",
                )
            with torch.no_grad():
                after = F.cross_entropy(model(z * std + mean), y).item()
            losses[c] = (before, after)
            out.append((z.detach() * std + mean))
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(grads[n])
        model.train(was_training)
    noise = torch.stack(out)
    return (noise, losses) if return_loss else noise


def impair_set(
    noise: torch.Tensor,
    classes: Sequence[int],
    x_sub: torch.Tensor,
    y_sub: torch.Tensor,
    copies: int = 20,
    noise_label: int | None = None,
):
    """The impair step's training data: D_r_sub ∪ {(N_c, c)}, each noise batch repeated ``copies``
    times (the authors use 20) and labelled with *its own* class ``c``; ``copies=0`` gives the
    retain subset alone (an ablation: impair without noise).

    ``noise`` is shaped ``(len(classes), B, *in_shape)`` as :func:`error_maximizing_noise`
    returns it. ``noise_label=0`` labels every noise sample class 0, the bug of the authors'
    notebook (kept only to show its effect). Returns ``(x, y)``, unshuffled.
    """
    classes = _classes(classes, None)
    copies = validate.integer("copies", copies, lo=0)
    if noise.dim() < 3 or len(noise) != len(classes):
        raise ValueError(
            f"noise must be shaped (len(classes)={len(classes)}, batch, *in_shape), got {tuple(noise.shape)}."
        )
    xs, ys = [x_sub], [y_sub]
    for c, n in zip(classes, noise):
        label = c if noise_label is None else int(noise_label)
        xs.append(n.to(x_sub.device).repeat(copies, *([1] * (n.dim() - 1))))
        ys.append(torch.full((copies * len(n),), label, dtype=torch.long, device=y_sub.device))
    return torch.cat(xs), torch.cat(ys)


def _train_epochs(model, x, y, epochs, lr, batch_size, seed, desc, callback, stage):
    """``epochs`` epochs of Adam (constant lr, no weight decay) on shuffled (x, y) via descend."""
    if epochs == 0:
        return 0.0
    g = torch.Generator().manual_seed(seed)

    def ce(m, xb, yb):
        return F.cross_entropy(m(xb).float(), yb)

    def on_epoch(epoch, loss):
        if callback is not None:
            callback(stage, epoch + 1, model)

    batch_size = train_batch_size(batch_size)
    h = descend(
        model,
        lambda e: batches(x, y, batch_size=batch_size, shuffle=True, generator=g),
        ce,
        epochs=epochs,
        lr=lr,
        optimizer="adam",
        weight_decay=0.0,
        desc=desc,
        on_epoch=on_epoch,
        progress=False,
        hint="lower the learning rate",
    )
    return h.seconds


@register(
    "unsir",
    access="retain_subset",
    paper="Tarun, Chundawat, Mandal, Kankanhalli 2023 (UNSIR, IEEE TNNLS)",
    color="#d4a017",
    presets={"quick": dict(n_per_class=100, noise_batch=64, noise_copies=5, batch_size=32)},
)
def unsir(
    model,
    task,
    *,
    n_per_class: int = 1000,
    noise_batch: int = 256,
    noise_copies: int = 20,
    noise_steps: int = 40,
    noise_lr: float = 0.1,
    lam: float = 0.1,
    impair_lr: float = 0.02,
    repair_lr: float = 0.01,
    impair_epochs: int = 1,
    repair_epochs: int = 1,
    batch_size: int = 256,
    noise_label: int | None = None,
    callback=None,
    seed: int,
):
    """UNSIR (Section 4): error-maximising noise (Eq. 1), then impair and repair.

    Reads only ``task.forget_classes`` and ``task.retain_subset(n_per_class, seed)``: access
    ``"retain_subset"``, never a forget image. Class forgetting only (one or many classes).

    * noise: :func:`error_maximizing_noise` with ``noise_batch``, ``noise_steps``, ``noise_lr``,
      ``lam`` (Eq. 1); each batch repeated ``noise_copies`` times (:func:`impair_set`;
      ``noise_copies=0`` impairs without noise, an ablation);
    * impair: ``impair_epochs`` epochs on D_r_sub ∪ noise, Adam ``impair_lr``, ``batch_size``;
    * repair: ``repair_epochs`` epochs on D_r_sub, Adam ``repair_lr`` (0 skips a step).

    Defaults are the authors' CIFAR-10 run: 1000 retain images per class, noise 256 × 20,
    40 steps, Adam 0.1, λ 0.1; impair Adam 0.02 and repair Adam 0.01, one epoch each, batch 256.
    ``callback(stage, epoch, model)`` is called after every impair and repair epoch (stage
    ``"impair"`` or ``"repair"``). ``noise_label=0`` reproduces the authors' labelling bug.

    Extra outputs in ``unlearn_info``: ``noise_seconds``, ``impair_seconds``, ``repair_seconds``,
    ``noise_loss`` ({class: (CE before, CE after)}), ``n_retain``, ``n_noise`` and
    ``after_impair`` / ``after_repair`` (accuracy in % on D_r_sub, the only data it may read).
    """
    if getattr(task, "kind", None) not in ("class", "classes") or not list(task.forget_classes or []):
        raise ValueError(
            "UNSIR forgets whole classes (it learns one noise batch per forget class); this task "
            f"has no forget classes (kind {getattr(task, 'kind', None)!r}). Use uk.forget_classes."
        )
    n_per_class = validate.integer("n_per_class", n_per_class)
    noise_copies = validate.integer("noise_copies", noise_copies, lo=0)
    impair_epochs = validate.integer("impair_epochs", impair_epochs, lo=0)
    repair_epochs = validate.integer("repair_epochs", repair_epochs, lo=0)
    batch_size = validate.integer("batch_size", batch_size)
    validate.positive("impair_lr", impair_lr)
    validate.positive("repair_lr", repair_lr)
    validate.non_negative("lam", lam, hint="λ weighs the L2 penalty of Eq. 1 (the paper uses 0.1).")
    if noise_label is not None:
        validate.integer("noise_label", noise_label, lo=0)
    classes = _classes(task.forget_classes, task.num_classes)
    x_sub, y_sub = task.retain_subset(n_per_class=n_per_class, seed=seed)
    if len(x_sub) == 0:
        raise ValueError("The retain subset is empty: UNSIR needs some retain images to repair with.")

    t0 = _now(model)
    if noise_copies > 0:
        noise, noise_loss = error_maximizing_noise(
            model,
            classes,
            batch_size=noise_batch,
            steps=noise_steps,
            lr=noise_lr,
            lam=lam,
            seed=seed,
            return_loss=True,
        )
    else:  # the ablation without noise: impair on the retain subset alone
        noise, noise_loss = torch.empty(len(classes), 0, *x_sub.shape[1:], device=x_sub.device), {}
    noise_seconds = _now(model) - t0
    x_imp, y_imp = impair_set(noise, classes, x_sub, y_sub, copies=noise_copies, noise_label=noise_label)
    # the subset's planned size: n_per_class images of each retained class (unlearnkit.budget)
    planned_sub = n_per_class * max(1, task.num_classes - len(classes))
    with budget.sampled(len(x_sub), planned_sub, model):
        impair_seconds = _train_epochs(
            model,
            x_imp,
            y_imp,
            impair_epochs,
            impair_lr,
            batch_size,
            seed,
            "unsir impair",
            callback,
            "impair",
        )
        after_impair = accuracy(model, x_sub, y_sub)
        repair_seconds = _train_epochs(
            model,
            x_sub,
            y_sub,
            repair_epochs,
            repair_lr,
            batch_size,
            seed + 1,
            "unsir repair",
            callback,
            "repair",
        )
    return report(
        model,
        noise_seconds=noise_seconds,
        impair_seconds=impair_seconds,
        repair_seconds=repair_seconds,
        noise_loss=noise_loss,
        n_retain=len(x_sub),
        n_noise=int(len(y_imp) - len(y_sub)),
        after_impair={"retain_subset": after_impair},
        after_repair={"retain_subset": accuracy(model, x_sub, y_sub)},
    )


def _now(model) -> float:
    import time

    dev = next(model.parameters()).device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()
