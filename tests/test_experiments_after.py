"""The helpers of the chapter on the methods after the five papers (``book/08_after_the_five.ipynb``,
:mod:`unlearnkit.experiments.after`): what they measure about SCRUB, NegGrad+, SalUn, ℓ1-sparse
and SSD, on the tiny MLP of the fixtures."""

import sys

import numpy as np
import pytest
import torch
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit.bench import SpreadRun
from unlearnkit.experiments import after
from unlearnkit.methods.l1_sparse import l1_norm
from unlearnkit.methods.salun import saliency_mask
from unlearnkit.training import descend


def test_specs_take_the_registered_preset_and_the_stated_departures():
    got = after.specs(["scrub", "ssd"], "full", override={"scrub": {"epochs": 1}})
    assert got["scrub"] == ("scrub", {**uk.get_method("scrub").record.presets["full"], "epochs": 1})
    assert got["ssd"] == ("ssd", {"alpha": 10.0, "lam": 1.0})
    table = after.access_table(["l1_sparse", "ssd"], "full")
    assert list(table["access"]) == ["retain", "forget+retain"]


def test_same_access_keeps_the_seed_methods_that_see_the_same_data():
    got = after.same_access(["finetune", "jit", "unsir", "mask", "mnemonic"], after.NEW)
    assert got == ["finetune", "mask"]  # jit: forget only; unsir: a retain subset; mnemonic: own original


def test_watch_records_every_epoch_without_changing_the_method(trained_mlp, task0):
    hp = dict(alpha=1e-3, epochs=3, lr=0.05, batch_size=64)
    plain = uk.methods.l1_sparse(trained_mlp, task0, seed=0, **hp)
    with after.watch("l1_sparse", after.l1_probe) as rec:
        watched = uk.methods.l1_sparse(trained_mlp, task0, seed=0, **hp)
    assert same_state(state(plain), state(watched))
    assert [r["epoch"] for r in rec] == [0, 1, 2, 3]
    with torch.no_grad():
        assert rec[0]["L1 norm"] == pytest.approx(float(l1_norm(trained_mlp)), rel=1e-5)
        assert rec[-1]["L1 norm"] == pytest.approx(float(l1_norm(watched)), rel=1e-5)
    assert np.isnan(rec[0]["loss"]) and all(np.isfinite(r["loss"]) for r in rec[1:])
    mod = sys.modules[uk.get_method("l1_sparse").record.fn.__module__]
    assert mod.descend is descend  # the module's loop is restored afterwards


def test_watch_follows_only_its_own_method_and_the_run_in_progress(trained_mlp, digits):
    runs = after.Runs(lambda item, seed: uk.forget_classes(digits, [item]))
    task = runs(3, 7)
    with (
        after.watch("scrub", after.kl_probe(runs, T=4.0, n=40), runs) as kl,
        after.watch("neggrad_plus", after.ce_probe(runs, n=40), runs) as ce,
    ):
        uk.methods.scrub(trained_mlp, task, seed=0, epochs=2, msteps=1, lr=0.05, batch_size=64)
    assert ce == []  # scrub's loop is not neggrad_plus's, though both live in one module
    assert [r["epoch"] for r in kl] == [0, 1, 2] and {r["seed"] for r in kl} == {7}
    assert kl[0]["KL forget"] == pytest.approx(0.0, abs=1e-6)  # the student starts as its teacher
    assert kl[1]["KL forget"] > 1e2 * max(kl[0]["KL forget"], 1e-9)  # the max-step moved it away
    per = after.per_epoch(kl, ["KL forget"])
    assert list(per.index) == [0, 1, 2] and ("KL forget", "mean") in per.columns


def test_alpha_schedule_decays_linearly_to_zero_at_the_end():
    assert np.allclose(after.alpha_schedule(0.2, 4), [0.2, 0.15, 0.1, 0.05])


def test_saliency_scores_give_salun_s_mask(trained_mlp, task0):
    xf, yf = task0.forget_set()
    scores = after.saliency_scores(trained_mlp, xf, yf)
    mine = after.top_fraction(scores, 0.3)
    theirs = saliency_mask(trained_mlp, xf, yf, 0.3)
    assert after.jaccard(mine, theirs) > 0.99
    share = after.layer_share(theirs)
    assert list(share.index) == ["net.0", "net.2"] or len(share) == len({after.layer_of(n) for n in theirs})
    assert ((share >= 0) & (share <= 100)).all()


