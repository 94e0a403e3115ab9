"""The opening chapter's experiment code (unlearnkit.experiments.problem)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.bench import Spread
from unlearnkit.claims import Word
from unlearnkit.experiments import problem


def spread_of(rows):
    runs = pd.DataFrame(rows)
    runs["diverged"] = runs.get("diverged", False)
    runs["diverged"] = runs["diverged"].fillna(False).astype(bool)
    runs["error"] = runs.get("error", "")
    runs["error"] = runs["error"].fillna("")
    return Spread(runs)


@pytest.fixture
def small_spread():
    rows = []
    for seed in (0, 1):
        rows += [
            {
                "method": "original",
                "seed": seed,
                "forget": 0,
                "test_retain": 90.0 + seed,
                "test_forget": 95.0,
                "MIA_entropy_%": 90.0,
                "seconds": 10.0,
            },
            {
                "method": "retrain",
                "seed": seed,
                "forget": 0,
                "test_retain": 91.0 + seed,
                "test_forget": 0.0,
                "MIA_entropy_%": 10.0 + 2 * seed,
                "seconds": 8.0,
            },
            {
                "method": "neggrad",
                "seed": seed,
                "forget": 0,
                "test_retain": 80.0,
                "test_forget": 20.0 + 10 * seed,
                "MIA_entropy_%": 30.0,
                "seconds": 0.5,
            },
        ]
    return spread_of(rows)


def test_join_runs_adds_only_new_methods_in_order(small_spread):
    extra = spread_of(
        [
            {"method": "retrain", "seed": 0, "forget": 0, "test_retain": 1.0},
            {
                "method": "big",
                "seed": 0,
                "forget": 0,
                "test_retain": math.nan,
                "diverged": True,
                "error": "weights not finite at step 7",
            },
            {
                "method": "big",
                "seed": 1,
                "forget": 0,
                "test_retain": math.nan,
                "diverged": True,
                "error": "weights not finite at step 3",
            },
        ]
    )
    joined = problem.join_runs(small_spread, extra, ["original", "big", "retrain", "neggrad"])
    assert joined.methods == ["original", "big", "retrain", "neggrad"]
    # the extra spread's retrain rows are not added twice
    assert (joined.runs["method"] == "retrain").sum() == 2
    assert joined.runs.loc[joined.runs["method"] == "retrain", "test_retain"].tolist() == [91.0, 92.0]
    assert problem.divergence_step(joined) == 7.0


def test_divergence_step_nan_without_divergence(small_spread):
    assert math.isnan(problem.divergence_step(small_spread))


def test_summary_values_means_sds_and_diverged_methods():
    rows = [{"method": "a", "seed": s, "forget": 0, "test_forget": v} for s, v in ((0, 10.0), (1, 20.0))] + [
        {"method": "one", "seed": 0, "forget": 0, "test_forget": 5.0},
        {"method": "bad", "seed": 0, "forget": 0, "test_forget": math.nan, "diverged": True},
    ]
    S = spread_of(rows).summary(["test_forget"])
    got = problem.summary_values(S, {"a": "a", "one": "o", "bad": "b", "absent": "x"}, {"test_forget": "tf"})
    assert got["c1_a_tf"] == 15.0
    assert got["c1_a_tf_sd"] == pytest.approx(np.std([10.0, 20.0], ddof=1))
    assert got["c1_o_tf"] == 5.0 and got["c1_o_tf_sd"] == 0.0  # one run: no spread
    assert not any(k.startswith("c1_b_") or k.startswith("c1_x_") for k in got)
    assert all(not math.isnan(v) for v in got.values())


def test_headline_table_puts_papers_beside_ours(small_spread):
    groups = {"test_retain": "kept", "MIA_entropy_%": "MIA"}
    paper = {"original": {"A": (77.86, 97.4), "B": (66.3, 50.0)}, "neggrad": {"A": (66.67, None)}}
    sources = {"test_retain": ("A", "B"), "MIA_entropy_%": ("B",)}
    t = problem.headline_table(small_spread, groups, paper, sources)
    nb = problem.NBSP
    assert list(t.columns) == [
        ("kept", "ours"),
        ("kept", "paper (A / B)"),
        ("MIA", "ours"),
        ("MIA", "paper (B)"),
        ("wall time (s)", "ours"),
    ]
    assert t.loc["original", ("kept", "paper (A / B)")] == f"77.86{nb}/{nb}66.3"
    assert t.loc["neggrad", ("kept", "paper (A / B)")] == f"66.67{nb}/{nb}–"
    assert t.loc["retrain", ("MIA", "paper (B)")] == "–"
    assert t.loc["original", ("MIA", "paper (B)")] == "50.0"
    # ours: mean ± std over the two runs, on one line
    assert t.loc["original", ("kept", "ours")] == f"90.5{nb}±{nb}0.7"


def test_verdict_table_lists_words_and_means(small_spread):
    v = uk.verdict(
        uk.runs_of(small_spread, "neggrad", "test_retain"),
        uk.runs_of(small_spread, "original", "test_retain"),
        paired=True,
        margin=1.0,
        words=("higher than", "lower than", "level with"),
    )
    p = uk.against_paper(uk.runs_of(small_spread, "neggrad", "test_forget"), 7.44, tol=5.0)
    t = problem.verdict_table(
        {("neggrad", "original", "test_retain"): v, ("neggrad", "UNSIR T1", "test_forget"): p}
    )
    assert list(t.index) == [("neggrad", "original"), ("neggrad", "UNSIR T1")]
    assert t["word"].iloc[0] == "lower than"
    assert t["ours"].iloc[0] == 80.0 and t["theirs"].iloc[0] == 90.5
    assert t["ours"].iloc[1] == 25.0 and t["theirs"].iloc[1] == 7.44
    assert isinstance(v, Word)


def test_relative_distance_and_layer_distances():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    b = uk.clone(a)
    assert problem.relative_distance(b, a) == 0.0
    with torch.no_grad():
        b[2].weight.mul_(2.0)  # moves only the last weight matrix, by its own norm
    w = a[2].weight.norm().item()
    total = torch.cat([p.flatten() for p in a.parameters()]).norm().item()
    assert problem.relative_distance(b, a) == pytest.approx(w / total, rel=1e-5)
    d = problem.layer_distances({"original": a, "b": b}, a)
    assert list(d.columns) == ["b"]  # the original itself is left out
    assert list(d.index) == ["0.weight", "2.weight"]  # weight matrices only, no biases
    assert d.loc["0.weight", "b"] == 0.0
    assert d.loc["2.weight", "b"] == pytest.approx(1.0, rel=1e-5)


def test_neggrad_trace_records_every_step_and_forgets(trained_mlp, task0):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    trace = problem.neggrad_trace(trained_mlp, task0, epochs=2, lr=0.5, seed=0, batch_size=8)
    n_forget = len(task0.forget_idx)
    assert len(trace) == 1 + 2 * math.ceil(n_forget / 8)  # step 0, then one row per batch
    assert list(trace.columns) == ["test_forget", "test_retain"]
    xtf, ytf = task0.test_forget()
    assert trace.test_forget.iloc[0] == pytest.approx(uk.accuracy(trained_mlp, xtf, ytf))
    assert trace.test_forget.iloc[-1] < trace.test_forget.iloc[0] / 2  # ascent forgets
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    again = problem.neggrad_trace(trained_mlp, task0, epochs=2, lr=0.5, seed=0, batch_size=8)
    pd.testing.assert_frame_equal(trace, again)


def test_relearn_times_and_table(trained_mlp, task0):
    targets = problem.relearn_targets(trained_mlp, task0)
    xf, yf = task0.forget_set()
    assert targets[0] == pytest.approx(uk.accuracy(trained_mlp, xf, yf))
    assert targets[1] > 0
    broken = uk.clone(trained_mlp)
    with torch.no_grad():
        [p for p in broken.parameters() if p.dim() == 1][-1][0] = -1e3  # never predicts class 0
    rel, curves = problem.relearn_times(
        {"original": trained_mlp, "same": trained_mlp, "broken": broken},
        task0,
        targets,
        seed=0,
        unsir=dict(max_epochs=2, lr=0.05, n_per_epoch=50),
        mask=dict(max_epochs=2, lr=0.05),
    )
    assert list(rel.index) == ["same", "broken"] and list(rel.columns) == ["RT_unsir", "RT_mask"]
    assert set(curves) == {"same", "broken"} and len(curves["same"]) == 2
    assert rel.loc["broken", "RT_unsir"] >= 1 and rel.loc["broken", "RT_mask"] >= 1
    assert curves["broken"][0][0]["forget_acc"] == 0.0
    # the original itself is already at its own accuracy and loss
    assert rel.loc["same", "RT_unsir"] == 0 and rel.loc["same", "RT_mask"] == 0
    table = problem.relearn_beside_paper(
        pd.DataFrame({"RT_unsir": [3, 31], "RT_mask": [31, 2]}, index=["retrain", "x"]),
        {"retrain": "77"},
        30,
        30,
    )
    assert table.loc["retrain"].tolist() == ["3", "77", ">30"]
    assert table.loc["x"].tolist() == [">30", "–", "2"]


def test_epochs_cell():
    assert problem.epochs_cell(5.0, 10) == "5"
    assert problem.epochs_cell(10, 10) == "10"
    assert problem.epochs_cell(11, 10) == ">10"
