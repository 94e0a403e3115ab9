"""The per-example forget-quality score of the NeurIPS 2023 unlearning challenge (uk.metrics,
from unlearnkit.quality) on synthetic confidences whose ε is known, its binning, its bootstrap
error bar and the final score's bounds."""

import inspect
import math

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit import epsilon as E
from unlearnkit import metrics
from unlearnkit import quality as q

D = 1e-5  # the challenge's δ


def test_logit_confidence_matches_naive_and_stays_finite():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 10, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    p = torch.softmax(z.double(), 1)[torch.arange(50), y]
    naive = p.log() - (1 - p).log()
    assert torch.allclose(metrics.logit_confidence(z, y), naive, atol=1e-9)
    big = torch.tensor([[60.0, 0.0, -3.0]])  # p_y rounds to 1 in float32
    s = metrics.logit_confidence(big, torch.tensor([0]))
    assert math.isfinite(float(s)) and abs(float(s) - (60 - math.log(1 + math.exp(-3)))) < 1e-9
    with pytest.raises(ValueError, match="one label per row"):
        metrics.logit_confidence(z, y[:3])


def test_defaults_are_the_challenges():
    assert q.DELTA == 1e-5 and q.EPSILON_CAP == 50
    for f in (q.example_epsilon, q.forget_quality, q.forget_quality_ci):
        assert inspect.signature(f).parameters["delta"].default == 1e-5
    assert inspect.signature(q.example_epsilon).parameters["floor"].default is None
    assert inspect.signature(q.example_epsilon).parameters["attacks"].default == "official"
    # ⌈log(n − 1)⌉ and twice as many bins of width 0.5
    assert [q.max_epsilon(n) for n in (2, 3, 8, 32, 128, 512)] == [0, 1, 2, 4, 5, 7]
    assert [q.n_bins_for(n) for n in (2, 8, 32, 128, 512)] == [0, 4, 8, 10, 14]
    assert q.n_bins_for(512, bin_width=1.0) == 7
    # the default δ is the one used: hand-worked ε below depends on it
    u, r = [0.0, 1, 2, 3], [2.5, 4, 5, 6]
    assert q.example_epsilon(u, r)[0] == pytest.approx(math.log(3 - 4 * D), abs=1e-12)
    assert q.example_epsilon(u, r, delta=0.01)[0] == pytest.approx(math.log(3 - 4 * 0.01), abs=1e-12)


def test_one_zero_rate_thresholds_are_discarded():
    # n = 4 per group, one example: unlearned 0, 1, 2, 3; retrained 2.5, 4, 5, 6.
    # Medians 1.5 < 4.5, so single thresholds claim "retrained if s ≥ t":
    #   t ≤ 2.5      FNR = 0   (no retrained below), FPR ≥ 1/4   -> one zero rate: discarded
    #   2.5 < t ≤ 3  FNR = 1/4 (2.5 below),        FPR = 1/4 (3) -> ε = log((1 − δ − 1/4) / (1/4))
    #                                                               = log(3 − 4δ)
    #   3 < t ≤ 6    FNR ≥ 1/4, FPR = 0                          -> discarded
    #   t > 6        FNR = 1, FPR = 0                            -> discarded
    # Intervals claim the unlearned group (range 3 < 3.5): {0, 1, 2} alone has FPR = 0
    # (discarded), {1, 2, 3} or {0, 1, 2, 3} must hold 2.5: FNR = 1/4, FPR = 1/4 -> log(3 − 4δ)
    # again, or FNR = 0 (discarded); smaller sets do worse (e.g. {2, 3}: log 2).
    u, r = [0.0, 1, 2, 3], [2.5, 4, 5, 6]
    want = math.log(3 - 4 * D)
    for attacks in ("official", "exhaustive", "single"):
        assert q.example_epsilon(u, r, attacks=attacks)[0] == pytest.approx(want, abs=1e-12)
    # reading the zero rate as 1/n instead (not the official rule) lets "retrained if s ≥ 4"
    # (FNR = 1/4, FPR = 0 -> 1/4) certify log((1 − δ) / (1/4)) = log(4 (1 − δ)), more
    for attacks in ("official", "exhaustive", "single"):
        got = q.example_epsilon(u, r, floor="1/n", attacks=attacks)[0]
        assert got == pytest.approx(math.log(4 * (1 - D)), abs=1e-12)
    assert q.example_epsilon(u, r, floor=0.25)[0] == pytest.approx(math.log(4 * (1 - D)), abs=1e-12)
    # with 4 models: 4 bins; ε = log 3 ≈ 1.10 lies in [1, 1.5): a quarter point
    assert q.forget_quality(u, r) == 0.25


