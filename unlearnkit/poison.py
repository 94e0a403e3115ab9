"""Poisoned training sets and the tasks that forget the poison: backdoors and shuffled labels.

Explained in the Fisher-masking chapter (``book/05_fisher_masking.ipynb``, Tables 3 and 4).

* :func:`backdoor`: ``n`` training images (200 in the paper) get a ``size``×``size`` patch in
  the lower-right corner set to ``value`` (4×4, 0) and the label ``target`` (0); the task forgets
  exactly those images. :func:`attack_success` is the share of triggered test images (not of the
  target class) that the model sends to the target.
* :func:`mislabel`: the labels of a share of the training images are shuffled among themselves;
  the task forgets the images whose label changed.

Both return ``(data, task)``: a new :class:`~unlearnkit.data.Dataset` (the original is not
modified) and the :func:`~unlearnkit.tasks.forget_instances` task over it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from . import validate
from .data import Dataset
from .tasks import forget_instances


def plant_trigger(x: torch.Tensor, size: int = 4, value: float = 0.0) -> torch.Tensor:
    """A copy of images ``x`` (N, C, H, W) with the lower-right ``size``×``size`` patch set to ``value``."""
    if x.dim() != 4:
        raise ValueError(f"A trigger is planted in images (N, C, H, W), got shape {tuple(x.shape)}.")
    validate.integer("size", size)
    if size > min(x.shape[2:]):
        raise ValueError(f"The trigger ({size}x{size}) does not fit in {x.shape[2]}x{x.shape[3]} images.")
    validate.probability("value", value, hint="Pixels live in [0, 1].")
    out = x.clone()
    out[..., -size:, -size:] = value
    return out


def backdoor(data: Dataset, n: int = 200, target: int = 0, size: int = 4, value: float = 0.0, seed: int = 0):
    """Poison ``n`` training images drawn from the classes other than ``target``; returns
    ``(poisoned data, task forgetting them)``. ``data.meta["poison_idx"]`` lists them."""
    validate.integer("n", n)
    if not 0 <= int(target) < data.num_classes:
        raise ValueError(f"target must be a class id in 0..{data.num_classes - 1}, got {target!r}.")
    candidates = (data.y_train != target).nonzero().flatten().cpu()
    if n > len(candidates):
        raise ValueError(f"Cannot poison {n} images: only {len(candidates)} are not of class {target}.")
    g = torch.Generator().manual_seed(int(seed))
    idx = candidates[torch.randperm(len(candidates), generator=g)[:n]].sort().values
    x, y = data.x_train.clone(), data.y_train.clone()
    dev = idx.to(x.device)
    x[dev] = plant_trigger(x[dev], size, value)
    y[dev] = int(target)
    meta = {
        **data.meta,
        "poison_idx": idx.tolist(),
        "trigger": {"size": size, "value": value, "target": target},
    }
    poisoned = replace(
        data, x_train=x, y_train=y, name=f"{data.name}+backdoor{n}s{size}t{target}r{seed}", meta=meta
    )
    return poisoned, forget_instances(poisoned, idx)


def triggered_test(data: Dataset):
    """Test images not of the target class, with the trigger planted, and the target as label."""
    t = data.meta.get("trigger")
    if t is None:
        raise ValueError("This dataset carries no backdoor: build it with uk.poison.backdoor(...).")
    keep = (data.y_test != t["target"]).nonzero().flatten()
    x = plant_trigger(data.x_test[keep], t["size"], t["value"])
    return x, torch.full((len(x),), int(t["target"]), dtype=torch.long, device=x.device)


def attack_success(model, data: Dataset) -> float:
    """% of triggered test images (not of the target class) classified as the target."""
    from .training import accuracy

    return accuracy(model, *triggered_test(data))


def mislabel(data: Dataset, share: float, seed: int = 0):
    """Shuffle the labels of a random ``share`` of the training images among themselves; returns
    ``(noisy data, task forgetting the images whose label changed)``."""
    if isinstance(share, bool) or not isinstance(share, (float, int)) or not 0.0 < float(share) < 1.0:
        raise ValueError(
            f"share must be a fraction in (0, 1), got {share!r}; 0.1 shuffles 10% of the labels."
        )
    N = len(data.y_train)
    g = np.random.default_rng(seed)
    pick = np.sort(g.choice(N, size=max(2, int(round(share * N))), replace=False))
    y = data.y_train.clone()
    yp = y[torch.as_tensor(pick, device=y.device)]
    y[torch.as_tensor(pick, device=y.device)] = yp[torch.as_tensor(g.permutation(len(pick)), device=y.device)]
    changed = (y != data.y_train).nonzero().flatten().cpu()
    if len(changed) == 0:
        raise ValueError("Shuffling changed no label; pick a larger share.")
    noisy = replace(
        data,
        y_train=y,
        name=f"{data.name}+mislabel{share:g}r{seed}",
        meta={**data.meta, "mislabelled_idx": changed.tolist(), "share": float(share)},
    )
    return noisy, forget_instances(noisy, changed)
