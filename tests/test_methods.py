"""The baselines with the one signature: they forget, keep the rest, never mutate their input, and
see only what their access level allows; the register that enforces it."""

import pytest
import torch
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit.methods import REGISTRY, finetune, fisher_forgetting, neggrad, random_labels, retrain
from unlearnkit.methods._registry import register

BASELINES = {
    "retrain": (retrain, dict(epochs=8, lr=0.1, batch_size=32)),
    "finetune": (finetune, dict(epochs=2, lr=0.05)),
    "neggrad": (neggrad, dict(epochs=8, lr=0.1, batch_size=16, retain_weight=3.0)),  # NegGrad+
    "random_labels": (random_labels, dict(epochs=3, lr=0.05)),
    "fisher_forgetting": (fisher_forgetting, dict(alpha=1e-6, n_samples=60)),
}
ACCESS = {
    "retrain": "retain",
    "finetune": "retain",
    "neggrad": "forget+retain",
    "random_labels": "forget+retain",
    "fisher_forgetting": "retain",
}


@pytest.fixture(scope="module")
def results(_trained_mlp, task0):
    """Each baseline applied once to the tiny trained model; the input's state kept to compare."""
    before = state(_trained_mlp)
    out = {name: fn(_trained_mlp, task0, **hp) for name, (fn, hp) in BASELINES.items()}
    return before, out


def accs(model, task):
    return uk.accuracy(model, *task.forget_set()), uk.accuracy(model, *task.test_retain())


def test_registered_with_their_access_levels():
    for name, access in ACCESS.items():
        fn = uk.get_method(name)
        assert REGISTRY[name] is fn and fn.access == access and fn.method_name == name and fn.paper
    assert uk.methods.retrain.__name__ == "retrain" and "retain set" in uk.methods.retrain.__doc__


def test_never_mutate_the_input_and_return_a_new_model(_trained_mlp, results):
    before, out = results
    assert same_state(before, state(_trained_mlp))
    for name, m in out.items():
        assert m is not _trained_mlp
        assert not same_state(before, state(m)), f"{name} changed nothing"
        assert not m.training and m.arch == _trained_mlp.arch
        uk.check_finite(m)


def test_unlearn_info_and_runtime(results):
    _, out = results
    for name, m in out.items():
        info = m.unlearn_info
        assert info["method"] == name and info["access"] == ACCESS[name]
        assert info["hyperparameters"] == BASELINES[name][1]
        assert info["seconds"] > 0 and uk.runtime(m) == info["seconds"]


def test_retrain_forgets_and_keeps_the_rest(_trained_mlp, task0, results):
    f, r = accs(results[1]["retrain"], task0)
    f0, r0 = accs(_trained_mlp, task0)
    assert f0 == 100.0 and f == 0.0  # never saw class 0
    assert r > r0 - 10


@pytest.mark.parametrize("name", ["neggrad", "random_labels", "fisher_forgetting"])
def test_baselines_forget(_trained_mlp, task0, results, name):
    f, r = accs(results[1][name], task0)
    assert f <= 50.0, f"{name} kept {f}% of the forget set"
    assert r >= 60.0, f"{name} lost the retain set ({r}%)"


def test_finetune_keeps_the_retain_set(_trained_mlp, task0, results):
    f, r = accs(results[1]["finetune"], task0)
    _, r0 = accs(_trained_mlp, task0)
    assert r >= r0 - 5


def test_baselines_are_deterministic(_trained_mlp, task0, results):
    for name, (fn, hp) in BASELINES.items():
        again = fn(_trained_mlp, task0, **hp)
        assert same_state(state(again), state(results[1][name])), name


def test_plain_neggrad_ascends_the_forget_loss(_trained_mlp, task0):
    from unlearnkit.metrics import per_sample_loss

    loss = lambda m: per_sample_loss(m, *task0.forget_set()).mean().item()  # noqa: E731
    losses = [loss(neggrad(_trained_mlp, task0, epochs=e, lr=0.1, batch_size=16)) for e in (1, 3, 5)]
    assert loss(_trained_mlp) < losses[0] < losses[1] < losses[2]


def test_fisher_forgetting_on_a_random_task(_trained_mlp, digits):
    task = uk.forget_random(digits, 20, seed=0)
    f = fisher_forgetting(_trained_mlp, task, n_samples=30)
    # random forgetting: no class head is zeroed
    assert (f.net.net[-1].weight.abs().sum(1) > 0).all()