def test_perfect_separation_is_infinite_and_scores_zero():
    rng = np.random.default_rng(1)
    n = 64
    u, r = rng.normal(10, 1, size=(n, 5)), rng.normal(0, 1, size=(n, 5))
    for attacks in ("official", "exhaustive", "single"):
        assert np.isinf(q.example_epsilon(u, r, attacks=attacks)).all()
    assert metrics.forget_quality(u, r) == 0.0
    f, eps = metrics.forget_quality(u, r, return_eps=True)
    assert f == 0.0 and np.isinf(eps).all()
    # the former convention, kept as an option: a zero rate read as 1/n caps ε at log((1 − δ) n)
    eps = metrics.example_epsilon(u, r, delta=0.01, floor="1/n")
    assert np.allclose(eps, math.log((1 - 0.01) * n))


def test_interval_attack_catches_a_group_inside_the_other():
    # 8 unlearned models in the middle, 8 retrained ones split on both sides; both medians 0,
    # so single thresholds claim the unlearned group (tie) with "unlearned if s ≥ t". Best:
    # t = -0.2: FNR = 1/8 (only -0.3 below), FPR = 4/8 (2.5, 3, 3.5, 4 above) ->
    # log((1 − δ − 1/2) / (1/8)) = log(4 − 8δ); t = -0.3 catches every unlearned model but has
    # FNR = 0 (discarded). The interval [-0.3, 0.3] claims the narrower (unlearned) group with
    # FPR = FNR = 0: a perfect separation.
    u = np.array([-0.3, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.3])
    r = np.array([-4, -3.5, -3, -2.5, 2.5, 3, 3.5, 4])
    single = q.example_epsilon(u, r, attacks="single")[0]
    assert single == pytest.approx(math.log(4 - 8 * D), abs=1e-12)
    assert np.isinf(q.example_epsilon(u, r)[0])
    assert np.isinf(q.example_epsilon(u, r, attacks="exhaustive")[0])
    assert q.forget_quality(u, r, attacks="single") == 0.25  # log 4 in [1, 1.5), 4 bins
    assert q.forget_quality(u, r) == 0.0
    # blurred: intervals still see far more than single thresholds
    rng = np.random.default_rng(7)
    u = rng.normal(0, 0.3, size=(32, 30))
    r = np.where(rng.random((32, 30)) < 0.5, -1, 1) * rng.normal(3, 0.5, size=(32, 30))
    e_off, e_single = q.example_epsilon(u, r), q.example_epsilon(u, r, attacks="single")
    assert np.median(e_off) > np.median(e_single) + 1


def test_peaky_examples_score_fifty():
    rng = np.random.default_rng(2)
    r = np.clip(rng.normal(0, 1, size=(32, 6)), -1.9, 1.9)
    r[0], r[1] = -2.0, 2.0  # every range exactly 4
    u = 0.3 + np.array([0.0, 0.039] + [0.02] * 30)[:, None] * np.ones((1, 6))  # range 0.039
    eps = q.example_epsilon(u, r)
    assert (eps == 50).all()
    assert q.forget_quality(u, r) == 0.0
    assert (q.example_epsilon(u, r, peaky=None) != 50).all()
    u2 = 0.3 + np.array([0.0, 0.041] + [0.02] * 30)[:, None] * np.ones((1, 6))  # 1.025 %
    assert (q.example_epsilon(u2, r) != 50).all()
    assert (q.example_epsilon(r, u) == 50).all()  # either group can be the peaky one
    # both constant and equal: no attack keeps both rates positive, ε = 0
    c = np.ones((8, 2))
    assert (q.example_epsilon(c, c.copy()) == 0).all()


