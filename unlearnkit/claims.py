"""Verdicts computed from the runs: the words a chapter's prose glues.

A sentence such as "UNSIR beats fine-tuning" or "as in the paper" is a claim about numbers. The
book never types such a word: it computes it here, from the spread over runs (seeds × forget
classes), and glues it (``glue("c3_vs_ft", uk.verdict(unsir_acc, ft_acc))`` and
``{glue:text}`c3_vs_ft``` in the prose). The rules are deliberately plain and stated:

* :func:`verdict` (two results over runs): ``"better"`` when the difference of the means exceeds
  both the sum of the two standard deviations and a stated ``margin``, ``"worse"`` the other way
  round, else ``"tie"``. With ``paired=True`` (the same seeds and forget classes on both sides) a
  paired t-test at level ``alpha`` replaces the spread rule, still subject to ``margin``.
* :func:`against_paper` (our runs against one number a paper reports): ``"agrees"`` when
  |mean − paper| ≤ ``tol`` (in the metric's units; the chapter states the tolerance), else
  ``"disagrees"``.
* :func:`ordering` (several methods against the order a paper reports): ``"agrees"`` when every
  pair the paper orders is ordered the same way beyond the spread, ``"partly agrees"`` when no pair
  is reversed but some tie, ``"disagrees"`` when a pair is reversed.

The words come back as :class:`Word`: a ``str`` that glues without quotes. Explained and used
from the opening chapter (``book/01_unlearning_problem.ipynb``) on.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Word", "verdict", "against_paper", "ordering", "spread_of"]


class Word(str):
    """A verdict word. Behaves as ``str``; its repr is the bare word, so glue shows no quotes.

    ``details`` holds the numbers behind the word (means, spreads, the rule used).
    """

    details: dict

    def __new__(cls, word: str, **details):
        w = super().__new__(cls, word)
        w.details = details
        return w

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle):  # IPython's text/plain (what myst-nb's glue stores)
        p.text(str(self))


class NoRunsError(ValueError):
    """Every run of a result is NaN: nothing to compare."""


def _dry_run() -> bool:
    from .profiles import active

    return active().dry_run


DRY_RUN_WORD = "(not judged in a dry run)"


def spread_of(values) -> tuple[float, float, int]:
    """``(mean, std, n)`` of runs, ignoring NaN (diverged runs); a scalar is one run with std 0."""
    a = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        raise NoRunsError("No finite runs to compare (every run is NaN: did every run diverge?).")
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return float(a.mean()), std, int(a.size)


def _words(words, default):
    words = tuple(words or default)
    if len(words) != len(default) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"words must be {len(default)} strings, in the order {default}.")
    return words


def _judged(fn):
    """In a dry run (untrained models, claims skipped) a comparison without finite runs gives
    :data:`DRY_RUN_WORD` instead of an error, as :func:`unlearnkit.check` skips its claims."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NoRunsError:
            if _dry_run():
                return Word(DRY_RUN_WORD)
            raise

    return wrapper


