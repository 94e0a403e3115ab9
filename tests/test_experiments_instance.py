"""The instance-wise chapter's helpers on small hand-made models and runs whose answers are known."""

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.experiments import instance as iw


def test_pgd_iters_cross_the_whole_ball_and_keep_the_floor():
    assert iw.pgd_iters(4.0, 0.1, 30) == 80  # 2 * 4.0 / 0.1, not 79 from rounding
    assert iw.pgd_iters(0.4, 0.1, 30) == 30  # the profile's floor
    assert iw.pgd_iters(1.05, 0.1, 1) == 21  # rounded up


def test_smallest_reaching_takes_the_first_radius_over_the_share_or_the_largest():
    hit = pd.Series({0.4: 40.0, 1.0: 96.0, 2.0: 99.0, 4.0: 100.0})
    assert iw.smallest_reaching(hit, 95) == 1.0
    assert iw.smallest_reaching(hit, 99.5) == 4.0
    assert iw.smallest_reaching(pd.Series({0.4: 10.0, 1.0: 20.0}), 95) == 1.0  # none: the largest


class _Task:
    def __init__(self, x):
        self.x = x

    def forget_set(self):
        return self.x, torch.zeros(len(self.x), dtype=torch.long)


def _const(label, n_classes=3):
    """A model that predicts ``label`` for every input of two features."""
    m = torch.nn.Linear(2, n_classes)
    with torch.no_grad():
        m.weight.zero_()
        m.bias.zero_()
        m.bias[label] = 1.0
    return m


def test_record_runs_keeps_info_predictions_and_the_first_runs_models():
    info, keep = {}, {}
    x = torch.zeros(4, 2)
    on_run = iw.record_runs(info, keep, ("original", "ADV"), first=(0, 4))
    m = _const(2)
    m.unlearn_info = {"steps": 7}
    on_run(uk.SpreadRun(_Task(x[:2]), 1, 2, {"original": _const(0), "ADV": m, "JiT": _const(1)}))
    assert info[("ADV", 1, 2)] == {"steps": 7} and info[("original", 1, 2)] == {}
    assert keep[("ADV", 1, 2)].tolist() == [2, 2] and keep[("original", 1, 2)].tolist() == [0, 0]
    assert ("JiT", 1, 2) not in keep and "models" not in keep
    models = {"original": _const(0)}
    on_run(uk.SpreadRun(_Task(x[:4]), 0, 4, models))
    assert keep["models"] is models and keep[("original", 0, 4)].tolist() == [0, 0, 0, 0]


def test_record_relabelled_scores_every_model_against_the_runs_new_labels():
    store = {}
    x = torch.zeros(4, 2)
    correct = _const(1)
    correct.unlearn_info = {"new_labels": [1, 1, 2, 2]}
    on_run = iw.record_relabelled(store)
    on_run(uk.SpreadRun(_Task(x[:4]), 0, 4, {"CORRECT": correct, "ADV": _const(2), "original": _const(0)}))
    assert store == {("CORRECT", 0, 4): 50.0, ("ADV", 0, 4): 50.0, ("original", 0, 4): 0.0}


def _spread():
    rows = []
    for seed in range(2):
        for k in (4, 16):
            for m, dr in (("original", 99.0), ("NegGrad", 40.0 + seed + k), ("retrain", 98.0)):
                rows.append(
                    dict(method=m, seed=seed, forget=k, diverged=False, train_retain=dr, train_forget=0.0)
                )
    rows.append(
        dict(method="ADV", seed=0, forget=16, diverged=True, train_retain=np.nan, train_forget=np.nan)
    )
    return uk.Spread(pd.DataFrame(rows))


PAPER = {"NegGrad": {4: (0.0, 38.44), 16: (0.0, 15.79)}, "original": {4: (100.0, 99.6), 16: (100.0, 99.6)}}
PARTS = {"train_forget": "D_f ↓", "train_retain": "D_r ↑"}


def test_beside_paper_by_k_puts_the_papers_number_of_each_k_beside_ours():
    t = iw.beside_paper_by_k(_spread(), [4, 16], PAPER, PARTS)
    assert t.index.names == ["k", "method"]
    assert t.loc[(4, "NegGrad"), ("D_r ↑", "ours")] == "44.5 ± 0.7"
    assert t.loc[(4, "NegGrad"), ("D_r ↑", "paper")] == "38.4"
    assert t.loc[(16, "NegGrad"), ("D_r ↑", "paper")] == "15.8"
    assert t.loc[(16, "retrain"), ("D_r ↑", "paper")] == "–"  # the paper has no retrain row
    assert t.loc[(16, "ADV"), ("D_r ↑", "ours")] == "diverged"
    assert (4, "ADV") not in t.index  # no run of ADV at k = 4
    only = iw.beside_paper_by_k(_spread(), [16], PAPER, PARTS)
    assert set(only.index.get_level_values("k")) == {16}


def test_layer_outputs_returns_every_conv_output_and_the_last_linear_input():
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 5),
    )
    x = torch.rand(6, 1, 4, 4)
    outs = iw.layer_outputs(m, x)
    assert [o.shape for o in outs] == [(6, 32), (6, 48), (6, 48)]
    assert torch.allclose(outs[0], m[0](x).flatten(1))
    assert torch.allclose(outs[-1], m[2](m[1](m[0](x))).flatten(1))  # the input of the linear layer
    assert not m.training and not m[0]._forward_hooks  # hooks removed


def test_ours_paper_shows_our_mean_and_the_papers_number_in_brackets():
    t = iw.ours_paper(_spread(), [4, 16], PAPER, ["NegGrad", "ADV", "retrain"])
    assert t.loc["NegGrad", 4] == "44.5 (38.4)" and t.loc["NegGrad", 16] == "56.5 (15.8)"
    assert t.loc["ADV", 16] == "–"  # its only run diverged
    assert t.loc["retrain", 4] == "98.0"
    assert (
        iw.ours_paper(_spread(), [4], PAPER, ["NegGrad"], col="train_forget", j=0).loc["NegGrad", 4]
        == "0.0 (0.0)"
    )


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_pgd_iters_are_enough_to_walk_across_the_ball(eps):
    n = iw.pgd_iters(eps, 0.1, 1)
    assert n * 0.1 >= 2 * eps - 1e-9 and (n - 1) * 0.1 < 2 * eps