def test_identical_groups_score_the_measured_baseline():
    # the module docstring's measured values: about 0.19 at 32, 128 and 512 models per group
    rng = np.random.default_rng(3)
    for n, e in ((32, 300), (128, 120)):
        u, r = rng.normal(size=(n, e)), rng.normal(size=(n, e))
        f, eps = q.forget_quality(u, r, return_eps=True)
        assert abs(f - 0.19) < 0.035, (n, f)
        assert 1.2 < np.median(eps) < 2.0 and np.isfinite(eps).all()
    # a clear difference scores far lower, and the stronger exhaustive attacker lower still
    u, r = rng.normal(size=(32, 120)), rng.normal(size=(32, 120))
    assert q.forget_quality(u + 1.5, r) < 0.08
    assert q.forget_quality(u, r, attacks="exhaustive") < q.forget_quality(u, r) - 0.03


def _direct_official(u, r, delta=D):
    """The challenge's attack grids, counted model by model (slow, for a few small examples)."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    th = (
        torch.linspace(
            torch.tensor(lo, dtype=torch.float64),
            torch.tensor(hi, dtype=torch.float64),
            int(math.ceil((hi - lo) * 100)),
        )
        .double()
        .numpy()
    )
    rates = [((pos[:, None] < th).mean(0), (neg[:, None] >= th).mean(0))]
    x, y = (neg, pos) if np.ptp(pos) >= np.ptp(neg) else (pos, neg)
    w = np.ptp(x)
    right = np.linspace(x.min() + w - 2, x.max() + 2, int(math.ceil((x.max() + 2 - (x.min() + w - 2)) * 100)))
    left = np.concatenate([np.linspace(t - w - 2, t - w + 2, 400) for t in right])
    right = np.repeat(right, 400)
    inside = lambda v: (left <= v[:, None]) & (v[:, None] <= right)  # noqa: E731
    rates.append((1 - inside(x).mean(0), inside(y).mean(0)))
    best = 0.0
    for fnr, fpr in rates:
        if ((fnr == 0) & (fpr == 0)).any():
            return math.inf
        keep = (fnr > 0) & (fpr > 0)
        with np.errstate(invalid="ignore"):
            e = np.fmax(
                np.log(1 - delta - fpr[keep]) - np.log(fnr[keep]),
                np.log(1 - delta - fnr[keep]) - np.log(fpr[keep]),
            )
        e = e[~np.isnan(e)]
        if e.size:
            best = max(best, float(e.max()))
    return max(best, 0.0)


def test_official_grids_match_a_direct_count():
    rng = np.random.default_rng(4)
    u = np.concatenate(
        [rng.normal(0, 1, (6, 3)), np.round(rng.normal(0, 1, (6, 2)), 1), rng.normal(0, 0.2, (6, 1))], 1
    )
    r = np.concatenate(
        [rng.normal(0.5, 1.5, (6, 3)), np.round(rng.normal(0.3, 1, (6, 2)), 1), rng.normal(0, 2, (6, 1))], 1
    )
    got = q.example_epsilon(u, r)
    want = [_direct_official(u[:, i], r[:, i]) for i in range(u.shape[1])]
    assert got == pytest.approx(want, abs=1e-9)
    # the ratios computed without their look-up table (for many models) agree
    g = np.random.default_rng(10)  # groups of 9 and 6
    u9, r6 = g.normal(0, g.uniform(0.3, 3, 30), (9, 30)), g.normal(0.5, 1, (6, 30))
    floored = q.example_epsilon(u9, r6, floor="1/n")
    one, two = q.example_epsilon(u9, r6), q.example_epsilon(u9, r6, two_sided=True)
    old = E._TABLE_MAX
    try:
        E._TABLE_MAX = 0
        assert q.example_epsilon(u, r) == pytest.approx(got, abs=1e-12)
        assert q.example_epsilon(u9, r6, floor="1/n") == pytest.approx(floored, abs=1e-12)
        assert q.example_epsilon(u9, r6, two_sided=True) == pytest.approx(two, abs=1e-12)
    finally:
        E._TABLE_MAX = old
    assert (two >= one).all() and (two > one).any() and (floored < np.inf).all()


def test_grid_counts_are_exact():
    # the bucketed counts of the interval grid equal binary searches, also for values that
    # coincide with queries or share their buckets
    rng = np.random.default_rng(9)
    for t in range(20):
        xs = np.sort(np.round(rng.normal(size=rng.integers(2, 600)), 1 + t % 3))
        ys = np.sort(np.round(rng.normal(size=rng.integers(2, 600)), 2))
        qs = np.round(rng.uniform(-3, 3, 4000), 1 + t % 3) if t % 2 else rng.uniform(-3, 3, 4000)
        qs = np.concatenate([qs, xs, ys])
        wk = E._Work().get(len(qs))
        wk[0][:] = qs
        cx, cy = E._count_below(xs, ys, wk[0], wk)
        assert (cx == np.searchsorted(xs, qs)).all() and (cy == np.searchsorted(ys, qs)).all()
        assert (wk[0] == qs).all()  # the queries survive
    st = rng.normal(size=401)
    grid = E._left_grid(st - 3.3, st + 0.7, 400, np.empty((401, 400)))
    assert np.array_equal(grid, np.linspace(st - 3.3, st + 0.7, 400, axis=-1))


def _brute(u, r, attacks, two_sided=False, delta=D):
    """Every threshold and interval between observed values, one by one."""
    top, bot = (r, u) if np.median(r) > np.median(u) else (u, r)
    x, y = (top, bot) if np.ptp(top) < np.ptp(bot) else (bot, top)
    vals = np.unique(np.concatenate([u, r]))
    regions = [
        (a, b, lambda s, t=t: s >= t) for a, b in [(top, bot)] + [(bot, top)] * two_sided for t in vals
    ]
    if attacks == "exhaustive":
        regions += [
            (a, b, lambda s, lo=lo, hi=hi: (s >= lo) & (s <= hi))
            for a, b in [(x, y)] + [(y, x)] * two_sided
            for i, lo in enumerate(vals)
            for hi in vals[i:]
        ]
    best = 0.0
    for a, b, pred in regions:
        fnr, fpr = 1 - pred(a).mean(), pred(b).mean()
        if fnr == 0 and fpr == 0:
            return math.inf
        if fnr == 0 or fpr == 0:
            continue
        with np.errstate(invalid="ignore"):
            e = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
        if not np.isnan(e):
            best = max(best, e)
    return best


def test_exhaustive_and_single_match_brute_force_with_ties():
    rng = np.random.default_rng(5)
    for trial in range(12):
        nu, nr = rng.integers(3, 8, size=2)
        if trial % 2:
            u, r = rng.integers(0, 5, (nu, 4)).astype(float), rng.integers(1, 6, (nr, 4)).astype(float)
        else:
            u, r = rng.normal(0, rng.uniform(0.3, 2), (nu, 4)), rng.normal(0.3, 1, (nr, 4))
        for attacks in ("exhaustive", "single"):
            for two in (False, True):
                got = q.example_epsilon(u, r, attacks=attacks, two_sided=two, peaky=None)
                want = [_brute(u[:, i], r[:, i], attacks, two) for i in range(4)]
                assert got == pytest.approx(want, abs=1e-12), (trial, attacks, two)
        off = q.example_epsilon(u, r, peaky=None)
        assert (q.example_epsilon(u, r, attacks="exhaustive", peaky=None) >= off - 1e-12).all()
        assert (q.example_epsilon(u, r, two_sided=True, peaky=None) >= off - 1e-12).all()


def test_shifted_gaussians_match_the_known_epsilon():
    # Gaussians N(0,1) vs N(mu,1): the best threshold attack's ε at δ is
    # max_t log((1-δ-FPR)/FNR) with FPR = Φ(-t), FNR = Φ(t-mu); compute it exactly.
    from scipy.stats import norm

    mu, delta = 1.0, 0.05
    t = np.linspace(-6, 8, 20001)
    fpr, fnr = norm.sf(t), norm.cdf(t - mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.nanmax(np.log((1 - delta - fpr) / fnr))
    rng = np.random.default_rng(2)
    u, r = rng.normal(mu, 1, size=(20000, 1)), rng.normal(0, 1, size=(20000, 1))
    for attacks in ("single", "official"):
        est = metrics.example_epsilon(u, r, delta=delta, attacks=attacks)[0]
        assert abs(est - e) < 0.1, (attacks, est, e)
    assert metrics.example_epsilon(u[:, 0], r[:, 0], delta=delta, attacks="single").shape == (1,)


def test_sorted_rates_match_brute_force_with_ties():
    rng = np.random.default_rng(5)
    u = rng.integers(0, 4, size=(9, 6)).astype(float)  # many ties
    r = rng.integers(1, 5, size=(7, 6)).astype(float)
    fpr, fnr = metrics.attack_rates(u, r)
    t = np.concatenate([np.full((1, 6), -np.inf), u, r]).T
    bf_fpr = (r.T[:, None, :] > t[:, :, None]).mean(2)
    bf_fnr = (u.T[:, None, :] <= t[:, :, None]).mean(2)
    for e in range(6):  # the same set of (FPR, FNR) pairs, threshold order aside
        assert sorted(zip(fpr[e], fnr[e])) == sorted(zip(bf_fpr[e], bf_fnr[e]))
    same = rng.normal(size=(8, 3))
    for attacks in ("official", "exhaustive", "single"):
        assert (metrics.example_epsilon(same, same.copy(), attacks=attacks) == 0).all()


def test_binning_and_score():
    eps = np.array([0.0, 0.49, 0.4999999, 0.5, 0.99, 1.0, 6.49, 6.5, 6.99, 7.0, 50, np.inf])
    assert metrics.epsilon_bins(eps).tolist() == [0, 0, 0, 1, 1, 2, 12, 13, 13, 14, 14, 14]
    assert metrics.epsilon_score(eps).tolist() == [
        1,
        1,
        1,
        0.5,
        0.5,
        0.25,
        2.0**-12,
        2.0**-13,
        2.0**-13,
        0,
        0,
        0,
    ]
    # 1-based bin j scores 2 / 2^j
    j = metrics.epsilon_bins(eps[:9]) + 1
    assert np.allclose(metrics.epsilon_score(eps[:9]), 2 / 2.0**j)
    assert metrics.epsilon_bins([0.3, 0.7], bin_width=0.25, n_bins=2).tolist() == [1, 2]
    assert metrics.epsilon_score([0.0, 0.1], n_bins=0).tolist() == [0, 0]  # 2 models
    with pytest.raises(ValueError, match="non-negative"):
        metrics.epsilon_bins([-1.0])
    with pytest.raises(ValueError, match="bin_width"):
        metrics.epsilon_bins([1.0], bin_width=0)


def test_the_number_of_models_sets_the_bins():
    # 32 models: ⌈log 31⌉ = 4, so ε = log 47 ≈ 3.85 scores 2^-7 in the last bin [3.5, 4) and
    # ε = 4 nothing; with 64 models (⌈log 63⌉ = 5) ε = 4 scores 2^-8
    assert q.epsilon_score([math.log(47)], n_bins=q.n_bins_for(32))[0] == 2.0**-7
    assert q.epsilon_score([4.0], n_bins=q.n_bins_for(32))[0] == 0
    assert q.epsilon_score([4.0], n_bins=q.n_bins_for(64))[0] == 2.0**-8
    # the count is that of the unlearned models: 8 unlearned (⌈log 7⌉ = 2) against 64 retrained.
    # Retrained 0 and 63 values from 10 up, unlearned 0.5 to 1.1 and one 10.5: "retrained if
    # s ≥ t" for 1.1 < t ≤ 10 has FNR = 1/64, FPR = 1/8, so ε = log((1 − δ − 1/8) 64)
    # = log(56 − 64δ) ≈ 4.03: beyond the last bin with 8 unlearned models, 2^-8 with 14 bins
    r = np.concatenate([[0.0], 10 + 0.01 * np.arange(63)])
    u = np.concatenate([[10.5], 0.5 + 0.1 * np.arange(7)])
    assert q.example_epsilon(u, r)[0] == pytest.approx(math.log(56 - 64 * D), abs=1e-12)
    assert q.forget_quality(u, r) == 0.0
    assert q.forget_quality(u, r, n_bins=14) == 2.0**-8
    rng = np.random.default_rng(6)
    u, r = rng.normal(size=(32, 50)), rng.normal(size=(32, 50))
    f, eps = q.forget_quality(u, r, return_eps=True)
    assert f == pytest.approx(q.epsilon_score(eps, n_bins=8).mean())
    assert q.forget_quality(u, r, n_bins=3) == pytest.approx(q.epsilon_score(eps, n_bins=3).mean())


def test_bootstrap_error_bar_is_deterministic_and_positive():
    rng = np.random.default_rng(8)
    u, r = rng.normal(0.3, 1, size=(16, 30)), rng.normal(0, 1, size=(16, 30))
    a = q.forget_quality_ci(u, r, n_boot=12, seed=0)
    b = q.forget_quality_ci(u, r, n_boot=12, seed=0)
    c = q.forget_quality_ci(u, r, n_boot=12, seed=1)
    assert a == b and a != c
    assert a.F == q.forget_quality(u, r)
    assert a.std > 0 and a.lo <= a.hi and a.lo < a.hi
    f, sd, lo, hi = a
    assert 0 <= lo <= hi <= 1 and sd < 0.2
    # the interval is centred on the score of all the models, never beside it
    assert lo <= f <= hi and hi - f == pytest.approx(min(1 - f, 1.959964 * sd), rel=1e-5)
    # two groups from one distribution: the replicates of a resample with copies sit below F,
    # so a percentile interval could miss F; the normal interval holds it
    u, r = rng.normal(size=(32, 40)), rng.normal(size=(32, 40))
    ci = q.forget_quality_ci(u, r, n_boot=30, seed=0)
    assert ci.lo <= ci.F <= ci.hi
    with pytest.raises(ValueError, match="n_boot"):
        q.forget_quality_ci(u, r, n_boot=1)


def test_final_score_bounds():
    assert metrics.final_score(1.0, 90, 80, 90, 80) == 1.0
    assert metrics.final_score(0.5, 45, 40, 90, 80) == pytest.approx(0.125)
    assert metrics.final_score(0.0, 90, 80, 90, 80) == 0.0
    assert metrics.final_score(1.0, 99, 90, 90, 80) > 1.0  # the challenge's formula
    assert metrics.final_score(1.0, 99, 90, 90, 80, cap=True) == 1.0
    rng = np.random.default_rng(4)
    for _ in range(100):
        qq, ra, ta = rng.uniform(0, 1), rng.uniform(0, 100), rng.uniform(0, 100)
        s = metrics.final_score(qq, ra, ta, rng.uniform(1, 100), rng.uniform(1, 100), cap=True)
        assert 0.0 <= s <= qq
    assert math.isnan(metrics.final_score(float("nan"), 1, 1, 1, 1))
    with pytest.raises(ValueError, match="lies in"):
        metrics.final_score(1.5, 1, 1, 1, 1)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="same examples"):
        metrics.example_epsilon(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least two models"):
        metrics.example_epsilon(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        metrics.example_epsilon(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="attacks must be"):
        metrics.example_epsilon(np.zeros((4, 3)), np.zeros((4, 3)), attacks="both")
    with pytest.raises(ValueError, match="floor"):
        metrics.example_epsilon(np.zeros((4, 3)), np.zeros((4, 3)), floor="n")
    with pytest.raises(ValueError, match="delta"):
        metrics.example_epsilon(np.zeros((4, 3)), np.zeros((4, 3)), delta=1.0)


def test_tug_of_war():
    ref = {"train_forget": 0.0, "train_retain": 100.0, "test_retain": 90.0}
    assert metrics.tug_of_war(ref, ref) == 1.0
    acc = {"train_forget": 10.0, "train_retain": 100.0, "test_retain": 80.0}
    assert metrics.tug_of_war(acc, ref) == pytest.approx(0.9 * 1.0 * 0.9)
    assert math.isnan(metrics.tug_of_war({**acc, "train_forget": float("nan")}, ref))
    import pandas as pd

    runs = pd.DataFrame(
        {
            "method": ["retrain", "m", "retrain", "m"],
            "seed": [0, 0, 1, 1],
            "forget": [3, 3, 3, 3],
            "train_forget": [0, 10, 0, 0],
            "train_retain": [100, 100, 100, 100],
            "test_retain": [90, 80, 90, 90],
            "diverged": [False, False, False, True],
        }
    )
    out = metrics.add_tug_of_war(runs)
    assert out["ToW"].tolist()[:3] == pytest.approx([1.0, 0.81, 1.0]) and math.isnan(out["ToW"].iloc[3])


def test_confidences_of_models():
    torch.manual_seed(0)
    models = [torch.nn.Linear(4, 3) for _ in range(3)]
    x, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
    c = metrics.confidences(models, x, y)
    assert c.shape == (3, 7) and np.isfinite(c).all()
    assert uk.metrics.forget_quality is metrics.forget_quality
