"""The per-example ε̂ of the NeurIPS 2023 unlearning challenge: the attack family, its grids and
the rates each attack reaches, computed fast (binary searches in sorted groups, a look-up table of
ratios).

Part of :mod:`unlearnkit.quality`, whose docstring states the rule (peaky examples, single
thresholds, intervals, zero rates) and the score built on ε̂. Explained in the showdown chapter
(``book/09_showdown.ipynb``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

DELTA = 1e-5  # the δ of (ε, δ) in the challenge
EPSILON_CAP = 50.0  # the ε of a "peaky" example (and the challenge's cap on every ε)
PEAKY_RATIO = 0.01  # a spread ratio under this makes an example "peaky"
BIN_WIDTH = 0.5  # width of the score's bins of ε
GRID = 100  # the official attacks' thresholds per unit of s
BUFFER = 2.0  # the official intervals' slack, in units of s
N_BINS = 14  # the number of scoring bins with 512 models per group (the challenge's setting)
_TABLE_MAX = 1 << 22  # largest look-up table of ratios (entries); beyond, ratios are computed


def _as_groups(unlearned, retrained):
    u = np.asarray(unlearned, dtype=float)
    r = np.asarray(retrained, dtype=float)
    if u.ndim == 1:
        u = u[:, None]
    if r.ndim == 1:
        r = r[:, None]
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(
            "unlearned and retrained must be (n_models, n_examples) arrays over the same "
            f"examples; got {u.shape} and {r.shape}."
        )
    if len(u) < 2 or len(r) < 2:
        raise ValueError(
            "Each group needs at least two models (the challenge used 512; 32 is a practical minimum)."
        )
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise ValueError("Confidences must be finite (a model that diverged has no confidence).")
    return u, r


def attack_rates(unlearned, retrained):
    """False-positive and false-negative rates of every single-threshold attack, per example.

    The attack "unlearned if s > t" is tried at t = −∞ and at every observed value. Returns
    ``(fpr, fnr)``, each ``(n_examples, n_thresholds)``: FPR = share of retrained models called
    unlearned, FNR = share of unlearned models called retrained. The reversed attack
    ("unlearned if s ≤ t") has rates (1 − FPR, 1 − FNR). A diagnostic: :func:`example_epsilon`
    scores its own attack family (single thresholds and intervals, directions fixed per example).
    Sort-based: memory grows with examples × models, not with their product with thresholds.
    """
    u, r = _as_groups(unlearned, retrained)
    nu, nr = len(u), len(r)
    v = np.concatenate([u, r]).T  # (E, N)
    is_u = np.concatenate([np.ones(nu), np.zeros(nr)])
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, 1)
    lab = is_u[order]
    cu, cr = np.cumsum(lab, 1), np.cumsum(1 - lab, 1)  # counts ≤ t
    # ties: a threshold inside a run of equal values takes the counts at the run's end
    n = v.shape[1]
    end = np.where(np.concatenate([sv[:, 1:] != sv[:, :-1], np.ones((len(sv), 1), bool)], 1), np.arange(n), n)
    end = np.minimum.accumulate(end[:, ::-1], 1)[:, ::-1]
    cu, cr = np.take_along_axis(cu, end, 1), np.take_along_axis(cr, end, 1)
    zero = np.zeros((len(sv), 1))
    cu, cr = np.concatenate([zero, cu], 1), np.concatenate([zero, cr], 1)  # t = −∞
    return (nr - cr) / nr, cu / nu


def max_epsilon(n_models: int) -> int:
    """The challenge's largest ε that still scores with ``n_models`` unlearned models: ⌈log(n − 1)⌉
    (2 for 8 models, 4 for 32, 5 for 128, 7 for 512; 0 for 2 models, where nothing scores)."""
    n = int(n_models)
    if n < 2:
        raise ValueError(f"The score needs at least two models per group, got {n}.")
    return int(math.ceil(math.log(n - 1)))


def n_bins_for(n_models: int, bin_width: float = BIN_WIDTH) -> int:
    """The number of scoring bins with ``n_models`` unlearned models: :func:`max_epsilon` / width
    (14 for 512 models, 10 for 128, 8 for 32)."""
    if bin_width <= 0:
        raise ValueError("bin_width must be positive.")
    return int(math.floor(max_epsilon(n_models) / bin_width + 1e-9))


def _pool(u, r):
    """Per example, which pooled value (sorted) is an unlearned one, and the bounds of its run of
    tied values: ``(is_u, first, gs, ge)``, each ``(E, N)``; ``first`` marks the start of a run,
    ``gs`` / ``ge`` give the first / last position of the run holding each position."""
    nu = len(u)
    v = np.concatenate([u, r]).T
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, 1)
    e, n = sv.shape
    idx = np.arange(n)
    first = np.ones((e, n), bool)
    first[:, 1:] = sv[:, 1:] != sv[:, :-1]
    last = np.ones((e, n), bool)
    last[:, :-1] = first[:, 1:]
    gs = np.maximum.accumulate(np.where(first, idx, 0), 1)
    ge = np.minimum.accumulate(np.where(last, idx, n)[:, ::-1], 1)[:, ::-1]
    return order < nu, first, gs, ge


def _ratio(fn, fp, nx, ny, c, floor, valid=None):
    """Per threshold max((1 − δ − FPR) / FNR, (1 − δ − FNR) / FPR) from counts: ``fn`` models of the
    claimed group outside the claimed region, ``fp`` of the other group inside (ε = log of it;
    values ≤ 1 mean ε = 0). Without a floor, thresholds with a zero rate give 0 (discarded); with
    one, a zero rate in a denominator reads as the floor."""
    fnr, fpr = fn / nx, fp / ny
    with np.errstate(divide="ignore", invalid="ignore"):
        if floor is None:
            r = np.maximum((c - fpr) / fnr, (c - fnr) / fpr)
            ok = (fn > 0) & (fp > 0)
        else:
            r = np.maximum((c - fpr) / np.maximum(fnr, floor[0]), (c - fnr) / np.maximum(fpr, floor[1]))
            ok = np.ones(r.shape, bool)
    if valid is not None:
        ok &= valid
    return np.where(ok & ~np.isnan(r), r, 0.0)


def _single(lab_x, first, nx, ny, c, floor):
    """Best ratio and perfect separation of the attacks "claimed group if s ≥ t" (t at each run of
    tied values: every distinct pair of rates); ``lab_x``: (E, N), sorted pooled values of the
    claimed group."""
    n = lab_x.shape[1]
    fn = np.cumsum(lab_x, 1) - lab_x  # claimed models below t
    fp = ny - (np.arange(n) - fn)  # other models at or above t
    perfect = ((fn == 0) & (fp == 0) & first).any(1) if floor is None else np.zeros(len(fn), bool)
    return _ratio(fn, fp, nx, ny, c, floor, first).max(1), perfect


def _interval(lab_x, gs, ge, nx, ny, c, floor):
    """Best ratio and perfect separation of the attacks "claimed group if t1 ≤ s ≤ t2".

    An interval's claimed models form a *core*: from the run of one claimed model to the run of
    a later one (k = 0..n_x − 1 claimed models apart), with the other group's models between them;
    the interval may add runs of the other group on either side, which only raises the FPR.
    So each core counts as itself, and, when it holds no model of the other group (FPR = 0, a
    discarded threshold), as itself plus the smaller adjacent run of the other group (the least
    FPR > 0 with these claimed models). O(n_x²) per example, vectorised over examples.
    """
    e, n = lab_x.shape
    cx = np.zeros((e, n + 1))
    cx[:, 1:] = np.cumsum(lab_x, 1)
    cy = np.arange(n + 1)[None, :] - cx
    px = np.argsort(~lab_x, axis=1, kind="stable")[:, :nx]  # positions of the claimed models
    s = np.take_along_axis(gs, px, 1)  # run of each: positions [s, t)
    t = np.take_along_axis(ge, px, 1) + 1
    sx, sy = np.take_along_axis(cx, s, 1), np.take_along_axis(cy, s, 1)
    tx, ty = np.take_along_axis(cx, t, 1), np.take_along_axis(cy, t, 1)
    if floor is None:  # runs of the other group alone
        q = np.maximum(s - 1, 0)  # next to each run, else ∞
        q0 = np.take_along_axis(gs, q, 1)
        pure = (s > 0) & (np.take_along_axis(cx, q + 1, 1) == np.take_along_axis(cx, q0, 1))
        left = np.where(pure, q + 1 - q0, np.inf)
        q = np.minimum(t, n - 1)
        q1 = np.take_along_axis(ge, q, 1) + 1
        pure = (t < n) & (np.take_along_axis(cx, q1, 1) == np.take_along_axis(cx, q, 1))
        right = np.where(pure, q1 - q, np.inf)
    best = np.zeros(e)
    perfect = np.zeros(e, bool)
    for k in range(nx):
        m = nx - k
        fn = nx - (tx[:, k:] - sx[:, :m])
        fp = ty[:, k:] - sy[:, :m]
        if floor is None:
            perfect |= ((fn == 0) & (fp == 0)).any(1)
            fp = np.where(fp > 0, fp, np.minimum(left[:, :m], right[:, k:]))
        best = np.maximum(best, _ratio(fn, fp, nx, ny, c, floor).max(1))
    return best, perfect


def _ratio_table(nx, ny, c, floor):
    """:func:`_ratio` of every pair of counts, ``(nx + 1, ny + 1)``, with ∞ at FNR = FPR = 0
    (a perfect separation) unless a floor is given."""
    fn, fp = np.meshgrid(np.arange(nx + 1.0), np.arange(ny + 1.0), indexing="ij")
    t = _ratio(fn, fp, nx, ny, c, floor)
    if floor is None:
        t[0, 0] = np.inf
    return t


class _Work:
    """Work arrays of the interval grid, reused from one example to the next (allocating some
    ten arrays of 160,000 numbers per example costs more in page faults than the arithmetic)."""

    def __init__(self):
        self.size = 0

    def get(self, size):
        if size > self.size:
            self.size = size
            self.f, self.g = np.empty(size), np.empty(size)
            self.i, self.cx, self.cy = (np.empty(size, np.intp) for _ in range(3))
            self.hit = np.empty(size, bool)
        return (self.f[:size], self.g[:size], self.i[:size], self.cx[:size], self.cy[:size], self.hit[:size])


def _left_grid(start, stop, num, out):
    """``np.linspace(start, stop, num, axis=-1)`` for arrays ``start``, ``stop`` (the same
    arithmetic, value for value), written into ``out`` of shape ``(len(start), num)``."""
    step = (stop - start) / (num - 1)
    np.multiply(np.arange(num, dtype=float)[None, :], step[:, None], out=out)
    out += start[:, None]
    out[:, -1] = stop
    return out


def _count_below(xs, ys, q, work, n_buckets: int = 1 << 14):
    """``(searchsorted(xs, q), searchsorted(ys, q))`` (values strictly below each query) for the
    flat queries ``q``, exactly, in ``work``'s arrays (``q`` may be its first): queries fall
    into buckets of equal width over their range; where no value of either group shares a
    query's bucket, the count is the number of values in lower buckets (the bucket index is
    non-decreasing in the value, also in floating point); the other queries take a binary
    search."""
    _, fb, ib, cx, cy, hit = work
    lo, hi = float(q.min()), float(q.max())
    if not hi > lo:
        cx[:], cy[:] = np.searchsorted(xs, q, "left"), np.searchsorted(ys, q, "left")
        return cx, cy
    inv = n_buckets / (hi - lo)

    def bucket(v, out):
        np.subtract(v, lo, out=out)
        out *= inv
        np.floor(out, out=out)
        np.clip(out, -1, n_buckets, out=out)
        return out

    bx = np.bincount(bucket(xs, np.empty(len(xs))).astype(np.intp) + 1, minlength=n_buckets + 2)
    by = np.bincount(bucket(ys, np.empty(len(ys))).astype(np.intp) + 1, minlength=n_buckets + 2)
    below_x = np.concatenate([[0], np.cumsum(bx)[:-1]])
    below_y = np.concatenate([[0], np.cumsum(by)[:-1]])
    np.copyto(ib, bucket(q, fb), casting="unsafe")
    ib += 1
    np.take((bx + by) > 0, ib, out=hit)
    np.take(below_x, ib, out=cx)
    np.take(below_y, ib, out=cy)
    if hit.any():
        at = np.flatnonzero(hit)
        cx[at] = np.searchsorted(xs, q[at], "left")
        cy[at] = np.searchsorted(ys, q[at], "left")
    return cx, cy


def _best_ratio(fn, fp, nx, ny, table, two_sided, key, out):
    """The largest ratio over thresholds with counts ``fn``, ``fp`` (int arrays, kept intact);
    ``key``, ``out``: work arrays of their size, or None."""
    sides = [(fn, fp, nx, ny, False)]
    if two_sided:  # the same regions claimed for the other group
        sides.append((fp, fn, ny, nx, True))
    best = 0.0
    for a, b, na, nb, flip in sides:  # flipped: counts ny − fp and nx − fn
        ratio, tab = table(na, nb)
        if tab is None:
            a, b = (na - a, nb - b) if flip else (a, b)
            best = max(best, float(ratio(a.astype(float), b.astype(float)).max()))
            continue
        if key is None:
            key, out = np.empty(len(fn), np.intp), np.empty(len(fn))
        if flip:  # (ny − fp) (nx + 1) + nx − fn
            np.subtract(na, a, out=key)
            key *= nb + 1
            key += nb
            key -= b
        else:
            np.multiply(a, nb + 1, out=key)
            key += b
        best = max(best, float(np.take(tab.ravel(), key, out=out).max()))
    return best


def _official_one(pos, neg, table, two_sided, work):
    """The challenge's two grids of attacks on one example: the best ratio (∞: perfect separation).

    ``pos``: the group with the larger median, ``neg``: the other. Single thresholds: "pos if
    s ≥ t" at ``ceil(100 · range)`` evenly spaced t from the smallest to the largest pooled value
    (built in float32, as the challenge's code does). Intervals: "X if t1 ≤ s ≤ t2", X the group
    with the smaller range w (``neg`` on a tie), t2 at ``ceil(100 · 4)`` evenly spaced points from
    max(X) − 2 to max(X) + 2 and, for each t2, t1 at 400 evenly spaced points from t2 − w − 2 to
    t2 − w + 2: intervals about as wide as X's own range, near X's extremes. About 160,000
    intervals; each count is a binary search in the sorted group (:func:`_count_below`), each
    ratio a look-up in ``table(n_claimed, n_other)`` (``(function of counts, its table or
    None)``); ``work``: a :class:`_Work`.
    """
    ps, ns = np.sort(pos), np.sort(neg)
    lo, hi = min(ps[0], ns[0]), max(ps[-1], ns[-1])
    k = int(math.ceil((hi - lo) * GRID))
    th = (
        torch.linspace(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64), k)
        .double()
        .numpy()
    )
    fn = np.searchsorted(ps, th, "left")  # pos below t
    fp = len(ns) - np.searchsorted(ns, th, "left")  # neg at or above t
    best = _best_ratio(fn, fp, len(ps), len(ns), table, two_sided, None, None) if k else 0.0
    xs, ys = (ps, ns) if ps[-1] - ps[0] < ns[-1] - ns[0] else (ns, ps)
    nx, ny = len(xs), len(ys)
    w = xs[-1] - xs[0]
    t_lo, t_hi = xs[0] + w - BUFFER, xs[-1] + BUFFER
    right = np.linspace(t_lo, t_hi, int(math.ceil((t_hi - t_lo) * GRID)))
    n_left = int(math.ceil(2 * BUFFER * GRID))
    wk = work.get(len(right) * n_left)
    left = _left_grid(right - w - BUFFER, right - w + BUFFER, n_left, wk[0].reshape(len(right), n_left))
    cx, cy = _count_below(xs, ys, wk[0], wk)  # below t1
    cx, cy = cx.reshape(len(right), n_left), cy.reshape(len(right), n_left)
    del left
    np.subtract(np.searchsorted(xs, right, "right")[:, None], cx, out=cx)  # in [t1, t2]
    np.subtract(np.searchsorted(ys, right, "right")[:, None], cy, out=cy)
    np.maximum(cx, 0, out=cx)  # t1 > t2: empty
    np.maximum(cy, 0, out=cy)
    np.subtract(nx, cx, out=cx)  # X outside
    return max(best, _best_ratio(cx.ravel(), cy.ravel(), nx, ny, table, two_sided, wk[2], wk[1]))


def example_epsilon(
    unlearned,
    retrained,
    delta: float = DELTA,
    floor=None,
    *,
    attacks: str = "official",
    two_sided: bool = False,
    peaky: float | None = PEAKY_RATIO,
) -> np.ndarray:
    """ε̂ of each forget example from the best attack of the challenge's family (module docstring).

    ``unlearned``, ``retrained``: ``(n_models, n_examples)`` confidences (e.g. from
    :func:`confidences`), or 1-D arrays for one example. ``delta``: the δ of (ε, δ). Returns
    ε̂ ≥ 0 per example: ``inf`` where some attack separates the groups perfectly (FPR = FNR = 0),
    :data:`EPSILON_CAP` (50) where the example is peaky, 0 where no attack keeps both rates
    positive.

    ``attacks``: ``"official"`` (the challenge's grids of single thresholds and of intervals,
    as in the module docstring), ``"exhaustive"`` (every single threshold and every interval between
    observed values, with the same claimed groups: a stronger attacker whose ε̂ is never below the
    official one) or ``"single"`` (every single threshold between observed values, no intervals).
    Options beyond the official rule, all off by default: ``floor`` (a rate, or ``"1/n"`` for
    1 / the group's size) reads a zero rate as the floor instead of discarding the threshold, so
    a perfect separation gives the finite log((1 − δ) / floor); ``two_sided=True`` lets every
    attack claim either group (both directions of every threshold, inside and outside of every
    interval); ``peaky=None`` turns the peaky rule off.
    """
    if not 0 <= delta < 1:
        raise ValueError(f"delta must lie in [0, 1), got {delta}.")
    if attacks not in ("official", "exhaustive", "single"):
        raise ValueError(f"attacks must be 'official', 'exhaustive' or 'single', got {attacks!r}.")
    u, r = _as_groups(unlearned, retrained)
    nu, nr = len(u), len(r)
    if floor is None:
        fl_u = fl_r = None
    elif isinstance(floor, str):
        if floor != "1/n":
            raise ValueError(f"floor must be None, a positive rate or '1/n', got {floor!r}.")
        fl_u, fl_r = 1.0 / nu, 1.0 / nr
    else:
        fl_u = fl_r = float(floor)
        if not fl_u > 0:
            raise ValueError("floor must be positive.")
    c = 1.0 - delta
    ptp_u, ptp_r = np.ptp(u, 0), np.ptp(r, 0)
    eps = np.zeros(u.shape[1])
    if peaky is not None:
        hi, lo = np.maximum(ptp_u, ptp_r), np.minimum(ptp_u, ptp_r)
        is_peaky = (hi > 0) & (lo < peaky * hi)
    else:
        is_peaky = np.zeros(u.shape[1], bool)
    eps[is_peaky] = EPSILON_CAP
    todo = np.flatnonzero(~is_peaky)
    # the claimed groups: single thresholds claim the larger median (the unlearned group on a
    # tie), intervals the smaller range (max − min) of the two (on a tie, the other group)
    u_top = ~(np.median(r, 0) > np.median(u, 0))
    if attacks == "official":
        tables = {}

        def table(nx, ny):  # (ratio of counts, its table if small enough, else None)
            if (nx, ny) not in tables:
                fl = None if fl_u is None else ((fl_u, fl_r) if nx == nu else (fl_r, fl_u))

                def ratio(fn, fp, fl=fl, nx=nx, ny=ny):
                    r = _ratio(fn, fp, nx, ny, c, fl)
                    return np.where((fn == 0) & (fp == 0), np.inf, r) if fl is None else r

                small = (nx + 1) * (ny + 1) <= _TABLE_MAX
                tables[nx, ny] = (ratio, _ratio_table(nx, ny, c, fl) if small else None)
            return tables[nx, ny]

        work = _Work()
        for i in todo:
            pos, neg = (u[:, i], r[:, i]) if u_top[i] else (r[:, i], u[:, i])
            eps[i] = math.log(max(_official_one(pos, neg, table, two_sided, work), 1.0))
        return eps
    top_range, other_range = np.where(u_top, ptp_u, ptp_r), np.where(u_top, ptp_r, ptp_u)
    u_in = np.where(top_range < other_range, u_top, ~u_top)
    chunk = 64
    for i in range(0, len(todo), chunk):
        idx = todo[i : i + chunk]
        is_u, first, gs, ge = _pool(u[:, idx], r[:, idx])
        ratio, perfect = np.zeros(len(idx)), np.zeros(len(idx), bool)
        fams = [("single", u_top[idx])] + ([("interval", u_in[idx])] if attacks == "exhaustive" else [])
        for fam, claim_u in fams:
            for cu in [claim_u, ~claim_u] if two_sided else [claim_u]:
                for x_is_u in (True, False):
                    sel = np.flatnonzero(cu == x_is_u)
                    if not len(sel):
                        continue
                    lab = is_u[sel] if x_is_u else ~is_u[sel]
                    nx, ny = (nu, nr) if x_is_u else (nr, nu)
                    fl = None if fl_u is None else ((fl_u, fl_r) if x_is_u else (fl_r, fl_u))
                    if fam == "single":
                        rr, pp = _single(lab, first[sel], nx, ny, c, fl)
                    else:
                        rr, pp = _interval(lab, gs[sel], ge[sel], nx, ny, c, fl)
                    ratio[sel] = np.maximum(ratio[sel], rr)
                    perfect[sel] |= pp
        e = np.log(np.maximum(ratio, 1.0))
        e[perfect] = np.inf
        eps[idx] = e
    return eps