# ----------------------------------------------------------------------------- access enforcement


@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_read_nothing_beyond_their_access(_trained_mlp, task0, monkeypatch, name):
    """Each baseline runs against a view whose forbidden readers are booby-trapped."""
    read = []
    for reader in (
        "forget_set",
        "retain_set",
        "retain_subset",
        "test_forget",
        "test_retain",
        "test_set",
        "train_set",
    ):
        real = getattr(uk.Task, reader)
        monkeypatch.setattr(
            uk.Task,
            reader,
            (lambda r, f: lambda self, *a, **k: (read.append(r), f(self, *a, **k))[1])(reader, real),
        )
    fn, hp = BASELINES[name]
    fn(_trained_mlp, task0, **{**hp, **({"epochs": 1} if "epochs" in hp else {})})
    allowed = {"retain": {"retain_set"}, "forget+retain": {"forget_set", "retain_set"}}[ACCESS[name]]
    assert set(read) and set(read) <= allowed, f"{name} read {set(read)}"


def test_method_asking_beyond_its_access_gets_a_clear_error(trained_mlp, task0):
    @register("peeker_for_test", access="forget")
    def peeker(model, task):
        task.retain_set()
        return model

    try:
        with pytest.raises(
            uk.AccessError, match=r"peeker_for_test may see the forget set D_f only.*task\.retain_set"
        ):
            peeker(trained_mlp, task0)
        # a view handed in is widened to nothing: the method's own level rules
        with pytest.raises(uk.AccessError):
            peeker(trained_mlp, task0.view("full"))
    finally:
        REGISTRY.pop("peeker_for_test", None)


def test_register_and_lookup_errors():
    with pytest.raises(ValueError, match="Unknown access level 'everything'"):
        register("x", access="everything")
    with pytest.raises(ValueError, match="Unknown method 'nope': registered are .*finetune"):
        uk.get_method("nope")
    with pytest.raises(ValueError, match="not produced by a registered unlearning method"):
        uk.runtime(torch.nn.Linear(2, 2))


def test_register_wrapper_rejects_bad_models(task0, trained_mlp):
    with pytest.raises(TypeError, match="finetune: the first argument must be a torch model, got dict"):
        finetune({"w": 1}, task0)
    with torch.no_grad():
        trained_mlp.net.net[1].bias[0] = float("nan")
    with pytest.raises(ValueError, match="model given to finetune has non-finite weights"):
        finetune(trained_mlp, task0)


def test_neggrad_divergence_is_caught(trained_mlp, task0):
    with pytest.raises(ValueError, match=r"neggrad diverged at step \d+.*NaN or infinite"):
        neggrad(trained_mlp, task0, epochs=3, lr=1e30)


# ----------------------------------------------------------------------------- one record, one convention


def _cheap_hp(name):
    """Small settings that make every registered method run in a second on the tiny model."""
    return {
        "retrain": dict(epochs=1),
        "finetune": dict(epochs=1),
        "neggrad": dict(epochs=1, batch_size=8),
        "random_labels": dict(epochs=1),
        "fisher_forgetting": dict(n_samples=30),
        "boundary_shrink": dict(epochs=1, batch_size=8, lr=1e-2),
        "relabel": dict(max_steps=2),
        "instance_unlearn": dict(n_adv=1, pgd_iters=2, max_steps=2),
        "jit": dict(sigma=0.1, lr=1e-3),
        "mask": dict(finetune_epochs=1, n_retain=60),
        "mask_forget_only": {},
        "mask_retain_subset": dict(finetune_epochs=1, n_retain=20),
        "mask_classifier": {},
        "replay_finetune": dict(finetune_epochs=1),
        "fisher_noise": dict(n_samples=30, finetune_epochs=1),
        "mnemonic": dict(codes=None),
        "mnemonic_with_data": dict(n_per_class=5),
        "unsir": dict(n_per_class=5, noise_batch=4, noise_copies=1, noise_steps=1),
        "scrub": dict(epochs=1, msteps=1, batch_size=64, forget_batch_size=16),
        "neggrad_plus": dict(epochs=1, batch_size=64),
        "salun": dict(epochs=1, batch_size=64),
        "l1_sparse": dict(epochs=1, batch_size=64),
        "ssd": dict(n_samples=100),
    }[name]


