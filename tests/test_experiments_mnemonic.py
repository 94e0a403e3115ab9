"""The mnemonic-code chapter's experiment code (unlearnkit/experiments/mnemonic.py): behaviour tests."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.experiments import mnemonic as ex


class _Cfg:
    pass


class _Prof:
    def __init__(self, dry):
        self.dry_run = dry

    def few(self, items, n=1, last=False):
        items = list(items)
        return (items[:n] + items[-1:]) if last and len(items) > n else items[:n]


def _cfg(profile):
    c = _Cfg()
    for k, v in copy.deepcopy(ex.CONFIGS[profile]).items():
        setattr(c, k, v)
    return c


def _spread(rows):
    runs = pd.DataFrame(rows)
    runs["diverged"] = runs.get("diverged", False)
    runs["error"] = runs.get("error", "")
    return uk.Spread(runs)


# ----------------------------------------------------------------------------- settings


def test_configs_keep_the_papers_recipe_and_lambdas():
    assert ex.CONFIGS["quick"]["train"] == ex.PAPER_TRAIN
    assert ex.CONFIGS["full"]["lambdas"] == {"paper": (1e-5, 1e4)}
    assert ex.CONFIGS["smoke"]["n_seeds"] == 1 and ex.CONFIGS["quick"]["n_seeds"] == 3


def test_trim_for_dry_run_keeps_the_pair_used_and_only_in_a_dry_run():
    c = _cfg("quick")
    ex.trim_for_dry_run(c, _Prof(False))
    assert c.sweep_l1 == ex.CONFIGS["quick"]["sweep_l1"]
    c = _cfg("quick")
    ex.trim_for_dry_run(c, _Prof(True))
    l1, l2 = c.lambdas["tuned"]
    assert l1 in c.sweep_l1 and l2 in c.sweep_l2 and c.sweep_l1 == sorted(c.sweep_l1)
    # the seeds are the chapter's P.few (a dry run keeps one and counts the others' cost)
    assert c.n_seeds == 3 and c.spread_forget == [0]
    assert c.multi == [[0], [0, 1, 2, 3]]  # the sweep's ends
    # the t_mix sweep's ends and the chapter's own t_mix (that model is its original: not a new one)
    assert c.tmix_sweep == [0.0, c.t_mix, 0.8] and c.tmix_sweep.planned == len(
        ex.CONFIGS["quick"]["tmix_sweep"]
    )


# ----------------------------------------------------------------------------- tables


def test_headline_puts_the_paper_beside_ours_and_dashes_the_rest():
    rows = [
        dict(method=m, seed=s, forget=0, test_retain=90.0 + s, E_F=100.0, MIA_loss_AUC=0.5, seconds=0.01)
        for m in ("mnemonic (paper’s λ)", "finetune")
        for s in (0, 1)
    ]
    t = ex.headline(_spread(rows), "MNIST")
    assert list(t.index) == ["mnemonic (paper’s λ)", "finetune"]
    assert t.loc["mnemonic (paper’s λ)", ("A_R (%)", "paper")] == "95.9 ± 0.1"
    assert t.loc["finetune", ("A_R (%)", "paper")] == "–"
    assert t.loc["finetune", ("A_R (%)", "ours")] == "90.5 ± 0.7"
    assert (
        ex.headline(_spread(rows), "CIFAR-10").loc["mnemonic (paper’s λ)", ("MIA loss AUC", "paper")]
        == "0.49"
    )


def test_runs_at_and_diverged_note():
    runs = pd.DataFrame(
        dict(
            method=["a", "a", "b", "a"],
            forget=[0, 0, 0, 3],
            seed=[0, 1, 0, 0],
            E_F=[1.0, 2.0, 3.0, 4.0],
            diverged=[False, True, False, False],
            error=["", "loss is nan", "", ""],
        )
    )
    assert ex.runs_at(runs, "a", 0)["E_F"].to_dict() == {0: 1.0, 1: 2.0}
    assert ex.diverged_note(runs) == "a diverged in 1 of 3 runs: loss is nan"
    assert ex.diverged_note(runs.assign(diverged=False)) == "No method diverged in this run."


def test_outcomes_take_the_first_that_applies():
    per_cls = pd.DataFrame(
        {
            "A_R": [95.0, 80.0, 95.0, 10.0, 10.0],
            "E_F": [100.0, 100.0, 50.0, 50.0, 100.0],
            "A_R before": [96.0] * 5,
        }
    )
    got = ex.outcomes(per_cls, collapse_at=16.1).tolist()
    assert got == ["clean", "forgotten, A_R −10 or more", "partly forgotten", "collapsed", "collapsed"]
    assert set(got) <= set(ex.OUTCOMES)


def test_fisher_errors_are_zero_for_the_oracle_and_relative_to_its_norm():
    oracle = (torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.0]))
    est = {"oracle": oracle, "off": (torch.tensor([3.0, 4.0]) * 2, torch.tensor([0.0, 1.0]))}
    err = ex.fisher_errors(est, oracle)
    assert (err.loc["oracle"] == 0).all()
    assert err.loc["off", "f_F relative"] == pytest.approx(1.0)
    assert err.loc["off", "f_F error"] == pytest.approx(5.0 / 2)
    assert err.loc["off", "f_R relative"] == pytest.approx(2**0.5)


def test_keep_keeps_every_original_and_one_runs_models():
    keep = ex.Keep(0, 3)
    keep(uk.SpreadRun("t", 0, 0, {"original": "o0", "x": 1}))
    keep(uk.SpreadRun("t", 0, 3, {"original": "o0b", "x": 2}))
    keep(uk.SpreadRun("t", 1, 3, {"original": "o1", "x": 3}))
    assert keep.originals == {0: "o0b", 1: "o1"}
    assert keep.models == {"original": "o0b", "x": 2}


def test_mnemonic_spec_and_best_pair():
    name, hp = ex.mnemonic_spec("codes", (0.1, 10.0), False)
    assert name == "mnemonic" and hp == {
        "codes": "codes",
        "lambda1": 0.1,
        "lambda2": 10.0,
        "check_codes": False,
    }
    a_r = pd.DataFrame([[90.0, 50.0], [80.0, 10.0]], index=[0.1, 1.0], columns=[1.0, 10.0])
    e_f = pd.DataFrame([[0.0, 100.0], [100.0, 100.0]], index=[0.1, 1.0], columns=[1.0, 10.0])
    assert ex.best_pair(a_r, e_f) == (1.0, 1.0)


# ----------------------------------------------------------------------------- on a model


def test_ar_ef_and_lambda_grid(trained_mlp, task0):
    a_r, e_f = ex.ar_ef(trained_mlp, task0)
    assert a_r == pytest.approx(uk.accuracy(trained_mlp, *task0.test_retain()))
    assert e_f == pytest.approx(100 - uk.accuracy(trained_mlp, *task0.test_forget()))
    calls = []
    run = lambda a, b: calls.append((a, b)) or trained_mlp
    A, E = ex.lambda_grid(run, task0, [1e-3, 1.0], [10.0, 100.0, 1e3])
    assert A.shape == (2, 3) and A.index.name == "λ1" and A.columns.name == "λ2"
    assert len(calls) == 6 and (A.to_numpy() == a_r).all() and (E.to_numpy() == e_f).all()


def test_trigger_table_pure_code_and_no_code(trained_mlp, digits):
    code = digits.x_test[digits.y_test == 0][0]  # a real image of class 0 as the "code"
    t = ex.trigger_table(trained_mlp, digits, code, [0.0, 1.0], 0)
    assert t.index.name == "share of code"
    assert t.loc[0.0, "test accuracy (%)"] == pytest.approx(
        uk.accuracy(trained_mlp, digits.x_test, digits.y_test)
    )
    assert t.loc[1.0, "predicted class 0 (%)"] == 100.0  # every image is the class-0 image
    assert t.loc[1.0, "test accuracy (%)"] == pytest.approx(100 * (digits.y_test == 0).float().mean().item())


def test_perturb_only_moves_only_the_named_tensors(trained_mlp):
    names = [n for n, _ in trained_mlp.named_parameters()]
    eta = {n: torch.ones_like(p) for n, p in trained_mlp.named_parameters()}
    alpha = {n: 0.5 for n in names}
    m = ex.perturb_only(trained_mlp, names[-1:], -1, alpha, eta)
    before, after = dict(trained_mlp.named_parameters()), dict(m.named_parameters())
    assert torch.allclose(after[names[-1]], before[names[-1]] - 0.5)
    assert all(torch.equal(after[n], before[n]) for n in names[:-1])


def test_fisher_pair_and_sample_per_class(trained_mlp, digits, task0):
    x, y = ex.sample_per_class(digits.x_train, digits.y_train, 3, seed=0)
    assert torch.bincount(y, minlength=10).tolist() == [3] * 10
    f_F, f_R = ex.fisher_pair(trained_mlp, x, y, 10, task0.forget_classes, task0.retain_classes)
    n = sum(p.numel() for p in trained_mlp.parameters())
    assert f_F.shape == f_R.shape == (n,) and (f_F >= 0).all() and not torch.equal(f_F, f_R)


def test_per_class_multi_shot_and_posinf(trained_mlp, digits, task0):
    codes = uk.methods.mnemonic_codes(digits, seed=0)
    kw = dict(codes=codes, lambda1=1e-3, lambda2=10.0, check_codes=False)
    pc = ex.per_class_runs({0: trained_mlp}, digits, codes, [0, 1], 1e-3, 10.0, False)
    assert pc[["seed", "class"]].values.tolist() == [[0, 0], [0, 1]]
    assert set(pc["sign"]) <= {1, -1}
    m0 = uk.methods.mnemonic(trained_mlp, task0, **kw)
    assert pc.loc[0, "E_F"] == pytest.approx(ex.ar_ef(m0, task0)[1])
    multi = ex.multi_shot(trained_mlp, digits, codes, [[0], [0, 1]], 1e-3, 10.0, False)
    assert list(multi.index) == ["0", "0, 1"] and multi.loc["0", "E_F"] == pc.loc[0, "E_F"]
    f = {n: torch.ones_like(p) for n, p in trained_mlp.named_parameters()}
    eta_d = dict(f)
    first = next(iter(eta_d))
    eta_d[first] = eta_d[first].clone()
    eta_d[first].view(-1)[0] = torch.finfo(torch.float32).max
    tab = ex.posinf_table(trained_mlp, {"tensor_max": m0}, eta_d)
    assert list(tab.index) == [first] and tab.loc[first, "+inf entries"] == 1
    assert np.isfinite(tab.loc[first, "move of +inf entries, tensor_max"])


def test_summary_mean_and_unlearn_at():
    S = pd.DataFrame({"E_F mean": [90.0, 10.0], "E_F std": [1.0, 2.0]}, index=["a", "b"])
    assert ex.summary_mean(S, "b", "E_F") == 10.0
    seen = {}
    method = lambda model, task, **hp: seen.update(model=model, task=task, **hp) or "unlearned"
    assert ex.unlearn_at(0.1, 20.0, method=method, model="m", task="t", codes="c") == "unlearned"
    assert seen == dict(model="m", task="t", lambda1=0.1, lambda2=20.0, codes="c")


def test_vs_original_pairs_the_runs_both_have():
    words = ("higher than", "lower than", "not distinguishable from")
    idx = pd.MultiIndex.from_tuples([(0, 0), (1, 0), (2, 0)], names=["seed", "forget"])
    table = pd.DataFrame({"original": [90.0, 91.0, 92.0], "a": [60.0, 61.0, np.nan]}, index=idx)
    got = ex.vs_original(table, "a", words)
    assert got == uk.verdict([60.0, 61.0], [90.0, 91.0], paired=True, margin=1.0, words=words)
    assert str(got) == "lower than"
    same = table.assign(a=table["original"])
    assert str(ex.vs_original(same, "a", words)) == "not distinguishable from"
