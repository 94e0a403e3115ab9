"""The per-example forget-quality score (uk.metrics, from unlearnkit.quality) on synthetic
confidences whose ε is known, its binning and the final score's bounds."""
import math

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit import metrics


def test_logit_confidence_matches_naive_and_stays_finite():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, 10, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    p = torch.softmax(z.double(), 1)[torch.arange(50), y]
    naive = p.log() - (1 - p).log()
    assert torch.allclose(metrics.logit_confidence(z, y), naive, atol=1e-9)
    big = torch.tensor([[60.0, 0.0, -3.0]])          # p_y rounds to 1 in float32
    s = metrics.logit_confidence(big, torch.tensor([0]))
    assert math.isfinite(float(s)) and abs(float(s) - (60 - math.log(1 + math.exp(-3)))) < 1e-9
    with pytest.raises(ValueError, match="one label per row"):
        metrics.logit_confidence(z, y[:3])


def test_identical_distributions_give_small_epsilon():
    rng = np.random.default_rng(0)
    u, r = rng.normal(size=(2000, 20)), rng.normal(size=(2000, 20))
    eps = metrics.example_epsilon(u, r, delta=0.01)
    assert eps.shape == (20,) and (eps >= 0).all()
    assert eps.max() < 0.3
    assert metrics.forget_quality(u, r) == 1.0


def test_separated_distributions_give_large_epsilon_capped_by_group_size():
    rng = np.random.default_rng(1)
    n = 64
    u, r = rng.normal(10, 1, size=(n, 5)), rng.normal(0, 1, size=(n, 5))
    eps = metrics.example_epsilon(u, r, delta=0.01)
    cap = math.log((1 - 0.01) * n)               # zero rate read as 1/n
    assert np.allclose(eps, cap)
    assert metrics.forget_quality(u, r) < 0.01


def test_epsilon_of_shifted_gaussians_matches_the_known_value():
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
    est = metrics.example_epsilon(u, r, delta=delta)[0]
    assert abs(est - e) < 0.15, (est, e)
    assert metrics.example_epsilon(u[:, 0], r[:, 0], delta=delta).shape == (1,)


def test_more_models_tighten_the_null_estimate():
    # identical groups: the estimated ε is pure noise, from the attacks' small counts; more
    # models shrink it (at δ = 0.05: from about 1 with 32 models to about 0.03 with 512)
    rng = np.random.default_rng(3)
    mean_eps = [metrics.example_epsilon(rng.normal(size=(n, 200)), rng.normal(size=(n, 200)),
                                        delta=0.05).mean() for n in (32, 128, 512)]
    assert mean_eps[0] > mean_eps[1] > mean_eps[2]
    assert mean_eps[2] < 0.1


def test_sorted_rates_match_brute_force_with_ties():
    rng = np.random.default_rng(5)
    u = rng.integers(0, 4, size=(9, 6)).astype(float)       # many ties
    r = rng.integers(1, 5, size=(7, 6)).astype(float)
    fpr, fnr = metrics.attack_rates(u, r)
    t = np.concatenate([np.full((1, 6), -np.inf), u, r]).T
    bf_fpr = (r.T[:, None, :] > t[:, :, None]).mean(2)
    bf_fnr = (u.T[:, None, :] <= t[:, :, None]).mean(2)
    for e in range(6):   # the same set of (FPR, FNR) pairs, threshold order aside
        assert sorted(zip(fpr[e], fnr[e])) == sorted(zip(bf_fpr[e], bf_fnr[e]))
    same = rng.normal(size=(8, 3))
    assert (metrics.example_epsilon(same, same.copy()) == 0).all()


def test_binning_and_score():
    eps = np.array([0.0, 0.49, 0.5, 0.99, 1.0, 6.49, 6.5, 100.0, np.inf])
    assert metrics.epsilon_bins(eps).tolist() == [0, 0, 1, 1, 2, 12, 13, 13, 13]
    assert metrics.epsilon_score(eps).tolist() == [1, 1, .5, .5, .25, 2.0 ** -12, 0, 0, 0]
    assert metrics.epsilon_bins([0.3, 0.7], bin_width=0.25, n_bins=2).tolist() == [1, 2]
    with pytest.raises(ValueError, match="non-negative"):
        metrics.epsilon_bins([-1.0])
    with pytest.raises(ValueError, match="bin_width"):
        metrics.epsilon_bins([1.0], bin_width=0)


def test_final_score_bounds():
    assert metrics.final_score(1.0, 90, 80, 90, 80) == 1.0
    assert metrics.final_score(0.5, 45, 40, 90, 80) == pytest.approx(0.125)
    assert metrics.final_score(0.0, 90, 80, 90, 80) == 0.0
    assert metrics.final_score(1.0, 99, 90, 90, 80) > 1.0          # the challenge's formula
    assert metrics.final_score(1.0, 99, 90, 90, 80, cap=True) == 1.0
    rng = np.random.default_rng(4)
    for _ in range(100):
        q, ra, ta = rng.uniform(0, 1), rng.uniform(0, 100), rng.uniform(0, 100)
        s = metrics.final_score(q, ra, ta, rng.uniform(1, 100), rng.uniform(1, 100), cap=True)
        assert 0.0 <= s <= q
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


def test_tug_of_war():
    ref = {"train_forget": 0.0, "train_retain": 100.0, "test_retain": 90.0}
    assert metrics.tug_of_war(ref, ref) == 1.0
    acc = {"train_forget": 10.0, "train_retain": 100.0, "test_retain": 80.0}
    assert metrics.tug_of_war(acc, ref) == pytest.approx(0.9 * 1.0 * 0.9)
    assert math.isnan(metrics.tug_of_war({**acc, "train_forget": float("nan")}, ref))
    import pandas as pd
    runs = pd.DataFrame({"method": ["retrain", "m", "retrain", "m"], "seed": [0, 0, 1, 1],
                         "forget": [3, 3, 3, 3], "train_forget": [0, 10, 0, 0],
                         "train_retain": [100, 100, 100, 100], "test_retain": [90, 80, 90, 90],
                         "diverged": [False, False, False, True]})
    out = metrics.add_tug_of_war(runs)
    assert out["ToW"].tolist()[:3] == pytest.approx([1.0, 0.81, 1.0]) and math.isnan(out["ToW"].iloc[3])


def test_confidences_of_models():
    torch.manual_seed(0)
    models = [torch.nn.Linear(4, 3) for _ in range(3)]
    x, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
    c = metrics.confidences(models, x, y)
    assert c.shape == (3, 7) and np.isfinite(c).all()
    assert uk.metrics.forget_quality is metrics.forget_quality