def test_layer_share_counts_each_layer():
    mask = {"a.weight": torch.tensor([True, False, False, False]), "a.bias": torch.tensor([True]),
            "b.weight": torch.tensor([True, True])}  # fmt: skip
    share = after.layer_share(mask)
    assert share["a"] == pytest.approx(40.0) and share["b"] == pytest.approx(100.0)


def test_overlap_curve_is_one_for_one_score_and_chance_for_independent_ones():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.rand(20_000, generator=g), "v": torch.rand(300, generator=g)}
    b = {"w": torch.rand(20_000, generator=g), "v": torch.rand(300, generator=g)}
    same = after.overlap_curve(a, a, [0.05, 0.5])
    assert np.allclose(same.jaccard, 1.0) and np.allclose(same.shared, 1.0)
    ind = after.overlap_curve(a, b, [0.05, 0.5], seed=1)
    assert np.allclose(ind.chance, [after.chance_jaccard(0.05), after.chance_jaccard(0.5)], rtol=1e-3)
    assert np.allclose(ind.jaccard, ind.chance, atol=0.02)
    assert np.allclose(ind.random, ind.chance, atol=0.02)


def test_ssd_factors_reproduce_ssd(trained_mlp, task0):
    fac = after.ssd_factors(trained_mlp, task0, alpha=10.0, lam=1.0)
    mine = uk.clone(trained_mlp)
    with torch.no_grad():
        for n, p in mine.named_parameters():
            p.mul_(fac["beta"][n])
    theirs = uk.methods.ssd(trained_mlp, task0, alpha=10.0, lam=1.0, seed=0)
    for (n, p), q in zip(mine.named_parameters(), theirs.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    betas = after.selected_betas(fac)
    share = 100 * len(betas) / sum(v.numel() for v in fac["beta"].values())
    assert share == pytest.approx(100 * theirs.unlearn_info["selected_share"])
    assert ((betas >= 0) & (betas <= 1)).all()
    sub = after.ssd_factors(trained_mlp, task0, n_samples=120, seed=3)  # D subsampled as ssd does
    ssd_sub = uk.methods.ssd(trained_mlp, task0, n_samples=120, seed=3)
    total = sum(v.numel() for v in sub["beta"].values())
    assert len(after.selected_betas(sub)) == round(ssd_sub.unlearn_info["selected_share"] * total)


def test_fisher_uses_compares_three_scores(trained_mlp, task0):
    fac = after.ssd_factors(trained_mlp, task0)
    uses = after.fisher_uses(trained_mlp, task0, fac, n_retain=60)
    assert set(uses["spearman"]) == {
        "SSD ratio vs masking score",
        "masking score vs forgetting noise",
        "SSD ratio vs forgetting noise",
    }
    assert all(-1 <= v <= 1 for v in uses["spearman"].values())
    assert 0 <= uses["overlap"] <= 1 and 0 < uses["chance"] < 1


def test_collect_keeps_what_the_figures_need(trained_mlp, task0):
    models = {
        "original": trained_mlp,
        "finetune": uk.methods.finetune(trained_mlp, task0, seed=0, epochs=1),
        "l1_sparse": uk.methods.l1_sparse(trained_mlp, task0, seed=0, epochs=1, alpha=1e-2, lr=0.05),
        "salun": uk.methods.salun(trained_mlp, task0, seed=0, epochs=1, lr=0.05, batch_size=64),
        "ssd": uk.methods.ssd(trained_mlp, task0, seed=0),
    }
    collect = after.Collect([0.1, 0.5], n_retain=60)
    collect(SpreadRun(task0, 0, 0, models))
    collect(SpreadRun(task0, 1, 0, models))
    assert collect.first.seed == 0 and len(collect.overlap) == 2
    assert collect.norms["L1 l1_sparse"].shape == (2,)
    with torch.no_grad():
        assert collect.norms["L1 original"][0] == pytest.approx(float(l1_norm(trained_mlp)), rel=1e-5)
    assert collect.salun_share[0] == pytest.approx(50.0, abs=1.0)
    assert list(collect.overlap[0].fraction) == [0.1, 0.5]
