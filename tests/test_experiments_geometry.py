"""The JiT chapter's helpers on small hand-made models and runs whose answers are known."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.experiments import geometry as geo


def _linear(w, b=(0.0, 0.0)):
    """A linear model with fixed weights (rows: classes)."""
    m = torch.nn.Linear(len(w[0]), len(w))
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w, dtype=torch.float32))
        m.bias.copy_(torch.tensor(b, dtype=torch.float32))
    return m


# class 1 where x0 > 0, class 0 elsewhere; and the same boundary with the classes swapped
RIGHT = _linear([[-1.0, 0.0], [1.0, 0.0]])
LEFT = _linear([[1.0, 0.0], [-1.0, 0.0]])


def test_toy_grid_covers_the_square_and_marks_the_data_region_and_balls():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    g = geo.ToyGrid(x, (-2.0, 2.0), 5, r=0.5)
    assert g.grid.shape == (25, 2)
    assert g.grid.min().item() == -2.0 and g.grid.max().item() == 2.0
    # the grid points within 0.5 of a training point: exactly (0, 0) and (1, 1)
    assert sorted(map(tuple, g.grid[g.near].tolist())) == [(0.0, 0.0), (1.0, 1.0)]
    assert g.grid[g.ball(1)].tolist() == [[1.0, 1.0]]


def test_toy_grid_moved_is_the_share_of_points_where_predictions_differ():
    x = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    g = geo.ToyGrid(x, (-2.0, 2.0), 5, r=1.5)
    assert g.moved(RIGHT, RIGHT) == 0.0
    # every grid point off the line x0 = 0 changes class (on the line both give class 0)
    on_line = (g.grid[:, 0] == 0).float()
    everywhere = torch.ones(len(g.grid), dtype=torch.bool)
    assert g.moved(RIGHT, LEFT, everywhere) == pytest.approx(100.0 * (1 - on_line.mean().item()))
    # only the ball around (1, 0): the points with x0 > 0 there all flip, those on x0 = 0 do not
    ball = g.ball(1)
    expected = 100.0 * (g.grid[ball][:, 0] > 0).float().mean().item()
    assert g.moved(RIGHT, LEFT, ball) == pytest.approx(expected)


def test_p_label_is_the_softmax_probability_of_the_points_label():
    x = torch.tensor([[2.0, 0.0], [-1.0, 0.0]])
    y = torch.tensor([1, 1])
    assert geo.p_label(RIGHT, x, y, 0) == pytest.approx(1 / (1 + math.exp(-4.0)), rel=1e-5)
    assert geo.p_label(RIGHT, x, y, 1) == pytest.approx(1 / (1 + math.exp(2.0)), rel=1e-5)


def test_line_dataset_is_the_same_for_a_seed_with_two_classes_on_either_side():
    a, b = geo.line_dataset(50, 2.0, 0.1), geo.line_dataset(50, 2.0, 0.1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert a.x_train.shape == (100, 1) and a.y_train.tolist() == [0] * 50 + [1] * 50
    assert not torch.equal(a.x_train, a.x_test)  # the test set is a second draw
    assert (a.x_train[:50] < 0).all() and (a.x_train[50:] > 0).all()
    assert not torch.equal(geo.line_dataset(50, 2.0, 0.1, seed=1).x_train, a.x_train)


def test_train_kwargs_sets_the_width_only_when_given():
    kw = geo.train_kwargs("vgg11", 0.25, epochs=3, lr=0.1, batch_size=8)
    assert kw["model_kwargs"] == {"width_mult": 0.25} and kw["schedule"] == "onecycle"
    assert (kw["epochs"], kw["lr"], kw["batch_size"]) == (3, 0.1, 8)
    assert geo.train_kwargs("cnn", None, epochs=3, lr=0.1, batch_size=8)["model_kwargs"] == {}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_wilcoxon_p_is_small_for_a_clear_shift_and_nan_when_all_pairs_are_equal():
    a = np.arange(30, dtype=float)
    assert geo.wilcoxon_p(a + 1.0 + 0.01 * a, a) < 1e-4
    assert math.isnan(geo.wilcoxon_p(a, a))


class _Task:
    """A task whose forget set is classified right and whose test-forget set wrong by RIGHT."""

    def __init__(self):
        self.x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [3.0, 0.0]])
        self.y = torch.tensor([1, 1, 1, 1])

    def forget_set(self):
        return self.x[:2], self.y[:2]

    def test_forget(self):
        return self.x[2:], self.y[2:]

    def test_retain(self):
        return self.x, self.y


def test_forget_acc_reads_the_training_or_the_test_forget_set():
    t = _Task()
    assert geo.forget_acc(RIGHT, t, "train_forget") == 100.0
    assert geo.forget_acc(RIGHT, t, "test_forget") == 50.0
    with pytest.raises(ValueError):
        geo.forget_acc(RIGHT, t, "forget")


def test_jit_sweep_scores_every_setting_and_counts_a_diverged_run_as_the_worst(monkeypatch):
    monkeypatch.setattr(geo, "train_or_load", lambda task, kind, **kw: RIGHT if kind == "original" else LEFT)

    def fake_jit(model, task, *, sigma, lr, seed, **kw):
        if sigma == 2.0:
            raise uk.DivergedError("too large")
        return LEFT if lr > 0.01 else RIGHT

    monkeypatch.setattr(geo._methods, "jit", fake_jit)
    grid = geo.jit_sweep(
        lambda item, seed: _Task(), ["a", "b"], 0, {}, [1.0, 2.0], [0.001, 0.1], "train_forget"
    )
    assert len(grid) == 8 and list(grid["forget"].unique()) == ["a", "b"]
    row = grid[(grid["sigma"] == 1.0) & (grid["lr"] == 0.001)].iloc[0]
    # RIGHT keeps the forget set (100 %), LEFT (the retrained model here) loses it (0 %)
    assert row["D_f"] == 100.0 and row["gap"] == 100.0 and row["ref_D_r"] == 25.0
    row = grid[(grid["sigma"] == 1.0) & (grid["lr"] == 0.1)].iloc[0]
    assert row["D_f"] == 0.0 and row["gap"] == 0.0 and row["D_r"] == 25.0
    div = grid[grid["sigma"] == 2.0]
    assert (div["D_r"] == 0.0).all() and div["D_f"].isna().all() and (div["gap"] == 100.0).all()


def _grid(rows):
    return pd.DataFrame(rows, columns=["forget", "sigma", "lr", "D_r", "gap"])


def test_choose_takes_the_best_worst_case_among_the_settings_within_the_tolerance():
    grid = _grid(
        [
            ("a", 0.5, 1e-3, 90.0, 2.0),
            ("b", 0.5, 1e-3, 80.0, 3.0),  # worst D_r 80, within the tolerance
            ("a", 1.0, 1e-3, 99.0, 1.0),
            ("b", 1.0, 1e-3, 98.0, 20.0),  # best D_r but one class misses the tolerance
            ("a", 2.0, 1e-3, 70.0, 0.0),
            ("b", 2.0, 1e-3, 70.0, 0.0),
        ]
    )
    pick, feasible, worst = geo.choose(grid, tol=5.0)
    assert pick == {"sigma": 0.5, "lr": 1e-3} and feasible
    assert worst.loc[(1.0, 1e-3), "worst_gap"] == 20.0 and worst.loc[(0.5, 1e-3), "worst_D_r"] == 80.0


def test_choose_falls_back_to_the_smallest_worst_gap_when_no_setting_qualifies():
    grid = _grid([("a", 0.5, 1e-3, 90.0, 30.0), ("a", 1.0, 1e-3, 50.0, 12.0), ("a", 2.0, 1e-4, 99.0, 40.0)])
    pick, feasible, _ = geo.choose(grid, tol=5.0)
    assert pick == {"sigma": 1.0, "lr": 1e-3} and not feasible


def test_benchmark_methods_add_batch_one_and_the_papers_setting_only_when_asked_or_different():
    kw = dict(finetune={"epochs": 1}, amnesiac={"lr": 1.0}, boundary={"bound": 0.3})
    pick, paper = {"sigma": 1.0, "lr": 1e-3}, {"sigma": 0.01, "lr": 3e-4}
    ms = geo.benchmark_methods(pick, paper, {"batch_size": 128}, batch_one=True, **kw)
    assert list(ms) == ["finetune", "amnesiac", "boundary shrink", geo.JIT, geo.JIT_ONE, geo.JIT_PAPER]
    assert ms[geo.JIT] == ("jit", {"sigma": 1.0, "lr": 1e-3, "batch_size": 128})
    assert ms[geo.JIT_ONE][1]["batch_size"] == 1 and ms[geo.JIT_PAPER][1]["sigma"] == 0.01
    assert ms["amnesiac"] == ("random_labels", {"lr": 1.0})
    same = geo.benchmark_methods(pick, dict(pick), {}, batch_one=False, **kw)
    assert geo.JIT_ONE not in same and geo.JIT_PAPER not in same


def test_keep_first_keeps_only_the_chosen_run():
    store = {}
    on_run = geo.keep_first(store, "full", 0, "a")
    on_run(uk.SpreadRun("task a1", 1, "a", {"original": "m1"}))
    on_run(uk.SpreadRun("task b0", 0, "b", {"original": "m2"}))
    assert store == {}
    on_run(uk.SpreadRun("task a0", 0, "a", {"original": "m3"}))
    assert store == {"full": {"task": "task a0", "original": "m3"}}


def _runs():
    rows = []
    for seed in range(2):
        for m, dr, df in (
            ("original", 90, 95),
            ("retrain", 88, 0),
            (geo.JIT, 80 + seed, 10),
            (geo.JIT_PAPER, 70, 50),
        ):
            rows.append(
                dict(
                    method=m,
                    seed=seed,
                    forget="0",
                    diverged=False,
                    test_retain=float(dr),
                    test_forget=float(df),
                    seconds=1.0 + seed,
                )
            )
    rows.append(dict(method=geo.JIT_ONE, seed=0, forget="0", diverged=True, test_retain=np.nan))
    return pd.DataFrame(rows)


PAPER = {"retrain": ((63.2, 0.5), (0.0, 0.0), (10.4, 1.1)), "JiT": ((66.2, 0.3), (14.2, 0.6), (2.9, 0.3))}


def test_versus_puts_the_papers_jit_beside_the_row_run_at_the_papers_setting():
    sp = uk.Spread(_runs())
    t = geo.versus(sp, "test_forget", PAPER, same_as_paper=False)
    assert list(t.columns[:2]) == [("D_r acc", "paper"), ("D_r acc", "ours")]
    assert list(t.columns[-2:]) == [("seconds", "ours"), ("runs", "")]
    assert t.loc[geo.JIT_PAPER, ("D_r acc", "paper")] == "66.2 ± 0.3"
    assert t.loc[geo.JIT, ("D_r acc", "paper")] == "–"  # the chosen setting has no paper number
    assert t.loc[geo.JIT, ("D_r acc", "ours")] == "80.5 ± 0.7"
    assert t.loc["retrain", ("D_f acc", "paper")] == "0.0 ± 0.0"
    assert t.loc["original", ("MIA %", "ours")] == "–"  # no MIA column in these runs
    assert t.loc[geo.JIT_ONE, ("D_r acc", "ours")] == "diverged"
    same = geo.versus(sp, "test_forget", PAPER, same_as_paper=True)
    assert same.loc[geo.JIT, ("D_f acc", "paper")] == "14.2 ± 0.6"
    assert same.loc[geo.JIT_PAPER, ("D_f acc", "paper")] == "–"


def test_summary_value_and_row_values_name_every_method_and_metric():
    s = uk.Spread(_runs()).summary(["test_retain", "test_forget", "seconds"])
    assert geo.summary_value(s, geo.JIT, "test_retain") == 80.5
    assert math.isnan(geo.summary_value(s, "nobody", "test_retain"))
    assert math.isnan(geo.summary_value(s, geo.JIT, "MIA_entropy_%"))
    v = geo.row_values(s, "full", "test_forget")
    assert v["c6_full_JiT_dr"] == 80.5 and v["c6_full_JiT_dr_sd"] == pytest.approx(math.sqrt(0.5))
    assert v["c6_full_JiT_paper_df"] == 50.0 and "c6_full_JiT_b1_dr" in v
    assert math.isnan(v["c6_full_JiT_b1_dr"])  # every run diverged
    one = uk.Spread(_runs().query("seed == 0")).summary(["test_retain"])
    assert geo.row_values(one, "x", "test_forget")["c6_x_retrain_dr_sd"] == 0.0  # one run: no spread


def test_crossed_counts_the_samples_whose_fgsm_step_lands_in_another_class():
    one_d = _linear([[-1.0], [1.0]])
    task = type(
        "T", (), {"forget_set": lambda self: (torch.tensor([[0.1], [0.2], [5.0]]), torch.tensor([1, 1, 1]))}
    )()
    assert geo.crossed(one_d, task, 1.0) == pytest.approx(200 / 3)
    assert geo.crossed(one_d, task, 0.05) == 0.0


def test_batch_row_shows_mean_std_and_the_worst_run():
    runs = _runs()
    row = geo.batch_row(uk.Spread(runs).summary(["test_retain", "test_forget", "seconds"]), runs, geo.JIT)
    assert row == {
        "D_r acc": "80.5 ± 0.7",
        "worst D_r acc": "80.0",
        "D_f acc": "10.0 ± 0.0",
        "seconds": "1.50 ± 0.71",
    }


def test_first_sample_loss_depends_on_the_batch_only_with_batch_statistics():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    m.train()
    m(torch.randn(64, 2))  # running statistics away from their initial values
    x = torch.tensor([[0.5, 0.5], [3.0, -2.0], [-4.0, 1.0]])

    def loss(batch, train):
        return geo.first_sample_loss(m, batch, train, 0.5, 8, torch.Generator().manual_seed(2))

    assert loss(x[[0, 1]], False) == pytest.approx(loss(x[[0, 2]], False), rel=1e-6)
    assert loss(x[[0, 1]], True) != pytest.approx(loss(x[[0, 2]], True), rel=1e-3)
    assert m.training  # the model itself is left as it was


def test_out_bias_is_the_last_linear_layers_bias():
    m = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    assert geo.out_bias(m) is m[2].bias


def test_nearer_word_says_which_distance_to_retrain_is_smaller():
    assert geo.nearer_word(1.0, 2.5) == "closer to the retrained model than"
    assert geo.nearer_word(2.5, 1.0) == "further from the retrained model than"
    assert geo.nearer_word(0.0, 0.0) == "as far from the retrained model as"
