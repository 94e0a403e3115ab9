"""The Fisher-masking chapter's experiment code (unlearnkit.experiments.masking)."""

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.experiments import masking as ex

LIN = dict(n=200, d=20, hub=2, semi=2, specific=4)
RULES = {"FisherMask": "fisher", "F_f alone": "fisher_forget", "random": "random"}


def test_shared_problem_groups_and_scales():
    X, y, forget, group = ex.shared_problem(3, **LIN)
    assert X.shape == (200, 20) and y.shape == (200,)
    assert forget.sum() == 20 and forget[:20].all()  # the first tenth is D_f
    assert [int((group == g).sum()) for g in ("hub", "semi", "specific", "other")] == [2, 2, 4, 12]
    spec = group == "specific"
    # forget-specific features: scale 3 on D_f, 0.1 on D_r
    assert X[forget][:, spec].std() > 10 * X[~forget][:, spec].std()
    X2, y2, _, _ = ex.shared_problem(3, **LIN)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert not np.array_equal(X, ex.shared_problem(4, **LIN)[0])


def test_linear_sweep_and_at():
    X, y, forget, _ = ex.shared_problem(0, **LIN)
    lin = ex.linear_sweep(X, y, forget, RULES, seed=0)
    assert len(lin) == (20 + 1) * len(RULES)
    assert lin.R.min() == 0.0 and lin.R.max() == 1.0
    kl0 = lin[lin.R == 0].KL
    assert np.allclose(kl0, kl0.iloc[0])  # nothing masked: the same model for every rule
    assert (lin.bound >= lin.KL).all()  # Proposition 1
    row = ex.at(lin, "FisherMask", 0.2)
    assert row.rule == "FisherMask" and row.R == pytest.approx(0.2)
    w, w_r, masks = ex.masked_models(X, y, forget, 4, 0, RULES)
    assert set(masks) == set(RULES) and all(m.sum() == 4 for m in masks.values())
    assert row.KL == pytest.approx(uk.theory.kl(X, w_r, uk.theory.masked(w, masks["FisherMask"])))


def test_linear_draws():
    draws = ex.linear_draws([0, 1, 2], RULES, 4, **LIN)
    assert len(draws) == 3 * (1 + len(RULES))
    assert list(draws.draw.unique()) == [0, 1, 2]
    shares = draws[draws.rule != "no mask"][[f"% {g}" for g in ex.GROUPS]]
    assert np.allclose(shares.sum(axis=1), 100.0)
    assert draws[draws.rule == "no mask"]["% hub"].isna().all()
    # on this problem, F_f − F_r picks the forget-specific features
    assert draws[draws.rule == "FisherMask"]["% specific"].mean() > 50


def test_curve_reads_every_epoch_state(trained_mlp, task0):
    zeroed = uk.clone(trained_mlp)
    with torch.no_grad():
        for p in zeroed.parameters():
            p.zero_()
    model = uk.clone(trained_mlp)
    model.unlearn_info = {"epoch_states": [trained_mlp.state_dict(), zeroed.state_dict()]}
    c = ex.curve(model, task0)
    assert list(c.columns) == ["epoch", "remain", "forget", "score"]
    assert c.epoch.tolist() == [0, 1]
    r, f = uk.accuracy(trained_mlp, *task0.test_retain()), uk.accuracy(trained_mlp, *task0.test_forget())
    assert c.remain.iloc[0] == pytest.approx(r) and c.forget.iloc[0] == pytest.approx(f)
    assert c.score.iloc[0] == pytest.approx(uk.unlearn_score(r, f))
    assert c.remain.iloc[1] < r  # all-zero weights: the state of epoch 1 was loaded


@pytest.fixture
def curves():
    rows = []
    for seed, scores in ((0, [10.0, 50.0, 30.0]), (1, [20.0, 25.0, 60.0])):
        for e, s in enumerate(scores):
            rows.append(
                dict(
                    epoch=e,
                    remain=80.0 + e,
                    forget=30.0 - 10 * e + seed,
                    score=s,
                    method="M",
                    seed=seed,
                    cls=0,
                )
            )
    return pd.DataFrame(rows)


