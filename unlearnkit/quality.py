"""A stricter test of forgetting: the per-example forget-quality score of the NeurIPS 2023
machine unlearning challenge, and the tug-of-war score.

Explained in the showdown chapter (``book/09_showdown.ipynb``).

Accuracies and population-level membership attacks ask whether the unlearned model looks
like a retrained one *on average*. The challenge asks it *per forget example*: train many
models retrained from scratch and many unlearned models (different seeds; the challenge used
512 of each), and for every forget example x with label y compare the two groups'
distributions of the logit-scaled confidence

    s(x) = log p_y − log(1 − p_y) = z_y − logsumexp_{j≠y} z_j          (z: the logits),

which :func:`logit_confidence` computes stably from the logits. An attacker sees s(x) of one
model and says "unlearned" or "retrained". Each attack has a false-positive rate FPR (a model
of the other group claimed) and a false-negative rate FNR (a model of the claimed group
missed). An (ε, δ) guarantee bounds every attack by FPR + e^ε FNR ≥ 1 − δ and
FNR + e^ε FPR ≥ 1 − δ, so an attack certifies

    ε_t = max( log(1 − δ − FPR) − log FNR,  log(1 − δ − FNR) − log FPR ),   clipped at 0,

with δ = 10⁻⁵ (:data:`DELTA`), and ε̂(x) is the largest ε_t over the attack family. The
challenge's rule (:func:`example_epsilon`, default ``attacks="official"``; the attacks and their
grids live in :mod:`unlearnkit.epsilon`), per example:

- **peaky:** if one group's range (max − min over its models) is under 1 % of the other's,
  ε̂ = 50 (:data:`EPSILON_CAP`) and nothing else is computed;
- **single thresholds:** "claim the group with the larger median (the unlearned one on a tie)
  when s ≥ t", at ⌈100 · range⌉ evenly spaced t over the pooled values (one direction only);
- **intervals:** "claim the group X with the smaller range w (on a tie, the group the single
  thresholds do not claim) when t1 ≤ s ≤ t2", with t2 on a grid of 100 per unit from
  max(X) − 2 to max(X) + 2 and the width t2 − t1 from w − 2 to w + 2 (400 steps): about
  160,000 intervals as wide as X's own spread, near its extremes; they catch a group that
  sits inside the other;
- **zero rates:** FPR = FNR = 0 (a perfect separation) gives ε̂ = ∞; a threshold where exactly
  one rate is 0 is discarded (with a few hundred models it says little); if every threshold is
  discarded, ε̂ = 0.

Each count is a binary search in the sorted group and each ε_t a table look-up, so 512 + 512
models × 1000 examples take about 4 s of CPU time; the grids are those of the challenge's
code, so ε̂ equals its value (there rates are float32 and ∞ is stored as 50; both score 0).
``attacks="exhaustive"`` instead tries every single threshold and every interval between
observed values (an O(n²) scan per example, vectorised; never below the official ε̂), and
``attacks="single"`` only the single thresholds; ``two_sided=True`` lets every attack claim
either group; ``floor`` reads a zero rate as a small rate instead of discarding the threshold
(1/n: a perfect separation then certifies log((1 − δ) n)). None of these is the official
rule.

**Score.** ε̂ falls into bins of width 0.5; the 1-based bin j scores H = 2 / 2^j, so
ε̂ in [0, 0.5) scores 1, [0.5, 1) ½, [1, 1.5) ¼, ... (:func:`epsilon_score` uses the 0-based
k = j − 1 and 2^−k). Only ε̂ below ⌈log(n − 1)⌉ scores (n: unlearned models, :func:`max_epsilon`):
14 bins with 512 models, 10 with 128, 8 with 32; ε̂ beyond, ∞ and 50 included, score 0. With n
models in each group a finite ε̂ is below log(n − 1) anyway (the rates are at least 1/n), so
the limit bites for ∞, 50, a ``floor`` or groups of unequal size. The forget quality F
(:func:`forget_quality`) is the mean of H over the forget examples, in [0, 1], and the final
score is F · (RA_u / RA_r) · (TA_u / TA_r) (:func:`final_score`).
:func:`forget_quality_ci` adds a bootstrap error bar over the models.

**What to expect.** F is far from 1 even for perfect unlearning. At n models per group, two
groups drawn from one distribution score about F = 0.19 (measured on standard normal
confidences: 0.188 at n = 32 over 2000 examples, 0.185 at n = 128 and 0.187 at n = 512 over
1000; ε̂ lies mostly between 1 and 2, median log 5 ≈ 1.6). The best attack of such an example is
usually an interval that holds all but one model of the narrower group while a handful of the
other group's models lie outside it: a ratio of small counts, noise of the same size at any n,
so more models do not raise this baseline. Single thresholds alone
would give 0.32 to 0.37, the exhaustive family 0.10 (n = 32) to 0.05 (n = 512). Compare a
method with a second group of retrained models (other seeds) scored the same way, not with 1.

The tug-of-war score (:func:`tug_of_war`) is a cheaper, accuracy-only yardstick: the product
over the forget, retain and test sets of 1 − |acc − acc_retrain| / 100.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .epsilon import (  # the attack family, its grids and the ε̂ of each example
    BIN_WIDTH,
    DELTA,
    EPSILON_CAP,
    N_BINS,
    PEAKY_RATIO,
    _as_groups,
    attack_rates,
    example_epsilon,
    max_epsilon,
    n_bins_for,
)

__all__ = [
    "logit_confidence",
    "confidences",
    "attack_rates",
    "example_epsilon",
    "epsilon_bins",
    "epsilon_score",
    "forget_quality",
    "forget_quality_ci",
    "QualityCI",
    "max_epsilon",
    "n_bins_for",
    "final_score",
    "tug_of_war",
    "add_tug_of_war",
    "DELTA",
    "EPSILON_CAP",
]


# ----------------------------------------------------------------------------- confidence


def logit_confidence(logits, y) -> torch.Tensor:
    """Per row, log p_y − log(1 − p_y) of softmax(logits), computed as z_y − logsumexp_{j≠y} z_j.

    Stable where the naive formula is not: a p_y that rounds to 1 in float32 still gives a
    finite, exact value. ``logits``: (n, C); ``y``: (n,) integer labels.
    """
    z = torch.as_tensor(logits).double()
    y = torch.as_tensor(y, device=z.device).long().reshape(-1)
    if z.ndim != 2 or len(y) != len(z):
        raise ValueError(
            f"logits must be (n, classes) with one label per row; got {tuple(z.shape)} and {len(y)} labels."
        )
    if z.shape[1] < 2:
        raise ValueError("The confidence needs at least two classes.")
    zy = z.gather(1, y[:, None]).squeeze(1)
    others = z.scatter(1, y[:, None], float("-inf"))
    return zy - torch.logsumexp(others, 1)


def confidences(
    models: Iterable[nn.Module], x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """``(n_models, n_examples)`` array of :func:`logit_confidence` of each model on ``(x, y)``."""
    from .training import predict

    rows = []
    for m in models:
        rows.append(logit_confidence(predict(m, x, batch_size=batch_size).cpu(), y.cpu()).numpy())
    if not rows:
        raise ValueError("confidences() needs at least one model.")
    return np.stack(rows)


# ----------------------------------------------------------------------------- score of ε̂


def epsilon_bins(eps, bin_width: float = BIN_WIDTH, n_bins: int = N_BINS) -> np.ndarray:
    """The 0-based bin of each ε̂: ``floor(ε̂ / bin_width)``, or ``n_bins`` (the "beyond" bin) from
    ``n_bins · bin_width`` on (∞ included). ``n_bins`` defaults to the challenge's 14 (512 models);
    :func:`forget_quality` derives it from the number of models (:func:`n_bins_for`)."""
    if bin_width <= 0 or n_bins < 0:
        raise ValueError("bin_width must be positive and n_bins non-negative.")
    e = np.asarray(eps, dtype=float)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("ε must be non-negative numbers.")
    k = np.floor(np.minimum(e, n_bins * bin_width) / bin_width)
    return np.minimum(k, n_bins).astype(int)


def epsilon_score(eps, bin_width: float = BIN_WIDTH, n_bins: int = N_BINS) -> np.ndarray:
    """Per example H(ε̂) = 2^−k for ε̂ in 0-based bin k (= 2 / 2^j for the 1-based bin j): 1 for
    ε̂ < 0.5, ½ for [0.5, 1), ...; 0 in the "beyond" bin (ε̂ ≥ n_bins · bin_width, ∞ included)."""
    k = epsilon_bins(eps, bin_width, n_bins)
    return np.where(k >= n_bins, 0.0, 2.0 ** (-k.astype(float)))


def forget_quality(
    unlearned,
    retrained,
    delta: float = DELTA,
    bin_width: float = BIN_WIDTH,
    n_bins: int | None = None,
    return_eps: bool = False,
    *,
    floor=None,
    attacks: str = "official",
    two_sided: bool = False,
    peaky: float | None = PEAKY_RATIO,
):
    """The forget quality F: the mean of H(ε̂) over forget examples, in [0, 1].

    1 means no attack of the family tells the unlearned models from the retrained ones on any
    example. ``n_bins=None``: the challenge's count for this many unlearned models
    (:func:`n_bins_for`). With ``return_eps=True`` also returns the ε̂ array. The keyword options
    are those of :func:`example_epsilon` (off by default: the official rule).
    """
    n_models = len(np.asarray(unlearned))
    eps = example_epsilon(
        unlearned, retrained, delta, floor, attacks=attacks, two_sided=two_sided, peaky=peaky
    )
    if n_bins is None:
        n_bins = n_bins_for(n_models, bin_width)
    f = float(epsilon_score(eps, bin_width, n_bins).mean())
    return (f, eps) if return_eps else f


class QualityCI(NamedTuple):
    """F on all models, and the spread of F over bootstrap resamples of the models."""

    F: float
    std: float
    lo: float
    hi: float


def forget_quality_ci(
    unlearned,
    retrained,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    delta: float = DELTA,
    bin_width: float = BIN_WIDTH,
    n_bins: int | None = None,
    **options,
) -> QualityCI:
    """:func:`forget_quality` with a bootstrap error bar over models: ``(F, std, lo, hi)``.

    Each of ``n_boot`` replicates draws, with replacement, as many unlearned models as there are
    (rows of ``unlearned``) and as many retrained ones, and scores them with the same bins. ``F``
    is the score of all the models; ``std`` the standard deviation of the replicates, which
    measures the noise from *which* models were trained; ``lo``, ``hi`` the normal interval
    ``F ∓ z·std`` at ``level``. Not the replicates' quantiles: a resample holds copies of some
    models, which the attacks see as a tighter group, so the replicates sit below ``F`` (on the
    showdown's retrain-vs-retrain group, F = 0.158 and the replicates' 95 % quantiles were
    [0.087, 0.135]) and a percentile interval would not even contain the score. Deterministic for
    a given ``seed``; costs ``n_boot + 1`` scores. ``options``: the keyword options of
    :func:`forget_quality`. Explained in ``book/09_showdown.ipynb``.
    """
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    u, r = _as_groups(unlearned, retrained)
    if n_bins is None:
        n_bins = n_bins_for(len(u), bin_width)
    kw = dict(delta=delta, bin_width=bin_width, n_bins=n_bins, **options)
    f = forget_quality(u, r, **kw)
    rng = np.random.default_rng(seed)
    boot = np.array(
        [
            forget_quality(u[rng.integers(0, len(u), len(u))], r[rng.integers(0, len(r), len(r))], **kw)
            for _ in range(n_boot)
        ]
    )
    from scipy.stats import norm

    sd = float(boot.std(ddof=1))
    z = float(norm.ppf((1 + level) / 2))
    return QualityCI(f, sd, max(0.0, f - z * sd), min(1.0, f + z * sd))


def final_score(
    quality: float,
    retain_acc: float,
    test_acc: float,
    retain_acc_retrain: float,
    test_acc_retrain: float,
    cap: bool = False,
) -> float:
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


def add_tug_of_war(
    runs: pd.DataFrame, reference: str = "retrain", sets: Iterable[str] = TOW_SETS, column: str = "ToW"
) -> pd.DataFrame:
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
