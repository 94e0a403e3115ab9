"""The chapter set-up call and the shared tables: what every chapter's first cell and its
"ours beside the paper" tables rest on."""

import time

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.chapter import Glue


def test_chapter_sets_up_the_profile_the_clock_and_a_prefixed_glue(capsys):
    P, glue = uk.chapter("c9", "smoke", seed=3)
    assert "profile=smoke" in capsys.readouterr().out and P.seed == 3 and uk.active() is P
    t1 = glue.seconds()
    time.sleep(0.02)
    assert glue.seconds() - t1 >= 0.02 and glue.prefix == "c9"
    glue(c9_gap=np.float32(2.5), c9_n=np.int64(4), c9_word="ties", c9_t=torch.tensor(1.5))
    assert glue.values["c9_gap"] == 2.5 and type(glue.values["c9_gap"]) is float
    assert glue.values["c9_n"] == 4 and type(glue.values["c9_n"]) is int
    assert repr(glue.values["c9_word"]) == "ties"  # shown without quotes
    assert glue.values["c9_t"] == 1.5
    assert glue("c9_one", np.float64(0.25)) == 0.25
    uk.profiles.reset()


def test_glue_refuses_foreign_names_nan_and_nothing():
    uk.profile("smoke", quiet=True, dry_run=False)
    glue = Glue("c3")
    with pytest.raises(ValueError, match="start with 'c3_': rename 'c4_gap'"):
        glue(c4_gap=1.0)
    with pytest.raises(ValueError, match="c3_gap is NaN"):
        glue(c3_gap=float("nan"))
    with pytest.raises(TypeError, match="needs a name and a value"):
        glue()
    with pytest.raises(ValueError, match="short name such as 'c7'"):
        Glue("c 7")
    uk.profile("smoke", quiet=True, dry_run=True)  # a dry run's untrained models may give NaN
    glue(c3_gap=float("nan"))
    uk.profiles.reset()


def _spread():
    rows = []
    for seed, (a, b) in enumerate([(10.0, 50.0), (12.0, 54.0), (14.0, float("nan"))]):
        rows.append(dict(method="jit", seed=seed, forget=0, test_forget=a, diverged=False))
        rows.append(dict(method="neggrad", seed=seed, forget=0, test_forget=b, diverged=np.isnan(b)))
    return uk.Spread(pd.DataFrame(rows))


def test_pm_and_paper_cells():
    assert uk.pm(1.234, 0.5) == "1.2 ± 0.5" and uk.pm(1.234) == "1.2" and uk.pm(float("nan"), 1) == "–"
    assert uk.tables.paper_cell((3.0, 1.0)) == "3.0 ± 1.0" and uk.tables.paper_cell(None) == "–"


def test_pm_of_and_std_of_summarise_the_finite_runs():
    assert uk.pm_of([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert uk.pm_of([5.0]) == "5.0 ± 0.0"  # one run: no spread, shown as 0
    assert uk.pm_of([1.0, np.nan, 3.0], digits=2) == "2.00 ± 1.41"
    assert uk.pm_of([np.nan]) == "–" and uk.pm_of(np.array([])) == "–"
    assert uk.tables.std_of(pd.Series([1.0, 3.0])) == pytest.approx(np.sqrt(2.0))  # ddof=1
    assert uk.tables.std_of([5.0]) == 0.0 and np.isnan(uk.tables.std_of([]))


def test_count_puts_the_noun_in_the_right_number():
    assert uk.tables.count(1, "seed") == "1 seed" and uk.tables.count(3, "seed") == "3 seeds"
    assert uk.tables.count(0, "step") == "0 steps" and uk.tables.count(2.0, "epoch") == "2 epochs"
    assert uk.tables.count(2, "class", "classes") == "2 classes"


def test_spread_diffs_subtract_the_retrained_model_of_the_same_run():
    runs = pd.DataFrame(
        {
            "method": ["original", "retrain", "a", "b"] * 2,
            "seed": [0] * 4 + [1] * 4,
            "forget": [3] * 8,
            "acc": [90.0, 80.0, 70.0, np.nan, 92.0, 85.0, 88.0, np.nan],
            "diverged": [False, False, False, True] * 2,
        }
    )
    d = uk.Spread(runs).diffs("acc")
    np.testing.assert_allclose(d["a"], [-10.0, 3.0])
    np.testing.assert_allclose(d["original"], [10.0, 7.0])
    assert d["b"].size == 0  # every run diverged
    assert uk.Spread(runs).gap("acc")["a"] == pytest.approx(6.5)


def test_runs_of_leaves_out_diverged_runs():
    sp = _spread()
    assert uk.runs_of(sp, "neggrad", "test_forget").tolist() == [50.0, 54.0]
    assert uk.runs_of(sp, "jit", "test_forget", seed=1).tolist() == [12.0]


def test_beside_paper_puts_each_papers_number_next_to_our_spread():
    sp = _spread()
    tab = uk.beside_paper(
        sp,
        {"test_forget": "A_Df"},
        {"paper": {"JiT": {"test_forget": (11.0, 2.0)}, "neggrad": {"test_forget": 7.44}}},
        names={"jit": "JiT"},
    )
    assert tab.loc["jit", ("A_Df", "ours")] == "12.0 ± 2.0"
    assert tab.loc["jit", ("A_Df", "paper")] == "11.0 ± 2.0"
    assert tab.loc["neggrad", ("A_Df", "ours")] == "52.0 ± 2.8"
    assert tab.loc["neggrad", ("A_Df", "paper")] == "7.4"
    by = uk.beside_paper(
        sp, {"test_forget": "A_Df"}, {"paper": {"jit": {0: {"test_forget": 1.0}}}}, by="forget"
    )
    assert by.loc[(0, "jit"), ("A_Df", "paper")] == "1.0" and by.loc[(0, "neggrad"), ("A_Df", "paper")] == "–"
