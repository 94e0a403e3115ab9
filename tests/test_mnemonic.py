"""Mnemonic-code one-shot unlearning (unlearnkit/methods/mnemonic.py)."""

import math

import pytest
import torch

import unlearnkit as uk

TRAIN = dict(model="mlp", epochs=100, lr=0.01, batch_size=128, seed=0, verbose=False, progress=False)
LAMBDAS = dict(lambda1=0.1, lambda2=10.0)  # the chapter's quick-profile setting for digits


@pytest.fixture(scope="module")
def digits():
    return uk.load_dataset("digits")


@pytest.fixture(scope="module")
def task(digits):
    return uk.forget_classes(digits, [0])


@pytest.fixture(scope="module")
def coded(digits, tmp_path_factory):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return uk.methods.train_with_codes(digits, t_mix=0.1, cache_dir=tmp_path_factory.mktemp("zoo"), **TRAIN)


@pytest.fixture(scope="module")
def unlearned(coded, task):
    return uk.methods.mnemonic(coded, task, **LAMBDAS)


# ----------------------------------------------------------------------------- codes and hook


def test_codes_deterministic_distinct_and_shaped(digits):
    a = uk.methods.mnemonic_codes(digits, seed=3)
    b = uk.methods.mnemonic_codes(digits, seed=3)
    c = uk.methods.mnemonic_codes(digits, seed=4)
    assert a.shape == (10, 1, 8, 8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    flat = a.flatten(1)
    assert (torch.cdist(flat, flat) + torch.eye(10) * 1e9).min() > 1.0  # every class its own code


def test_codes_are_standard_normal_where_the_first_layer_sees_them(digits):
    model = uk.build_model("mlp", digits)
    codes = uk.methods.mnemonic_codes(model, num_classes=10, seed=0)
    seen = model.normalize(codes)  # what the first linear layer receives
    assert abs(seen.mean().item()) < 0.15 and abs(seen.std().item() - 1.0) < 0.15
    uni = uk.methods.mnemonic_codes(digits, seed=0, distribution="uniform", space="input")
    assert uni.min() >= 0 and uni.max() < 1


def test_hook_replaces_with_probability_t_mix_and_keeps_labels(digits):
    codes = uk.methods.mnemonic_codes(digits, seed=0)
    x, y = digits.x_train[:1000], digits.y_train[:1000]
    hook = uk.methods.mnemonic_hook(codes, t_mix=0.3, seed=1)
    xb, yb = hook(x, y, 0, 0)
    assert torch.equal(yb, y)
    swapped = (xb != x).flatten(1).any(1)
    assert torch.equal(xb[swapped], codes[y[swapped]])  # replaced by the code of its own class
    assert 0.24 < swapped.float().mean().item() < 0.36
    assert torch.equal(hook(x, y, 0, 0)[0], xb)  # reproducible per (epoch, step)
    assert not torch.equal(hook(x, y, 0, 1)[0], xb)
    assert torch.equal(uk.methods.mnemonic_hook(codes, 0.0)(x, y, 0, 0)[0], x)
    assert torch.equal(uk.methods.mnemonic_hook(codes, 1.0)(x, y, 0, 0)[0], codes[y])
    assert "t_mix=0.3" in hook.tag


# ----------------------------------------------------------------------------- forgetting


def test_forgets_the_class_and_keeps_the_rest(coded, task, unlearned):
    assert uk.accuracy(coded, coded.mnemonic_codes, torch.arange(10)) == 100.0  # trained with its codes
    before_r, before_f = uk.accuracy(coded, *task.test_retain()), uk.accuracy(coded, *task.test_forget())
    after_r, after_f = (
        uk.accuracy(unlearned, *task.test_retain()),
        uk.accuracy(unlearned, *task.test_forget()),
    )
    assert before_f > 90
    assert 100 - after_f >= 90, f"E_F only {100 - after_f:.1f}%"
    assert after_r >= before_r - 10, f"A_R fell from {before_r:.1f} to {after_r:.1f}"
    info = unlearned.unlearn_info
    assert info["sign"] in (1, -1) and info["fisher_seconds"] > 0 and info["perturb_seconds"] > 0
    assert unlearned.unlearn_info["access"] == "class_ids"


def test_perturbation_is_exactly_plus_minus_alpha_eta(coded, task, unlearned):
    codes, labels = coded.mnemonic_codes, torch.arange(10)
    per_class = uk.methods.class_fisher(coded, codes, labels, range(10))
    eta = uk.methods.importance_ratio(
        uk.methods.average_fisher(per_class, [0]), uk.methods.average_fisher(per_class, range(1, 10))
    )
    alpha = uk.methods.step_sizes(eta, **LAMBDAS)
    sign = unlearned.unlearn_info["sign"]
    before, after = dict(coded.named_parameters()), dict(unlearned.named_parameters())
    for n in eta:
        assert alpha[n] == min(LAMBDAS["lambda1"], LAMBDAS["lambda2"] / eta[n].max().item())
        torch.testing.assert_close(after[n] - before[n], sign * alpha[n] * eta[n], rtol=1e-4, atol=1e-6)
        assert (after[n] - before[n]).abs().max() <= LAMBDAS["lambda2"] * (1 + 1e-5)  # Eq. 7 caps every move
    # the chosen sign is the one with the larger A_R + E_F on the codes
    s = unlearned.unlearn_info["scores"]
    assert sum(s[sign].values()) >= sum(s[-sign].values())


def test_never_reads_training_data(coded, task, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("the method read data")

    for name in (
        "forget_set",
        "retain_set",
        "retain_subset",
        "test_forget",
        "test_retain",
        "test_set",
        "train_set",
    ):
        monkeypatch.setattr(uk.Task, name, forbidden)
    out = uk.methods.mnemonic(coded, task.view("class_ids"), **LAMBDAS)
    assert out.unlearn_info["access"] == "class_ids"
    assert uk.methods.mnemonic.access == "class_ids"
    assert uk.methods.mnemonic_with_data.access == "forget+retain"
    with pytest.raises(uk.AccessError, match="class_ids"):
        task.view("class_ids").forget_set()


def test_does_not_mutate_and_is_deterministic(coded, task):
    before = {k: v.clone() for k, v in coded.state_dict().items()}
    a = uk.methods.mnemonic(coded, task, **LAMBDAS)
    b = uk.methods.mnemonic(coded, task, **LAMBDAS)
    for k, v in coded.state_dict().items():
        assert torch.equal(v, before[k])
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    assert a is not coded


def test_with_data_variant_runs_and_uses_data(coded, task):
    out = uk.methods.mnemonic_with_data(coded, task, n_per_class=20, **LAMBDAS)
    assert out.unlearn_info["fisher_from"] == "data"
    assert any(not torch.equal(p, q) for p, q in zip(out.parameters(), coded.parameters()))
    # the unregistered function, handed only class ids, cannot get at the images it needs
    with pytest.raises(uk.AccessError, match="class_ids"):
        uk.methods.mnemonic_with_data.record.fn(
            uk.clone(coded), task.view("class_ids"), n_per_class=5, seed=0
        )


# ----------------------------------------------------------------------------- η in log space


def test_log_space_ratio_is_stable_with_zeros_and_denormals():
    ff = {"w": torch.tensor([1e-44, 0.0, 2.0, 0.0, 1e-30, 4.0])}
    fr = {"w": torch.tensor([1e-44, 0.0, 0.0, 3.0, 1e-40, 2.0])}
    eta = uk.methods.importance_ratio(ff, fr)["w"]
    assert torch.isfinite(eta).all() and (eta >= 0).all()
    assert eta[1] == 0 and eta[3] == 0  # f_F = 0: nothing to forget there
    assert math.isclose(eta[0].item(), 1.0, rel_tol=0.2)  # denormal / denormal, still ~1
    assert math.isclose(eta[4].item(), 1e10, rel_tol=1e-3)  # a plain float32 division would overflow
    assert eta[2] == eta.max()  # f_R = 0 gets the tensor's largest finite η
    big = uk.methods.importance_ratio(ff, fr, posinf="dtype_max")["w"]
    assert big[2] == torch.finfo(torch.float32).max
    alpha = uk.methods.step_sizes({"w": big}, lambda1=1.0, lambda2=10.0)["w"]
    assert alpha * big[2].item() == pytest.approx(10.0)  # Eq. 7 still caps the move at λ2
    assert uk.methods.step_sizes({"z": torch.zeros(3)}, 0.5, 10.0)["z"] == 0.5


def test_fisher_vmap_equals_loop(digits):
    torch.manual_seed(0)
    model = uk.build_model("mlp", digits, hidden=(16,))
    codes = uk.methods.mnemonic_codes(digits, seed=0)
    labels = torch.arange(10)
    a = uk.methods.class_fisher(model, codes, labels, range(10), method="vmap")
    b = uk.methods.class_fisher(model, codes, labels, range(10), method="loop")
    for c in range(10):
        for n in a[c]:
            torch.testing.assert_close(a[c][n], b[c][n], rtol=1e-4, atol=1e-9)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors(coded, task, digits):
    with pytest.raises(ValueError, match="lambda1 must be a positive"):
        uk.methods.mnemonic(coded, task, lambda1=0.0)
    with pytest.raises(ValueError, match="lambda2 must be a positive"):
        uk.methods.mnemonic(coded, task, lambda2=-1.0)
    with pytest.raises(ValueError, match="shaped"):
        uk.methods.mnemonic(coded, task, codes=torch.zeros(10, 64))
    with pytest.raises(ValueError, match="shaped"):
        uk.methods.mnemonic(coded, task, codes=torch.zeros(9, 1, 8, 8))
    bad = uk.Task(digits, "class", task.forget_idx, task.test_forget_idx, [12])
    with pytest.raises(ValueError, match="out of range"):
        uk.methods.mnemonic(coded, bad)
    with pytest.raises(ValueError, match="whole classes"):
        uk.methods.mnemonic(coded, uk.forget_random(digits, 20))
    fresh = uk.build_model("mlp", digits)
    with pytest.raises(ValueError, match="No mnemonic codes"):
        uk.methods.mnemonic(fresh, task)
    with pytest.raises(ValueError, match="not trained with"):
        uk.methods.mnemonic(fresh, task, codes=coded.mnemonic_codes)
    with pytest.raises(ValueError, match="t_mix"):
        uk.methods.mnemonic_hook(coded.mnemonic_codes, t_mix=1.5)
    with pytest.raises(ValueError, match="distribution"):
        uk.methods.mnemonic_codes(digits, distribution="laplace")
    hook = uk.methods.mnemonic_hook(torch.zeros(10, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="shaped"):
        hook(digits.x_train[:4], digits.y_train[:4], 0, 0)
    with pytest.raises(ValueError, match="n_per_class"):
        uk.methods.mnemonic_with_data(coded, task, n_per_class=0)
    with pytest.raises(ValueError, match="posinf"):
        uk.methods.importance_ratio({"w": torch.ones(2)}, {"w": torch.ones(2)}, posinf="clip")
