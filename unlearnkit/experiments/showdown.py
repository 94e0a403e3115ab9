"""The showdown's own analysis: distances to retraining per run, the leaders and their ties,
the pick per access level, and the per-example score's display.

Explained in ``book/09_showdown.ipynb``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..claims import Word, verdict
from ..methods import REGISTRY, applicable

# the three accuracies whose distance to the retrained model ranks a method
GAP_SETS = ("train_forget", "train_retain", "test_retain")
# access levels from the least data to the most
ACCESS_ORDER = ("class_ids", "retain_subset", "forget", "forget+retain_subset", "retain", "forget+retain")


def run_gaps(spread) -> dict:
    """Per method, one value per run that did not diverge: the mean over :data:`GAP_SETS` of
    |accuracy − the retrained model's|, matched on seed and forget item (percentage points)."""
    d = {s: spread.diffs(s) for s in GAP_SETS}
    ran = [m for m in spread.methods if len(d[GAP_SETS[0]][m])]  # not every run diverged
    return {m: sum(np.abs(d[s][m]) for s in GAP_SETS) / len(GAP_SETS) for m in ran}


def closer(gaps: dict, a: str, b: str) -> Word:
    """``better`` when method ``a``'s distances to retraining lie below ``b``'s beyond the two
    spreads (:func:`unlearnkit.verdict`), ``worse`` or ``tie``."""
    return verdict(gaps[a], gaps[b], higher_is_better=False)


def leaders(gaps: dict, exclude=("original", "retrain")) -> dict:
    """The closest method by mean distance and how it leads: ``best``, ``order`` (by mean),
    ``ties`` (methods within its spread), ``vs_next`` (its verdict against the runner-up),
    ``beats_original`` (methods closer than the original beyond the spread) and ``text`` (a
    sentence for the prose)."""
    means = {m: float(np.mean(v)) for m, v in gaps.items() if m not in exclude and len(v)}
    order = sorted(means, key=means.get)
    if not order:
        return dict(best=None, order=[], ties=[], vs_next=None, beats_original=[], text="no method ran")
    best = order[0]
    ties = [m for m in order[1:] if closer(gaps, best, m) == "tie"]
    vs_next = closer(gaps, best, order[1]) if len(order) > 1 else None
    if len(order) == 1:
        text = f"{best} (the only method run)"
    elif vs_next == "better":
        text = f"{best}, closer than the next ({order[1]}) beyond the spread"
    else:
        text = f"a tie: {', '.join([best] + ties)} (each within the spread of {best}, the closest by mean)"
    beats = [m for m in order if "original" in gaps and closer(gaps, m, "original") == "better"]
    return dict(best=best, order=order, ties=ties, vs_next=vs_next, beats_original=beats, text=text)


def pick_by_access(gaps_per_task: dict, access_order=ACCESS_ORDER) -> tuple[pd.DataFrame, list]:
    """For each access level and task, the method closest to retraining by mean, its ties, and
    whether it beats doing nothing (the original) beyond the spread. Returns the table and the
    list of "access on task" where no method of that access beats the original."""
    pick, no_beat = {}, []
    for t, gaps in gaps_per_task.items():
        means = {m: float(np.mean(v)) for m, v in gaps.items() if m not in ("original", "retrain") and len(v)}
        for a in access_order:
            cand = sorted([m for m in means if REGISTRY[m].record.access == a], key=means.get)
            if not cand:
                continue
            m = cand[0]
            tie = [x for x in cand[1:] if closer(gaps, m, x) == "tie"]
            beat = closer(gaps, m, "original") == "better"
            if not beat:
                no_beat.append(f"{a} on {t}")
            notes = [f"{means[m]:.1f}"] + ([f"ties: {', '.join(tie)}"] if tie else [])
            notes += [] if beat else ["not closer than the original"]
            pick.setdefault(a, {})[t] = f"{m} ({'; '.join(notes)})"
    table = pd.DataFrame(pick).T.reindex(list(access_order)).reindex(columns=list(gaps_per_task))
    return table.fillna("n/a").rename_axis("access level"), no_beat


def with_inapplicable(table: pd.DataFrame, task: str, methods) -> pd.DataFrame:
    """A ranking table of ``task`` with the methods that may not run on it appended as n/a rows
    (their access level kept)."""
    na = [m for m in methods if applicable(m, task) is not None]
    extra = pd.DataFrame("n/a", index=na, columns=table.columns)
    if "access" in table.columns:
        extra["access"] = [REGISTRY[m].record.access for m in na]
    return pd.concat([table, extra]).rename_axis(f"{task}: method")


def quality_display(tab: pd.DataFrame, names: dict | None = None) -> pd.DataFrame:
    """The per-example score table as the chapter shows it: F with its bootstrap std and 95 %
    interval, the final score, the median ε̂, the share of ε̂ = ∞ and the three accuracies."""
    names = names or {}
    out = pd.DataFrame(index=tab.index)
    out["F ± std (bootstrap)"] = [f"{f:.3f} ± {s:.3f}" for f, s in zip(tab["F"], tab["F std"])]
    out["95 % interval"] = [f"[{a:.3f}, {b:.3f}]" for a, b in zip(tab["F lo"], tab["F hi"])]
    out["final"] = tab["final"].astype(float).round(3)
    out["median ε̂"] = tab["eps median"].astype(float).round(2)
    out["ε̂ = ∞ (%)"] = tab["eps inf %"].astype(float).round(1)
    for c in ("train_forget", "train_retain", "test_retain"):
        out[names.get(c, c)] = tab[c].astype(float).round(1)
    return out.rename_axis("method")


def against_reference(tab: pd.DataFrame, method: str, reference: str) -> Word:
    """``not distinguishable from``, ``above`` or ``below``: the method's F against the reference's, by the
    spread rule of :func:`unlearnkit.verdict` on the bootstrap std (|ΔF| > std_a + std_b)."""
    f, s = tab["F"].astype(float), tab["F std"].astype(float)
    d = f[method] - f[reference]
    if abs(d) <= s[method] + s[reference]:
        return Word("not distinguishable from")
    return Word("above" if d > 0 else "below")


def identical_groups(sizes, n_examples: int, seed: int = 0) -> dict:
    """What perfect unlearning scores: two groups of ``n`` models drawn from one distribution
    (standard normal confidences on ``n_examples`` examples), for each ``n`` in ``sizes``.
    Returns ``{n: per-example scores}`` under the official rule."""
    from .. import quality as q

    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        a, b = rng.standard_normal((n, n_examples)), rng.standard_normal((n, n_examples))
        _, e = q.forget_quality(a, b, return_eps=True)
        out[n] = q.epsilon_score(e, n_bins=q.n_bins_for(n))
    return out


def marker_area(seconds, lo: float = 15, hi: float = 400) -> np.ndarray:
    """Marker areas on a log scale of wall time: 1 ms → ``lo``, 1000 s → ``hi`` (NaN → ``lo``)."""
    v = np.log10(np.clip(np.asarray(seconds, dtype=float), 1e-3, None))
    v = np.nan_to_num(v, nan=-3.0)
    return lo + (hi - lo) * (np.clip(v, -3, 3) + 3) / 6
