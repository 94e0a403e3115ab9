"""The showdown's analysis on hand-made runs whose answers are known."""

import numpy as np
import pandas as pd

import unlearnkit as uk
from unlearnkit.experiments import showdown as sd


def _spread(gap_a=(1.0, 1.2, 0.8), gap_b=(1.1, 1.0, 1.3), gap_c=(9.0, 8.0, 10.0)):
    """Runs of three methods whose distance to retrain is exactly the given values."""
    rows = []
    for seed in range(3):
        ref = dict(train_forget=0.0, train_retain=100.0, test_retain=95.0)
        rows.append(dict(method="retrain", seed=seed, forget="0", diverged=False, **ref))
        for m, g in (
            ("original", (30.0, 30.0, 30.0)),
            ("jit", gap_a),
            ("neggrad", gap_b),
            ("finetune", gap_c),
        ):
            d = g[seed]
            rows.append(
                dict(
                    method=m,
                    seed=seed,
                    forget="0",
                    diverged=False,
                    train_forget=3 * d,
                    train_retain=100.0,
                    test_retain=95.0,
                )
            )
    rows.append(
        dict(
            method="relabel",
            seed=0,
            forget="0",
            diverged=True,
            train_forget=np.nan,
            train_retain=np.nan,
            test_retain=np.nan,
        )
    )
    return uk.Spread(pd.DataFrame(rows))


def test_run_gaps_are_the_mean_distance_per_run_and_skip_diverged_runs():
    g = sd.run_gaps(_spread())
    np.testing.assert_allclose(g["jit"], [1.0, 1.2, 0.8])
    assert "relabel" not in g and g["retrain"].tolist() == [0.0, 0.0, 0.0]


def test_leaders_name_a_tie_within_the_spread_and_a_clear_lead_otherwise():
    lead = sd.leaders(sd.run_gaps(_spread()))
    assert lead["best"] == "jit" and lead["ties"] == ["neggrad"] and lead["vs_next"] == "tie"
    assert lead["text"].startswith("a tie: jit, neggrad")
    assert set(lead["beats_original"]) == {"jit", "neggrad", "finetune"}
    clear = sd.leaders(sd.run_gaps(_spread(gap_b=(5.0, 5.5, 6.0))))
    assert clear["vs_next"] == "better" and clear["ties"] == [] and "beyond the spread" in clear["text"]


def test_pick_by_access_says_when_nothing_beats_doing_nothing():
    gaps = sd.run_gaps(_spread(gap_c=(40.0, 50.0, 45.0)))  # finetune (retain) worse than the original
    table, no_beat = sd.pick_by_access({"full-class": gaps})
    assert table.loc["forget", "full-class"].startswith("jit (1.0)")
    assert "ties" not in table.loc["forget", "full-class"]  # neggrad has another access level
    assert table.loc["retain", "full-class"] == "finetune (45.0; not closer than the original)"
    assert no_beat == ["retain on full-class"] and table.loc["class_ids", "full-class"] == "n/a"


def test_with_inapplicable_appends_n_a_rows_with_their_access():
    tab = pd.DataFrame({"access": ["forget"], "D_f": ["1.0"]}, index=["jit"])
    out = sd.with_inapplicable(tab, "random", ["jit", "unsir", "mnemonic_with_data"])
    assert list(out.index) == ["jit", "unsir", "mnemonic_with_data"]
    assert out.loc["unsir", "access"] == "retain_subset" and out.loc["unsir", "D_f"] == "n/a"


def test_against_reference_and_identical_groups():
    tab = pd.DataFrame({"F": [0.2, 0.25, 0.0], "F std": [0.03, 0.03, 0.0]}, index=["ref", "a", "b"])
    assert sd.against_reference(tab, "a", "ref") == "not distinguishable from"
    assert sd.against_reference(tab, "b", "ref") == "below"
    sim = sd.identical_groups((8, 64), 30, seed=0)
    assert set(sim) == {8, 64} and all(len(h) == 30 for h in sim.values())
    # two groups of one distribution score far from 1 and well above 0 under the official rule
    assert 0.05 < sim[64].mean() < 0.6


def test_marker_area():
    np.testing.assert_allclose(sd.marker_area([1e-3, 1e3, np.nan]), [15, 400, 15])
