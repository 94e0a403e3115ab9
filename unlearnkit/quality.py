"""A stricter test of forgetting: per-example ε from threshold attacks, in the style of the
NeurIPS 2023 unlearning challenge, and the tug-of-war score.

Explained in the showdown chapter (``book/07_showdown.ipynb``).

Accuracies and population-level membership attacks ask whether the unlearned model looks
like a retrained one *on average*. The challenge asks it *per forget example*: train many
models retrained from scratch and many unlearned models (different seeds), and for every
forget example x with label y compare the two groups' distributions of the logit-scaled
confidence

    s(x) = log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j          (z: the logits),

which :func:`logit_confidence` computes stably from the logits. An attacker who sees s(x)
for one model and must say "unlearned" or "retrained" thresholds it; each threshold t (and
each direction) has a false-positive rate (retrained called unlearned) and a false-negative
rate (unlearned called retrained). An (ε, δ) guarantee bounds every such attack:

    FPR + e^ε FNR ≥ 1 − δ   and   FNR + e^ε FPR ≥ 1 − δ,

so the best attack certifies

    ε̂(x) = max_t max( log((1 − δ − FPR_t) / FNR_t), log((1 − δ − FNR_t) / FPR_t) ).

With n models per group a rate is a multiple of 1/n, so a zero rate is read as 1/n (``floor``):
a perfectly separating attack then gives log((1 − δ) n) instead of infinity, the largest
ε that n models can certify. More models tighten the estimate (less noise at ε ≈ 0) and raise
that ceiling.

Each ε̂(x) falls into a bin of width ``bin_width``; bin k (k = 0, 1, ...) scores 2^−k, so
ε̂ < 0.5 scores 1, ε̂ in [0.5, 1) scores ½, and so on; ε̂ beyond the last bin scores 0. The
forget quality F is the mean over forget examples (in [0, 1]; 1 = indistinguishable from
retraining), and the final score multiplies it with retain and test accuracy relative to
retraining: F · (RA_u / RA_r) · (TA_u / TA_r).

The tug-of-war score (:func:`tug_of_war`) is a cheaper, accuracy-only yardstick: the product
over the forget, retain and test sets of 1 − |acc − acc_retrain| / 100.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

__all__ = ["logit_confidence", "confidences", "attack_rates", "example_epsilon", "epsilon_bins",
           "epsilon_score", "forget_quality", "final_score", "tug_of_war", "add_tug_of_war"]


# ----------------------------------------------------------------------------- confidence

def logit_confidence(logits, y) -> torch.Tensor:
    """Per row, log p_y − log(1 − p_y) of softmax(logits), computed as z_y − logsumexp_{j≠y} z_j.

    Stable where the naive formula is not: a p_y that rounds to 1 in float32 still gives a
    finite, exact value. ``logits``: (n, C); ``y``: (n,) integer labels.
    """
    z = torch.as_tensor(logits).double()
    y = torch.as_tensor(y, device=z.device).long().reshape(-1)
    if z.ndim != 2 or len(y) != len(z):
        raise ValueError(f"logits must be (n, classes) with one label per row; got {tuple(z.shape)} "
                         f"and {len(y)} labels.")
    if z.shape[1] < 2:
        raise ValueError("The confidence needs at least two classes.")
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return zy - torch.logsumexp(others, 1)


def confidences(models: Iterable[nn.Module], x: torch.Tensor, y: torch.Tensor,
                batch_size: int = 512) -> np.ndarray:
    """``(n_models, n_examples)`` array of :func:`logit_confidence` of each model on ``(x, y)``."""
    from .training import predict
    rows = []
    for m in models:
        rows.append(logit_confidence(predict(m, x, batch_size=batch_size).cpu(), y.cpu()).numpy())
    if not rows:
        raise ValueError("confidences() needs at least one model.")
    return np.stack(rows)


# ----------------------------------------------------------------------------- ε per example

def _as_groups(unlearned, retrained):
    u = np.asarray(unlearned, dtype=float)
    r = np.asarray(retrained, dtype=float)
    if u.ndim == 1:
        u = u[:, None]
    if r.ndim == 1:
        r = r[:, None]
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError("unlearned and retrained must be (n_models, n_examples) arrays over the same "
                         f"examples; got {u.shape} and {r.shape}.")
    if len(u) < 2 or len(r) < 2:
        raise ValueError("Each group needs at least two models (the challenge used hundreds; 32 is "
                         "a practical minimum).")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("Confidences must be finite (a model that diverged has no confidence).")
    return u, r


def attack_rates(unlearned, retrained):
    """False-positive and false-negative rates of every threshold attack, per example.

    The attack "unlearned if s > t" is tried at t = −∞ and at every observed value. Returns
    ``(fpr, fnr)``, each ``(n_examples, n_thresholds)``: FPR = share of retrained models called
    unlearned, FNR = share of unlearned models called retrained. The reversed attack
    ("unlearned if s ≤ t") has rates (1 − FPR, 1 − FNR) and is covered by :func:`example_epsilon`.
    Sort-based: memory grows with examples × models, not with their product with thresholds.
    """
    u, r = _as_groups(unlearned, retrained)
    nu, nr = len(u), len(r)
    v = np.concatenate([u, r]).T                                        # (E, N)
    is_u = np.concatenate([np.ones(nu), np.zeros(nr)])
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, 1)
    lab = is_u[order]
    cu, cr = np.cumsum(lab, 1), np.cumsum(1 - lab, 1)                 # counts ≤ t
    # ties: a threshold inside a run of equal values takes the counts at the run's end
    n = v.shape[1]
    end = np.where(np.concatenate([sv[:, 1:] != sv[:, :-1], np.ones((len(sv), 1), bool)], 1),
                   np.arange(n), n)
    end = np.minimum.accumulate(end[:, ::-1], 1)[:, ::-1]
    cu, cr = np.take_along_axis(cu, end, 1), np.take_along_axis(cr, end, 1)
    zero = np.zeros((len(sv), 1))
    cu, cr = np.concatenate([zero, cu], 1), np.concatenate([zero, cr], 1)   # t = −∞
    return (nr - cr) / nr, cu / nu


def example_epsilon(unlearned, retrained, delta: float = 0.01, floor: float | None = None) -> np.ndarray:
    """ε̂ of each example from the best threshold attack (see the module docstring).

    ``unlearned``, ``retrained``: ``(n_models, n_examples)`` confidences (e.g. from
    :func:`confidences`), or 1-D arrays for one example. ``delta``: the δ of (ε, δ). A zero rate
    counts as ``floor`` (default 1 / the group's size), which caps ε̂ at what the models can show.
    """
    if not 0 <= delta < 1:
        raise ValueError(f"delta must lie in [0, 1), got {delta}.")
    u, r = _as_groups(unlearned, retrained)
    fpr, fnr = attack_rates(u, r)
    f_fp = 1.0 / len(r) if floor is None else float(floor)
    f_fn = 1.0 / len(u) if floor is None else float(floor)
    if f_fp <= 0 or f_fn <= 0:
        raise ValueError("floor must be positive.")
    eps = np.zeros(u.shape[1])
    for a, b in ((fpr, fnr), (1 - fpr, 1 - fnr)):                     # both directions
        with np.errstate(divide="ignore", invalid="ignore"):
            e1 = np.log((1 - delta - a) / np.maximum(b, f_fn))
            e2 = np.log((1 - delta - b) / np.maximum(a, f_fp))
        e = np.fmax(e1, e2)                                          # NaN where 1 − δ − rate ≤ 0
        e = np.where(np.isfinite(e), e, 0.0)
        eps = np.maximum(eps, e.max(1))
    return np.maximum(eps, 0.0)


def epsilon_bins(eps, bin_width: float = 0.5, n_bins: int = 13) -> np.ndarray:
    """The bin of each ε̂: ``floor(ε̂ / bin_width)``, or ``n_bins`` (the "beyond" bin) past the last."""
    if bin_width <= 0 or n_bins < 1:
        raise ValueError("bin_width must be positive and n_bins at least 1.")
    e = np.asarray(eps, dtype=float)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("ε must be non-negative numbers.")
    k = np.floor(np.minimum(e, n_bins * bin_width) / bin_width)
    return np.minimum(k, n_bins).astype(int)


def epsilon_score(eps, bin_width: float = 0.5, n_bins: int = 13) -> np.ndarray:
    """Per example 2^−k for ε̂ in bin k; 0 beyond the last bin. In [0, 1]."""
    k = epsilon_bins(eps, bin_width, n_bins)
    return np.where(k >= n_bins, 0.0, 2.0 ** (-k.astype(float)))


def forget_quality(unlearned, retrained, delta: float = 0.01, bin_width: float = 0.5, n_bins: int = 13,
                   return_eps: bool = False):
    """The forget quality F: the mean binned score of ε̂ over forget examples, in [0, 1].

    1 means no threshold attack on the logit-scaled confidence tells the unlearned models from
    the retrained ones on any example. With ``return_eps=True`` also returns the ε̂ array.
    """
    eps = example_epsilon(unlearned, retrained, delta)
    f = float(epsilon_score(eps, bin_width, n_bins).mean())
    return (f, eps) if return_eps else f


def final_score(quality: float, retain_acc: float, test_acc: float, retain_acc_retrain: float,
                test_acc_retrain: float, cap: bool = False) -> float:
    """F · (RA_u / RA_r) · (TA_u / TA_r): forget quality times utility relative to retraining.

    Accuracies in percent (or all as fractions). With ``cap=True`` a ratio above 1 counts as 1
    (no credit for beating retraining) and the score lies in [0, 1]. NaN in gives NaN out.
    """
    vals = [quality, retain_acc, test_acc, retain_acc_retrain, test_acc_retrain]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return float("nan")
    if not 0 <= quality <= 1:
        raise ValueError(f"The forget quality lies in [0, 1], got {quality}.")
    if retain_acc_retrain <= 0 or test_acc_retrain <= 0:
        raise ValueError("The retrained model's accuracies must be positive.")
    ra, ta = retain_acc / retain_acc_retrain, test_acc / test_acc_retrain
    if cap:
        ra, ta = min(ra, 1.0), min(ta, 1.0)
    return float(quality * max(ra, 0.0) * max(ta, 0.0))


# ----------------------------------------------------------------------------- tug of war

TOW_SETS = ("train_forget", "train_retain", "test_retain")


def tug_of_war(acc: dict, reference: dict, sets: Iterable[str] = TOW_SETS) -> float:
    """Π over ``sets`` of (1 − |acc − acc_retrain| / 100), accuracies in percent; in [0, 1].

    ``acc`` and ``reference`` map set names (columns of :func:`unlearnkit.evaluate`) to
    accuracies. A set that is NaN in both (e.g. no test-forget set) is skipped; NaN in one gives NaN.
    """
    out = 1.0
    for s in sets:
        a, b = float(acc[s]), float(reference[s])
        if math.isnan(a) and math.isnan(b):
            continue
        if math.isnan(a) or math.isnan(b):
            return float("nan")
        out *= 1.0 - min(abs(a - b), 100.0) / 100.0
    return out


def add_tug_of_war(runs: pd.DataFrame, reference: str = "retrain", sets: Iterable[str] = TOW_SETS,
                   column: str = "ToW") -> pd.DataFrame:
    """A copy of a tidy runs table (``uk.run_spread(...).runs``) with the tug-of-war score of each
    row against the ``reference`` row of the same seed and forget set (NaN where it diverged)."""
    sets = list(sets)
    keys = [k for k in ("task", "seed", "forget") if k in runs.columns]
    ref = runs[runs["method"] == reference].set_index(keys)[sets]
    out = runs.copy()
    vals = []
    for _, r in out.iterrows():
        key = tuple(r[k] for k in keys)
        key = key[0] if len(key) == 1 else key
        if bool(r.get("diverged", False)) or key not in ref.index:
            vals.append(float("nan"))
            continue
        rr = ref.loc[key]
        rr = rr.iloc[0] if isinstance(rr, pd.DataFrame) else rr
        vals.append(tug_of_war(r[sets], rr))
    out[column] = vals
    return out