@_judged
def verdict(
    a,
    b,
    *,
    higher_is_better: bool = True,
    margin: float = 0.0,
    paired: bool | str = False,
    alpha: float = 0.05,
    words: Sequence[str] | None = None,
) -> Word:
    """Compare result ``a`` with result ``b`` over runs and return ``better``, ``worse`` or ``tie``.

    ``a`` and ``b`` are the values of one metric over runs (seeds × forget classes), or a scalar
    (one reference number, e.g. chance level). ``higher_is_better=False`` for metrics such as
    forget accuracy in a forgetting task or time. ``margin`` (in the metric's units) is the
    smallest difference worth a word: below it the verdict is ``tie`` whatever the spread.

    Spread rule (default): |mean_a − mean_b| must exceed std_a + std_b (sample std over runs).
    Paired rule (``paired=True``, equal lengths ≥ 2, runs aligned): a two-sided paired t-test at
    level ``alpha``; when every paired difference is equal (zero spread), their sign decides.
    ``paired="auto"``: the paired rule when ``a`` and ``b`` are equally long sequences of at least
    2 runs (a spread over seeds), the spread rule otherwise (one run each, a dry run).
    ``words`` replaces ``("better", "worse", "tie")``, e.g. ``("higher", "lower", "about the same")``.
    """
    better, worse, tie = _words(words, ("better", "worse", "tie"))
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}.")
    ma, sa, na = spread_of(a)
    mb, sb, nb = spread_of(b)
    diff = ma - mb
    sign = 1.0 if higher_is_better else -1.0
    details = dict(mean_a=ma, std_a=sa, n_a=na, mean_b=mb, std_b=sb, n_b=nb, diff=diff, margin=margin)
    if paired == "auto":
        na_, nb_ = np.size(a), np.size(b)
        paired = na_ == nb_ and na_ >= 2
    elif not isinstance(paired, bool):
        raise ValueError(f"paired must be True, False or 'auto', got {paired!r}.")
    if paired:
        xa = np.asarray(a, dtype=float).ravel()
        xb = np.asarray(b, dtype=float).ravel()
        if xa.shape != xb.shape or xa.size < 2:
            raise ValueError(
                "paired=True needs two equally long sequences of at least 2 aligned runs "
                f"(got {xa.size} and {xb.size}); use the spread rule (paired=False) otherwise."
            )
        keep = ~(np.isnan(xa) | np.isnan(xb))
        d = xa[keep] - xb[keep]
        if d.size < 2:
            raise ValueError("Fewer than 2 paired runs are finite on both sides: nothing to test.")
        diff = float(d.mean())
        if np.allclose(d, d[0]):
            p = 0.0 if d[0] != 0 else 1.0
        else:
            from scipy import stats

            p = float(stats.ttest_rel(xa[keep], xb[keep]).pvalue)
        details.update(diff=diff, p=p, rule=f"paired t-test, alpha {alpha}")
        significant = p < alpha and abs(diff) > margin
    else:
        details.update(rule="mean difference beyond std_a + std_b")
        significant = abs(diff) > max(sa + sb, margin)
    if not significant or diff == 0:
        return Word(tie, **details)
    return Word(better if sign * diff > 0 else worse, **details)


@_judged
def against_paper(ours, paper: float, tol: float, *, words: Sequence[str] | None = None) -> Word:
    """``agrees`` when our mean over runs lies within ``tol`` of the paper's number, else ``disagrees``.

    ``tol`` is in the metric's units (e.g. 5 percentage points) and is stated by the chapter
    next to the claim. The spread is reported in ``details`` but not added to the tolerance:
    a wide spread does not make a result agree.
    """
    agree, disagree = _words(words, ("agrees", "disagrees"))
    if tol is None or tol < 0 or not math.isfinite(tol):
        raise ValueError(f"tol must be a finite number >= 0 (the tolerance the chapter states), got {tol}.")
    if paper is None or not math.isfinite(float(paper)):
        raise ValueError(f"The paper's number must be finite, got {paper}.")
    m, s, n = spread_of(ours)
    gap = m - float(paper)
    return Word(
        agree if abs(gap) <= tol else disagree, mean=m, std=s, n=n, paper=float(paper), gap=gap, tol=tol
    )


@_judged
def ordering(
    ours: Mapping[str, object],
    paper: Mapping[str, float],
    *,
    higher_is_better: bool = True,
    margin: float = 0.0,
    words: Sequence[str] | None = None,
) -> Word:
    """Does our order of methods follow the paper's?

    ``ours``: method → runs; ``paper``: method → the paper's number (same keys). For every pair
    the paper orders strictly, :func:`verdict` (spread rule, ``margin``) compares our runs:
    ``agrees`` when every such pair comes out the same way, ``partly agrees`` when none is
    reversed but some tie, ``disagrees`` when one is reversed. ``details["pairs"]`` lists each pair.
    """
    agree, partly, disagree = _words(words, ("agrees", "partly agrees", "disagrees"))
    missing = set(paper) ^ set(ours)
    if missing:
        raise ValueError(f"ours and paper must name the same methods; unmatched: {sorted(missing)}")
    names = list(paper)
    pairs, reversed_, ties = [], 0, 0
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            if paper[x] == paper[y]:
                continue
            hi, lo = (x, y) if (paper[x] > paper[y]) == higher_is_better else (y, x)
            v = verdict(ours[hi], ours[lo], higher_is_better=higher_is_better, margin=margin)
            pairs.append((hi, lo, str(v)))
            reversed_ += v == "worse"
            ties += v == "tie"
    if not pairs:
        raise ValueError("The paper's numbers order no pair of methods.")
    word = disagree if reversed_ else (partly if ties else agree)
    return Word(word, pairs=pairs, reversed=reversed_, ties=ties)
