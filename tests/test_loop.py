"""Library v2: one profile, one descent loop, divergence as a result, results with spread, dry-run caps."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_mlp

import unlearnkit as uk
from unlearnkit import profiles


@pytest.fixture(autouse=True)
def _fresh_profile():
    profiles.reset()
    yield
    profiles.reset()


# ----------------------------------------------------------------------------- one source of truth


def test_profile_config_and_uk_config_follow_the_active_profile(monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_PROFILE", "quick")
    C = {"smoke": {"n": 1}, "quick": {"n": 2}, "full": {"n": 3}}
    P = uk.profile("smoke", device="cpu", quiet=True)
    assert P.config(C).n == 1
    assert uk.config(C).n == 1  # today's bug: uk.config read the environment again
    assert uk.config(C, "full").n == 3


def test_seed_comes_from_the_environment_and_seeds_everything(monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_SEED", "3")
    P = uk.profile("smoke", device="cpu", quiet=True)
    assert P.seed == 3
    a = torch.rand(3)
    uk.profile("smoke", device="cpu", quiet=True)
    assert torch.equal(a, torch.rand(3))
    assert uk.profile("smoke", seed=5, device="cpu", quiet=True).seed == 5
    monkeypatch.setenv("UNLEARNKIT_SEED", "x")
    with pytest.raises(ValueError, match="UNLEARNKIT_SEED must be an integer"):
        uk.profile("smoke", device="cpu", quiet=True)


def test_train_or_load_and_methods_default_to_the_active_seed(digits, tmp_path):
    uk.profile("smoke", seed=1, device="cpu", quiet=True)
    kw = dict(model="mlp", epochs=1, lr=0.05, verbose=False, progress=False, cache_dir=tmp_path)
    a = uk.train_or_load(digits, "original", **kw)
    b = uk.train_or_load(digits, "original", seed=1, **kw)
    c = uk.train_or_load(digits, "original", seed=0, **kw)
    assert a.zoo_path == b.zoo_path != c.zoo_path


def test_check_asserts_and_is_skipped_in_a_dry_run(capsys):
    uk.profile("smoke", device="cpu", quiet=True)
    assert uk.check(True, "fine")
    with pytest.raises(AssertionError, match="Claim does not hold: forgetting happened"):
        uk.check(False, "forgetting happened")
    uk.profile("full", device="cpu", quiet=True, dry_run=True)
    assert uk.check(False, "needs trained models")
    assert "check skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the loop


def test_descend_minimises_a_loss_and_honours_the_step_cap_and_early_stop(digits):
    m = tiny_mlp(digits)
    x, y = digits.x_train, digits.y_train
    before = F.cross_entropy(uk.predict(m, x), y).item()
    h = uk.descend(
        m,
        lambda e: uk.batches(x, y, batch_size=32, shuffle=True),
        lambda mm, xb, yb: F.cross_entropy(mm(xb), yb),
        epochs=3,
        lr=0.1,
        progress=False,
    )
    assert F.cross_entropy(uk.predict(m, x), y).item() < before
    assert h.steps == 3 * math.ceil(len(x) / 32) and h.epochs == 3
    h = uk.descend(
        m,
        [(x[:8], y[:8])] * 5,
        lambda mm, xb, yb: F.cross_entropy(mm(xb), yb),
        epochs=4,
        max_steps=7,
        lr=0.01,
        progress=False,
    )
    assert h.steps == 7
    h = uk.descend(
        m,
        [(x[:8], y[:8])] * 5,
        lambda mm, xb, yb: F.cross_entropy(mm(xb), yb),
        epochs=4,
        stop=lambda mm: True,
        stop_every=3,
        lr=0.01,
        progress=False,
    )
    assert h.steps == 3 and h.stopped_early


def test_descend_caps_every_loop_at_two_steps_in_a_dry_run(digits):
    uk.profile("full", device="cpu", quiet=True, dry_run=True)
    m = tiny_mlp(digits)
    h = uk.fit(m, digits.x_train, digits.y_train, epochs=5, batch_size=16, progress=False)
    assert h.steps == 2
    task = uk.forget_classes(digits, [1])
    out = uk.methods.jit(m, task, sigma=0.5, lr=1e-4, n_samples=3, batch_size=1)
    assert out.unlearn_info["steps"] == 2


def test_divergence_raises_diverged_error_naming_the_method_and_step(digits, trained_mlp):
    task = uk.forget_classes(digits, [0])
    with pytest.raises(uk.DivergedError, match="neggrad diverged") as e:
        uk.methods.neggrad(trained_mlp, task, lr=1e6, epochs=5)
    assert e.value.method == "neggrad" and isinstance(e.value, ValueError)
    m = tiny_mlp(digits)
    with pytest.raises(uk.DivergedError, match=r"diverged at step \d+"):
        uk.fit(
            m,
            digits.x_train,
            digits.y_train * 0 + float("nan") if False else digits.y_train,
            epochs=2,
            lr=1e12,
            progress=False,
            weight_decay=0.0,
        )


def test_predict_is_float32_and_does_not_autocast(digits, trained_mlp):
    out = uk.predict(trained_mlp, digits.x_test)
    assert out.dtype == torch.float32
    with torch.no_grad():
        ref = trained_mlp.eval()(digits.x_test)
    assert torch.allclose(out, ref)


def test_few_trims_loops_only_in_a_dry_run():
    P = uk.profile("full", device="cpu", quiet=True, dry_run=True)
    assert P.few([0, 3, 5]) == [0] and P.few([1, 2, 3, 4], last=True) == [1, 4]
    assert P.few([7]) == [7] and P.few((1, 2), last=True) == [1, 2] and P.few([1, 2, 3], n=2) == [1, 2]
    P = uk.profile("quick", device="cpu", quiet=True, dry_run=False)
    assert P.few([0, 3, 5]) == [0, 3, 5] and P.few(range(3), last=True) == [0, 1, 2]


# ----------------------------------------------------------------------------- runner and spread


def test_run_methods_takes_names_and_pairs_and_records_diverged_rows(digits, trained_mlp):
    task = uk.forget_classes(digits, [0])
    df, models = uk.run_methods(
        ["finetune", ("neggrad", {"lr": 1e6, "epochs": 5})],
        trained_mlp,
        task,
        extra_models={"original": trained_mlp},
        verbose=False,
        mia=False,
    )
    assert list(df.index) == ["original", "finetune", "neggrad (lr=1000000.0, epochs=5)"]
    bad = df.loc["neggrad (lr=1000000.0, epochs=5)"]
    assert bool(bad["diverged"]) and math.isnan(bad["test_retain"]) and "diverged" in bad["error"]
    assert not df.loc["finetune", "diverged"]
    # one clock: the registry's
    assert df.loc["finetune", "seconds"] == models["finetune"].unlearn_info["seconds"]
    shown = uk.format_table(df, ["test_retain", "seconds"])
    assert shown.loc["neggrad (lr=1000000.0, epochs=5)", "test_retain"] == "diverged"
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        uk.run_methods(["nope"], trained_mlp, task, verbose=False)
    with pytest.raises(TypeError, match="registered name"):
        uk.run_methods([3], trained_mlp, task, verbose=False)


def test_every_method_diverging_still_gives_a_table(digits, trained_mlp):
    task = uk.forget_classes(digits, [0])
    df, models = uk.run_methods(
        [("neggrad", {"lr": 1e6, "epochs": 5})], trained_mlp, task, verbose=False, mia=False
    )
    assert models == {} and bool(df.iloc[0]["diverged"]) and "diverged" in df.iloc[0]["error"]
    assert uk.format_table(df).iloc[0].tolist() == []  # no metric columns, nothing to show


def test_finite_weights_with_nan_outputs_count_as_diverged(digits):
    from unlearnkit.methods._registry import REGISTRY

    @uk.register("_nan_outputs_for_test", access="forget")
    def nan_outputs(model, task):
        """Finite weights, NaN outputs: a batch-norm running variance of -1 makes sqrt(var) NaN."""
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(-1.0)
        return model

    try:
        model = uk.build_model("cnn", digits, width=8)
        task = uk.forget_classes(digits, [0])
        with pytest.raises(uk.DivergedError, match="NaN or infinite"):
            nan_outputs(model, task)
        df, _ = uk.run_methods(
            ["_nan_outputs_for_test"], model, task, verbose=False, mia=True, extra_models={"original": model}
        )
        assert bool(df.loc["_nan_outputs_for_test", "diverged"]) and not df.loc["original", "diverged"]
    finally:
        REGISTRY.pop("_nan_outputs_for_test", None)


def test_one_run_shows_no_spread(digits, tmp_path):
    uk.profile("smoke", device="cpu", quiet=True)
    train = dict(
        model="mlp", model_kwargs={"hidden": (32,)}, epochs=2, lr=0.1, progress=False, cache_dir=tmp_path
    )
    sp = uk.run_spread(
        ["finetune"], lambda c, s: uk.forget_classes(digits, [c]), train, seeds=(0,), forget=(0,), mia=False
    )
    cell = sp.table(["test_retain"]).loc["finetune", "test_retain"]
    assert "±" not in cell and float(cell) > 50


def test_run_spread_repeats_over_seeds_and_classes(digits, tmp_path):
    uk.profile("smoke", device="cpu", quiet=True)
    train = dict(
        model="mlp", model_kwargs={"hidden": (32,)}, epochs=3, lr=0.1, progress=False, cache_dir=tmp_path
    )
    seen = []
    sp = uk.run_spread(
        ["finetune", ("neggrad", {"lr": 1e6, "epochs": 5})],
        lambda c, s: uk.forget_classes(digits, [c]),
        train,
        seeds=(0, 1),
        forget=(0, 3),
        mia=False,
        on_run=seen.append,
    )
    assert len(sp.runs) == 2 * 2 * 4
    # the hook sees each run's own task, seed, forget item and models
    assert [(r.seed, r.forget) for r in seen] == [(0, 0), (1, 0), (0, 3), (1, 3)]
    assert all(r.task.forget_classes == [r.forget] for r in seen)
    assert set(seen[0].models) == {"original", "retrain", "finetune"}  # the diverged one is absent
    assert uk.accuracy(seen[2].models["retrain"], *seen[2].task.forget_set()) == 0
    assert set(sp.runs["seed"]) == {0, 1} and set(sp.runs["forget"]) == {0, 3}
    s = sp.summary(["test_retain"])
    ft = sp.runs.loc[sp.runs["method"] == "finetune", "test_retain"]
    assert s.loc["finetune", "runs"] == 4
    assert s.loc["finetune", "test_retain std"] == pytest.approx(ft.std(ddof=1))
    t = sp.table(["test_retain"])
    assert t.loc["neggrad (lr=1000000.0, epochs=5)", "test_retain"] == "diverged"
    assert "±" in t.loc["finetune", "test_retain"]
    assert sp.gap("test_forget")["retrain"] == 0.0
    # the zoo keeps one retrain per seed and forget class
    assert len(list(tmp_path.glob("*retrain*.pt"))) == 4
    import matplotlib

    matplotlib.use("Agg")
    ax = uk.plots.spread(sp, "test_retain")
    assert any("diverged" in t.get_text() for t in ax.get_xticklabels())


# ----------------------------------------------------------------------------- caps elsewhere


def test_fisher_attacks_and_relearn_are_capped_in_a_dry_run(digits, trained_mlp):
    uk.profile("full", device="cpu", quiet=True, dry_run=True)
    x, y = digits.x_train[:50], digits.y_train[:50]
    f = uk.diag_fisher(trained_mlp, x, y)
    ref = uk.diag_fisher.__wrapped__ if hasattr(uk.diag_fisher, "__wrapped__") else None
    profiles.reset()
    uk.profile("smoke", device="cpu", quiet=True)
    f2 = uk.diag_fisher(trained_mlp, x[:2], y[:2])
    assert all(torch.allclose(f[k], f2[k]) for k in f)
    assert ref is None


def test_bn_stat_change_and_evaluate_errors(digits, trained_mlp):
    assert math.isnan(uk.bn_stat_change(trained_mlp, trained_mlp))
    uk.set_seed(0)
    cnn = uk.build_model("cnn", digits, device="cpu")
    moved = uk.clone(cnn).train()
    with torch.no_grad():
        moved(digits.x_train[:64])
    assert uk.bn_stat_change(cnn, cnn) == 0.0 and uk.bn_stat_change(moved, cnn) > 0
    task = uk.forget_classes(digits, [0])
    with pytest.raises(TypeError, match="'x' is a int, not a torch model"):
        uk.evaluate({"x": 3}, task)


# ----------------------------------------------------------------------------- methods moved onto the loop


def test_relabel_moves_every_forget_sample_to_its_nearest_wrong_class(digits, trained_mlp):
    task = uk.forget_instances(digits, [0, 1, 2, 3])
    xf, yf = task.forget_set()
    wrong = uk.methods.runner_up_labels(trained_mlp, xf, yf)
    assert (wrong != yf).all()
    logits = uk.predict(trained_mlp, xf)
    logits[torch.arange(4), yf] = -1e9
    assert torch.equal(wrong, logits.argmax(1))
    out = uk.methods.relabel(trained_mlp, task, lr=0.05, max_steps=300)
    assert out.unlearn_info["relabelled"] == 1.0 and out.unlearn_info["steps"] < 300
    assert torch.equal(uk.predict(out, xf).argmax(1), wrong)
    assert out.unlearn_info["access"] == "forget"


def test_random_labels_defaults_to_the_benchmarks_adam_and_moves_more_than_sgd(digits, trained_mlp):
    task = uk.forget_classes(digits, [3])
    adam = uk.methods.random_labels(trained_mlp, task, epochs=3)
    sgd = uk.methods.random_labels(trained_mlp, task, epochs=3, optimizer="sgd")
    assert adam.unlearn_info["hyperparameters"] == {"epochs": 3}
    d = lambda m: sum((p - q).norm() ** 2 for p, q in zip(m.parameters(), trained_mlp.parameters())) ** 0.5  # noqa
    assert d(adam) > 3 * d(sgd)
    loss = lambda m: uk.metrics.per_sample_loss(m, *task.forget_set()).mean().item()  # noqa: E731
    assert loss(adam) > loss(sgd) > 0


def test_fisher_forgetting_variance_is_averaged_over_input_units_only():
    from unlearnkit.methods.baselines import _fisher_variance

    p = torch.zeros(2, 3, 2, 2)
    f = torch.ones(2, 3, 2, 2)
    f[:, :, 0, 0] = 0.5  # kernel position (0, 0) is less informative
    var = _fisher_variance(f, p, alpha=1.0, max_var=1e3, is_head=False)
    assert var.shape == p.shape
    assert torch.allclose(var[:, :, 0, 0], torch.full((2, 3), 2.0, dtype=var.dtype), atol=1e-6)
    assert torch.allclose(var[:, :, 1, 1], torch.ones(2, 3), atol=1e-6)  # positions are not mixed


def test_same_seed_same_numbers_on_cpu(digits, trained_mlp):
    task = uk.forget_classes(digits, [2])
    a, _ = uk.run_methods(
        ["finetune", ("jit", {"sigma": 0.5, "lr": 1e-3})], trained_mlp, task, verbose=False, mia=False, seed=4
    )
    b, _ = uk.run_methods(
        ["finetune", ("jit", {"sigma": 0.5, "lr": 1e-3})], trained_mlp, task, verbose=False, mia=False, seed=4
    )
    cols = ["test_retain", "test_forget", "train_forget"]
    assert a[cols].equals(b[cols])