def test_curve_points_and_means(curves):
    keys = ["method", "seed", "cls"]
    before, best, final = ex.curve_points(curves, keys)
    assert before.epoch.tolist() == [0, 0]
    assert best.epoch.tolist() == [1, 2]  # the epoch of the best score, per run
    assert final.epoch.tolist() == [2, 2]
    assert ex.mean_of(best, "M", "epoch") == 1.5
    assert ex.std_of(final, "M", "forget") == pytest.approx(np.std([10.0, 11.0], ddof=1))
    assert ex.std_of(final.iloc[:1], "M", "forget") == 0.0
    assert ex.by_method(before, "forget", ["M"])["M"].tolist() == [30.0, 31.0]


def test_table1_formats_paper_and_ours(curves):
    before, best, final = ex.curve_points(curves, ["method", "seed", "cls"])
    paper = pd.DataFrame(
        {"Retrain": [np.nan, 85.5, 133.7], "M": [85.0, 86.1, 4.0]}, index=["remain0", "remain", "epochs"]
    ).T
    t = ex.table1([("remain", "remain acc")], {"ours": before}, paper, ["M"], {"remain": [90.0, 92.0]}, "0")
    assert list(t.index) == ["Retrain", "M"]
    assert t.loc["Retrain", ("remain acc", "paper")] == "–"
    assert t.loc["Retrain", ("remain acc", "ours")] == "91.0 ± 1.4"
    assert t.loc["M", ("remain acc", "paper")] == "85.0"
    assert t.loc["M", ("remain acc", "ours")] == "80.0 ± 0.0"
    t = ex.table1([("epochs", "# epochs")], {"best": best, "final": final}, paper, ["M"], {})
    assert t.loc["M", ("# epochs", "best")] == "1.5 ± 0.7"
    assert t.loc["M", ("# epochs", "final")] == "2.0 ± 0.0"
    assert t.loc["Retrain", ("# epochs", "best")] == "–"  # not fine-tuned: no epoch
    assert t.loc["Retrain", ("# epochs", "paper")] == "133.7"


def test_stability(curves):
    stab = ex.stability(curves, ["method", "seed", "cls"])
    # remain moves by 1 per epoch, forget by 10; seed 0's score by 40 then 20
    assert stab["remain"].tolist() == [1.0, 1.0]
    assert stab["forget"].tolist() == [10.0, 10.0]
    assert stab.loc[("M", 0, 0), "score"] == 30.0
    t2 = ex.stability_table(stab, {"M": (1.2, 11.0, 3.3)}, ["M"])
    assert t2.loc["M", ("Δ remain", "paper")] == 1.2
    assert t2.loc["M", ("Δ forget", "ours")] == "10.0 ± 0.0"


def test_dead_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2))
    with torch.no_grad():
        for bn in net[1:]:
            bn.bias.fill_(0.5)
    assert ex.dead_layers(net) == 0
    with torch.no_grad():
        net[1].weight.zero_()
    assert ex.dead_layers(net) == 0  # the shift is still there
    with torch.no_grad():
        net[1].bias.zero_()
    assert ex.dead_layers(net) == 1


def test_split_row_and_poison_row(trained_mlp, task0, digits):
    row = ex.split_row(trained_mlp, task0)
    r, f = uk.accuracy(trained_mlp, *task0.test_retain()), uk.accuracy(trained_mlp, *task0.test_forget())
    assert row == {"remain": r, "forget": f, "score": uk.unlearn_score(r, f)}
    pdata, ptask = uk.poison.backdoor(digits, n=10, target=0, size=2, value=1.0, seed=0)
    prow = ex.poison_row(trained_mlp, pdata, ptask)
    assert prow["remain"] == pytest.approx(uk.accuracy(trained_mlp, pdata.x_test, pdata.y_test))
    assert prow["forget"] == pytest.approx(uk.accuracy(trained_mlp, *ptask.forget_set()))
    assert prow["attack success"] == pytest.approx(uk.poison.attack_success(trained_mlp, pdata))
    assert prow["score"] == pytest.approx(uk.unlearn_score(prow["remain"], prow["forget"]))
