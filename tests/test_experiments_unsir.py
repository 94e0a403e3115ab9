"""The UNSIR chapter's experiment code (unlearnkit/experiments/unsir.py): behaviour tests."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

import unlearnkit as uk
from unlearnkit.experiments import unsir as ex

SMALL = dict(
    n_per_class=5,
    noise_batch=8,
    noise_copies=2,
    noise_steps=3,
    batch_size=16,
    impair_lr=0.02,
    repair_lr=0.01,
)


def _spread(rows):
    runs = pd.DataFrame(rows)
    runs["diverged"] = runs.get("diverged", False)
    runs["error"] = ""
    return uk.Spread(runs)


# ----------------------------------------------------------------------------- settings


def test_configs_keep_the_papers_settings_and_scale_digits_down():
    assert ex.CONFIGS["full"]["unsir"] == ex.PAPER_UNSIR
    quick = ex.CONFIGS["quick"]["unsir"]
    assert quick["impair_lr"] == ex.PAPER_UNSIR["impair_lr"] and quick["n_per_class"] == 100
    assert ex.CONFIGS["smoke"]["n_seeds"] == 1 and ex.CONFIGS["quick"]["n_seeds"] == 3
    assert set(ex.CONFIGS["smoke"]["multi_sets"]) == {"1", "2"}


def test_trim_for_dry_run_shortens_only_a_dry_run():
    class Cfg:
        pass

    class Prof:
        def __init__(self, dry):
            self.dry_run = dry

        def few(self, items, n=1, last=False):
            return list(items)[:n]

    def fresh():
        c = Cfg()
        for k, v in copy.deepcopy(ex.CONFIGS["quick"]).items():
            setattr(c, k, v)
        return c

    c = fresh()
    ex.trim_for_dry_run(c, Prof(False))
    assert c.sweep_lam == ex.DIGITS["sweep_lam"] and c.n_seeds == 3
    c = fresh()
    ex.trim_for_dry_run(c, Prof(True))
    # the seeds are the chapter's P.few (a dry run keeps one and counts the others' cost)
    assert c.n_seeds == 3 and len(c.sweep_lam) == 2 and c.repair_steps == 1
    assert c.sweep_repair_lr == [1.0, 0.01]  # the largest rate and the paper's
    assert list(c.multi_sets) == ["1", "2"] and c.unsir["noise_batch"] == 8


# ----------------------------------------------------------------------------- formatting


def test_rt_cell_marks_runs_that_hit_the_budget():
    assert ex.rt_cell([3, 5], cap=10) == "4.0 ± 1.4"
    assert ex.rt_cell([3, 11], cap=10) == "≥ 7.0 ± 5.7"
    assert ex.rt_cell([np.nan], cap=10) == "–"
    assert ex.capped([3, 11, 11, np.nan], cap=10) == "2/3"
    assert ex.capped([], cap=10) == "–"


def test_paper_number_prints_the_papers_way():
    assert ex.paper_number(None) == "–"
    assert ex.paper_number(101) == ">100"
    assert ex.paper_number(77.86) == "77.86" and ex.paper_number(0.0) == "0"


def test_mean_sd_and_pm_table():
    assert ex.mean_sd("c3_x", [1.0, 3.0]) == {"c3_x": 2.0, "c3_x_sd": pytest.approx(2**0.5)}
    assert ex.mean_sd("c3_x", [4.0]) == {"c3_x": 4.0, "c3_x_sd": 0.0}
    df = pd.DataFrame({"g": ["b", "b", "a"], "v": [1.0, 3.0, 5.0]})
    t = ex.pm_table(df, "g", ["v"])
    assert list(t.index) == ["b", "a"]  # groups in order of appearance
    assert t.loc["b", "v"] == "2.0 ± 1.4" and t.loc["a", "v"] == "5.0 ± 0.0"


# ----------------------------------------------------------------------------- tables


def test_table1_puts_ours_beside_the_paper_and_counts_capped_relearn_times():
    rows = []
    for seed in (0, 1):
        rows += [
            dict(
                method="unsir",
                seed=seed,
                forget=0,
                test_retain=90.0 + seed,
                test_forget=1.0,
                RT=6.0,
                seconds=1.0,
            ),
            dict(
                method="retrain",
                seed=seed,
                forget=0,
                test_retain=95.0,
                test_forget=0.0,
                RT=4.0 + 2 * seed,
                seconds=9.0,
            ),
        ]
    t = ex.table1(_spread(rows), "cnn", cap=5)
    assert t.loc["unsir", ("A_Dr", "ours (cnn)")] == "90.5 ± 0.7"
    assert t.loc["unsir", ("A_Dr", "paper ResNet18")] == "71.06"
    assert t.loc["retrain", ("RT", "paper AllCNN")] == ">100"
    assert t.loc["unsir", ("RT", "not relearned in 5")] == "2/2"
    assert t.loc["retrain", ("RT", "not relearned in 5")] == "1/2"
    assert t.loc["retrain", ("RT", "ours (cnn)")].startswith("≥ ")


def test_multi_table_groups_by_class_set():
    rows = [
        dict(method=m, seed=s, forget=k, test_retain=80.0 + s, test_forget=f, RT=2.0, seconds=1.0)
        for k in ("1", "2")
        for m, f in (("unsir", 0.0), ("finetune", 30.0))
        for s in (0, 1)
    ]
    table, mu, sd = ex.multi_table(_spread(rows), "cnn", cap=10)
    assert list(table.index.names) == ["# classes", "method"]
    assert table.loc[("2", "finetune"), ("A_Df", "ours (cnn)")] == "30.0 ± 0.0"
    assert table.loc[("2", "finetune"), ("A_Df", "paper ResNet18")] == "31.59"
    assert mu.loc[("1", "unsir"), "test_retain"] == 80.5
    assert sd.loc[("1", "unsir"), "test_retain"] == pytest.approx(2**-0.5)


def test_lr_tables_pick_the_fixed_rate_and_the_papers_row():
    grid = pd.DataFrame(
        [
            {"impair lr": a, "repair lr": b, "A_Dr repair 1": 10 * a + b, "A_Df repair 1": 0.0}
            for a in (0.1, 0.02)
            for b in (0.1, 0.01)
        ]
    )
    t = ex.lr_tables(grid, impair_lr=0.02)
    assert set(t.index.get_level_values("table")) == {"5", "6"}
    r = t.loc[("5", "impair lr", 0.1)]
    assert r["A_Dr ours"] == pytest.approx(1.01) and r["A_Dr paper R18"] == 41.07
    assert np.isnan(t.loc[("5", "impair lr", 0.02), "A_Dr paper R18"])  # not in the paper's table
    assert t.loc[("6", "repair lr", 0.1), "A_Dr paper AllCNN"] == 9.84


def test_repair_path_orders_impair_then_each_repair():
    run = {"A_Dr impair 1": 50, "A_Df impair 1": 5, "A_Dr repair 1": 70, "A_Df repair 1": 1}
    run.update({"A_Dr repair 2": 80, "A_Df repair 2": 0})
    p = ex.repair_path(run, 2)
    assert list(p.index) == ["impair", "repair 1", "repair 2"]
    assert p["A_Dr"].tolist() == [50, 70, 80] and p["A_Df"].tolist() == [5, 1, 0]


# ----------------------------------------------------------------------------- on a model


def test_accs_and_per_class_accuracy_agree(trained_mlp, digits, task0):
    a = ex.accs(trained_mlp, task0)
    pcs = ex.per_class_accuracy(trained_mlp, digits)
    y = digits.y_test
    assert len(pcs) == digits.num_classes
    assert a["A_Df"] == pytest.approx(pcs[0])
    weights = [(y == c).sum().item() for c in range(1, 10)]
    assert a["A_Dr"] == pytest.approx(np.average(pcs[1:], weights=weights))


def test_prediction_shares_sum_to_100(trained_mlp, task0):
    s = ex.prediction_shares(trained_mlp, task0, 10)
    assert len(s) == 10 and s.sum() == pytest.approx(100.0) and s.idxmax() == 0


def test_distances_follow_weight_distance(trained_mlp, digits):
    other = uk.clone(trained_mlp)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    n_all = sum(p.numel() for p in trained_mlp.parameters())
    assert ex.total_distance(trained_mlp, other) == pytest.approx(n_all**0.5, rel=1e-4)
    layers = ex.layer_distances(trained_mlp, other)
    weights = {n: p for n, p in trained_mlp.named_parameters() if p.dim() > 1}
    assert list(layers.index) == list(weights)  # biases left out, input to output
    for n, p in weights.items():
        assert layers[n] == pytest.approx(p.numel() ** 0.5, rel=1e-4)
    assert ex.total_distance(trained_mlp, trained_mlp) == 0.0


def test_z_norm_measures_the_noise_in_the_normalised_space(trained_mlp):
    norm = next(m for m in trained_mlp.modules() if isinstance(m, uk.models.Normalize))
    z = torch.randn(6, *trained_mlp.arch["in_shape"])
    pixels = z * norm.std + norm.mean  # pixel space, as UNSIR returns its noise
    assert ex.z_norm(trained_mlp, pixels) == pytest.approx(float(z.flatten(1).norm(dim=1).mean()), rel=1e-4)


def test_a_larger_penalty_gives_smaller_noise(trained_mlp):
    kw = dict(batch_size=8, steps=15, lr=0.1, seed=0)
    assert ex.noise_norm(trained_mlp, [0], 10.0, **kw) < ex.noise_norm(trained_mlp, [0], 0.0, **kw)


def test_run_unsir_reports_each_step(trained_mlp, task0):
    out = ex.run_unsir(trained_mlp, task0, dict(SMALL, seed=0), repair_epochs=2)
    assert {"A_Dr impair 1", "A_Df impair 1", "A_Dr repair 1", "A_Dr repair 2"} <= set(out)
    assert out["seconds"] > 0
    assert out == {
        **ex.run_unsir(trained_mlp, task0, dict(SMALL, seed=0), repair_epochs=2),
        "seconds": out["seconds"],
    }


def test_sequential_forgets_one_request_after_another(trained_mlp, digits):
    seq, per_class = ex.sequential(trained_mlp, digits, [0, 1], dict(SMALL, seed=0))
    assert list(seq.index) == ["after forgetting 0", "after forgetting 1"]
    assert list(per_class.index) == ["original", "after forgetting 0", "after forgetting 1"]
    # the last request's A_Df covers classes 0 and 1 together
    y = digits.y_test
    n0, n1 = (y == 0).sum().item(), (y == 1).sum().item()
    last = per_class.loc["after forgetting 1"]
    assert seq.loc["after forgetting 1", "A_Df"] == pytest.approx((last[0] * n0 + last[1] * n1) / (n0 + n1))


def test_runs_record_relearn_times_info_kept_models_and_steps(trained_mlp, task0):
    runs = ex.Runs(dict(max_epochs=2, lr=0.01, n_per_epoch=50))
    unlearned = uk.methods.unsir(trained_mlp, task0, seed=0, callback=runs.keep_steps("UNSIR"), **SMALL)
    models = {"original": trained_mlp, "retrain": uk.clone(trained_mlp), "unsir": unlearned}
    runs.on_run("single-mlp")(uk.SpreadRun(task0, 0, 0, models))
    assert set(runs.rt) == {("single-mlp", 0, 0, "retrain"), ("single-mlp", 0, 0, "unsir")}
    assert runs.rt[("single-mlp", 0, 0, "retrain")] == 0  # the original's copy relearns at once
    assert runs.info[("single-mlp", 0, 0)] is unlearned.unlearn_info
    assert runs.kept[("single-mlp", 0)] == (0, models)
    stages = [r["stage"] for r in runs.steps]
    assert stages == ["impair", "repair"] and runs.steps[0]["variant"] == "UNSIR"
    assert runs.steps[-1]["A_Df"] == pytest.approx(ex.accs(unlearned, task0)["A_Df"])
    paths = runs.paths()
    assert {"A_Dr impair", "A_Df repair"} <= set(paths.columns) and len(paths) == 1
    # a multi-class spread keeps no steps, and the pending copies are dropped
    runs.keep_steps("UNSIR")("impair", 1, trained_mlp)
    runs.on_run("multi-mlp")(uk.SpreadRun(task0, 1, "2", {"original": trained_mlp}))
    assert len(runs.steps) == 2 and runs._pending == []
    assert runs.kept[("single-mlp", 0)][0] == 0  # the first seed's models stay


# ----------------------------------------------------------------------------- small chapter helpers


def test_append_step_records_each_step_under_its_name(trained_mlp, task0):
    trace = []
    ex.append_step(trace, task0, "impair", 1, trained_mlp)
    ex.append_step(trace, task0, "repair", 2, trained_mlp)
    assert [r["step"] for r in trace] == ["impair 1", "repair 2"]
    assert trace[0]["A_Dr"] == ex.accs(trained_mlp, task0)["A_Dr"]
    assert trace[1]["A_Df"] == ex.accs(trained_mlp, task0)["A_Df"]


def test_summary_mean_reads_the_mean_column_and_is_nan_for_a_missing_method():
    S = pd.DataFrame({"RT mean": [3.0, 7.5], "RT std": [1.0, 0.5]}, index=["unsir", "retrain"])
    assert ex.summary_mean(S, "retrain", "RT") == 7.5
    assert isinstance(ex.summary_mean(S, "unsir", "RT"), float)
    assert np.isnan(ex.summary_mean(S, "neggrad", "RT"))


def test_column_values_keeps_row_order_as_floats():
    t = pd.DataFrame({"unsir": [3, 11, 5], "retrain": [1, 2, 3]})
    v = ex.column_values(t, "unsir")
    assert v.dtype == float and v.tolist() == [3.0, 11.0, 5.0]


def test_with_without_words():
    assert ex.with_without("lower", "higher", "the noise") == (
        "lower with the noise than without it",
        "higher with the noise than without it",
        "not distinguishable with and without the noise",
    )
    assert ex.with_without("higher", "lower", "the bug", than_without=False) == (
        "higher with the bug",
        "lower with the bug",
        "not distinguishable with and without the bug",
    )


def test_n_kept_rounds_the_share_and_keeps_at_least_one():
    assert ex.n_kept(0.1, 170) == 17
    assert ex.n_kept(0.7, 170) == 119
    assert ex.n_kept(0.001, 170) == 1
    assert ex.n_kept(1.0, 170) == 170
