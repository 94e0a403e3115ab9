"""The baselines with the one signature: they forget, keep the rest, never mutate their input, and
see only what their access level allows; the register that enforces it."""
import pytest
import torch

import unlearnkit as uk
from unlearnkit.methods import REGISTRY, finetune, fisher_forgetting, neggrad, random_labels, retrain
from unlearnkit.methods._registry import register
from conftest import same_state, state

BASELINES = {
    "retrain": (retrain, dict(epochs=8, lr=0.1, batch_size=32)),
    "finetune": (finetune, dict(epochs=2, lr=0.05)),
    "neggrad": (neggrad, dict(epochs=8, lr=0.1, batch_size=16, retain_weight=3.0)),     # NegGrad+
    "random_labels": (random_labels, dict(epochs=3, lr=0.05)),
    "fisher_forgetting": (fisher_forgetting, dict(alpha=1e-6, n_samples=60)),
}
ACCESS = {"retrain": "retain", "finetune": "retain", "neggrad": "forget+retain",
          "random_labels": "forget+retain", "fisher_forgetting": "retain"}


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
    assert f0 == 100.0 and f == 0.0                    # never saw class 0
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
    for reader in ("forget_set", "retain_set", "retain_subset", "test_forget", "test_retain", "test_set",
                   "train_set"):
        real = getattr(uk.Task, reader)
        monkeypatch.setattr(uk.Task, reader, (lambda r, f: lambda self, *a, **k: (read.append(r), f(self, *a, **k))[1])(
            reader, real))
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
        with pytest.raises(uk.AccessError, match=r"peeker_for_test may see the forget set D_f only.*task\.retain_set"):
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