def _random_state():
    import random

    import numpy as np

    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_no_method_moves_the_callers_random_state_and_a_seed_fixes_its_result(_trained_mlp, task0, name):
    if name in ("mnemonic", "instance_unlearn"):
        task = uk.forget_instances(task0.data, list(range(4))) if name == "instance_unlearn" else task0
    else:
        task = task0
    if name == "mnemonic":
        pytest.skip("needs an original trained with codes (tests/test_mnemonic.py checks its seed)")
    fn = uk.get_method(name)
    hp = _cheap_hp(name)
    torch.manual_seed(123)
    before = _random_state()
    a = fn(_trained_mlp, task, seed=5, **hp)
    after = _random_state()
    assert torch.equal(before[0], after[0]), f"{name} moved torch's global random state"
    assert (before[1] == after[1]).all() and before[2] == after[2], f"{name} moved numpy's or random's state"
    b = fn(_trained_mlp, task, seed=5, **hp)
    assert same_state(state(a), state(b)), f"{name}: the same seed gave another model"
    assert a.unlearn_info["seed"] == 5
    if fn.record.seeded and name not in ("mask_forget_only",):
        c = fn(_trained_mlp, task, seed=6, **hp)
        assert not same_state(state(a), state(c)), f"{name} says it is seeded, but seed 6 gave seed 5's model"


def test_an_unknown_hyper_parameter_is_refused_before_the_method_runs(trained_mlp, task0):
    with pytest.raises(TypeError, match=r"finetune has no hyper-parameter 'epoch': it accepts epochs, lr"):
        uk.methods.finetune(trained_mlp, task0, epoch=3)
    with pytest.raises(TypeError, match="jit has no hyper-parameter 'sigmaa'"):
        uk.methods.jit(trained_mlp, task0, sigmaa=0.1, lr=1e-3)
    assert "epochs" in uk.methods.finetune.record.hyper_parameters
    assert "label_smoothing" in uk.methods.finetune.record.hyper_parameters  # handed on to fit


def test_hyper_parameters_must_be_keyword_only_and_methods_return_a_model(trained_mlp, task0):
    with pytest.raises(TypeError, match="'lr' must be keyword-only"):

        @register("positional_for_test", access="forget")
        def positional(model, task, lr=0.1):
            return model

    assert "positional_for_test" not in REGISTRY

    @register("pair_for_test", access="forget")
    def pair(model, task, *, seed):
        return model, {"steps": 1}

    try:
        with pytest.raises(TypeError, match="pair_for_test must return the unlearned model, got tuple"):
            pair(trained_mlp, task0)
    finally:
        REGISTRY.pop("pair_for_test", None)


def test_the_record_decides_where_a_method_runs_and_what_the_sweep_gives_it():
    @register(
        "narrow_for_test",
        access="forget",
        tasks=("instances",),
        why="it forgets pictures",
        presets={"quick": {"instances": dict(lr=0.5)}, "full": dict(lr=0.01)},
        color="#123456",
    )
    def narrow(model, task, *, lr=0.1, seed):
        return model

    try:
        rec = narrow.record
        assert rec.applicable("instances") is None
        assert "designed for instances tasks only (it forgets pictures" in rec.applicable("random")
        assert uk.methods.applicable("narrow_for_test", "full-class") == rec.applicable("full-class")
        assert rec.preset("quick", "instances") == {"lr": 0.5} and rec.preset("quick", "random") == {}
        assert rec.preset("smoke", "instances") == {"lr": 0.5}  # smoke falls back to quick
        assert rec.preset("full", "random") == {"lr": 0.01}
        assert uk.plots.color_for("narrow_for_test (lr=0.5)") == "#123456"
        with pytest.raises(TypeError, match="bad_preset_for_test has no hyper-parameter 'lrr'"):
            register("bad_preset_for_test", access="forget", presets={"quick": dict(lrr=1)})(
                lambda model, task, *, lr=0.1, seed: model
            )
        # class-id access runs on full-class tasks only, whatever the record says
        assert "full-class tasks only" in uk.methods.applicable("unsir", "random")
        assert "own original" not in (uk.methods.applicable("jit", "random") or "")
        assert "mnemonic codes" in uk.methods.applicable("mnemonic", "full-class")
    finally:
        REGISTRY.pop("narrow_for_test", None)
        REGISTRY.pop("bad_preset_for_test", None)
