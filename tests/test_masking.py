"""Fisher masking: Proposition 1 on a hand-computed case, the masks (budget, classifier, access),
the poisoned datasets, and that masking + fine-tuning forgets a class."""

import math

import numpy as np
import pytest
import torch
from conftest import CPU

import unlearnkit as uk
from unlearnkit import theory
from unlearnkit.methods import masking

# ----------------------------------------------------------------------------- theory (Eq. 2)


def hand_case():
    # 4 samples, 2 features, orthogonal columns: the diagonal Fisher is the whole Fisher
    X = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    y = np.array([1.0, 2.0, 2.0, 3.0])
    forget = np.array([False, True, False, True])
    return X, y, forget


def test_kl_and_bound_by_hand():
    X, y, forget = hand_case()
    F, Fr, Ff = theory.diag_fishers(X, forget)
    assert np.allclose(F, [5, 10]) and np.allclose(Fr, [1, 1]) and np.allclose(Ff, [4, 9])
    w_r = theory.solve(X[~forget], y[~forget])  # w_r = (1, 2)
    w = theory.solve(X, y)  # w = (5/5, (2 + 9)/10) = (1, 1.1)
    assert np.allclose(w_r, [1, 2]) and np.allclose(w, [1, 1.1])
    assert np.allclose(theory.solve(X, y, kind="diag"), w)
    mask = np.array([False, True])
    w_hat = theory.masked(w, mask)  # (1, 0)
    # KL = 1/2 Δᵀ F Δ, F = XᵀX / 4 = diag(5/4, 10/4), Δ = (0, 2): 1/2 · 4 · 10/4 = 5
    assert math.isclose(theory.kl(X, w_r, w_hat), 5.0)
    # Eq. 2: λ = 10, |D| = 4, b_r = (1, 2), b_f = (2, 9): c1 = 4, c2 = 81, c = 162 · (1 + 1) = 324;
    # unmasked j = 0: (1/25) · (4/1)² = 16/25 → 10/8 · (324 + 2 · 4 · 16/25) = 405.8
    assert math.isclose(theory.bound(X, y, forget, mask), 10 / 8 * (324 + 8 * 16 / 25))
    assert theory.kl(X, w_r, w_hat) <= theory.bound(X, y, forget, mask)
    assert math.isclose(theory.proof_step(X, w_r, w_hat), 10 / 8 * 4)


def test_mask_rules_and_errors():
    X, y, forget = theory.regression_problem(n=200, d=20, seed=1)
    for rule in theory.RULES:
        m = theory.mask_by(rule, X, forget, 5, w=theory.solve(X, y))
        assert m.sum() == 5
    spec = set(range(12, 20))
    assert set(np.flatnonzero(theory.mask_by("fisher_forget", X, forget, 8))) == spec
    with pytest.raises(ValueError, match="Unknown rule"):
        theory.mask_by("nope", X, forget, 2)
    with pytest.raises(ValueError, match="activation rule needs"):
        theory.mask_by("activation", X, forget, 2)
    with pytest.raises(ValueError, match="non-empty strict subset"):
        theory.bound(X, y, np.zeros(len(y), bool), np.zeros(20, bool))


# ----------------------------------------------------------------------------- masks


@pytest.fixture(scope="module")
def cnn_task():
    data = uk.load_dataset("digits", device="cpu", n_train=300, n_test=200)
    uk.set_seed(0)
    m = uk.build_model("cnn", data, width=8, device=CPU)
    uk.fit(m, data.x_train, data.y_train, epochs=10, lr=0.1, batch_size=64, progress=False, seed=0)
    return m, uk.forget_classes(data, [3])


@pytest.mark.parametrize("score", ["fisher", "random", "activation"])
def test_budget_and_classifier_never_masked(cnn_task, score):
    model, task = cnn_task
    out = uk.get_method("mask")(model, task, score=score, ratio=0.05, finetune_epochs=0)
    info = out.unlearn_info
    k = masking.budget(model, 0.05)
    n = sum(p.numel() for p in masking.maskable(model).values())
    assert k == math.ceil(0.05 * n)
    if score == "activation":
        assert 0 < info["masked"] <= k and info["channels"] > 0
    else:
        assert info["masked"] == k
    before, after = dict(model.named_parameters()), dict(out.named_parameters())
    for name in masking.classifier_names(model):
        assert torch.equal(before[name], after[name])
    zeroed = sum(int(((after[n] == 0) & (before[n] != 0)).sum()) for n in masking.maskable(model))
    assert zeroed == info["masked"]
    # finetune_epochs=0: the time went to the scores and the mask, none to fine-tuning
    assert info["score_seconds"] > 0 and info["finetune_seconds"] < info["score_seconds"]


def test_registered_and_access(cnn_task):
    model, task = cnn_task
    assert uk.get_method("mask").access == "forget+retain"
    assert uk.get_method("mask_forget_only").access == "forget"
    assert uk.get_method("mask_retain_subset").access == "forget+retain_subset"
    assert uk.get_method("mask_classifier").access == "class_ids"
    view = task.view("forget", method="zero_shot")
    with pytest.raises(uk.AccessError):
        view.retain_set()
    with pytest.raises(uk.AccessError):  # 'mask' cannot run on a forget-only view
        uk.get_method("mask")(model, view, finetune_epochs=0)
    out = uk.methods.mask_forget_only(model, view, ratio=0.05)  # ... the forget-only variant can
    assert out.unlearn_info["masked"] == masking.budget(model, 0.05)
    sub = uk.methods.mask_retain_subset(model, task, ratio=0.05, n_retain=20, finetune_epochs=1)
    assert sub.unlearn_info["n_retain"] == 20


def test_mask_classifier_zeroes_the_row(cnn_task):
    model, task = cnn_task
    out = uk.methods.mask_classifier(model, task)
    w = dict(out.named_parameters())
    names = sorted(masking.classifier_names(model))
    assert all((w[n][3] == 0).all() for n in names)
    assert all((w[n][2] == dict(model.named_parameters())[n][2]).all() for n in names)


def test_clear_errors(cnn_task):
    model, task = cnn_task
    for bad in (0, 0.0, -0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="ratio"):
            uk.methods.mask(model, task, ratio=bad)
    with pytest.raises(ValueError, match="score"):
        uk.methods.mask(model, task, score="magnitude")
    with pytest.raises(ValueError, match="finetune_epochs"):
        uk.methods.mask(model, task, finetune_epochs=-1)
    mlp = uk.build_model("mlp", task.data, hidden=(16,), device=CPU)
    with pytest.raises(ValueError, match="Conv-BatchNorm"):
        uk.methods.mask(mlp, task, score="activation", finetune_epochs=0)
    with pytest.raises(ValueError, match="empty"):
        masking.choose_mask(model, "fisher", 0.1, task.data.x_train[:0], task.data.y_train[:0])
    with pytest.raises(ValueError, match="whole classes"):
        uk.methods.mask_classifier(model, uk.forget_instances(task.data, [0, 1]))


def test_same_seed_same_model(cnn_task):
    model, task = cnn_task
    a = uk.methods.mask(model, task, score="random", ratio=0.05, finetune_epochs=1, seed=3)
    b = uk.methods.mask(model, task, score="random", ratio=0.05, finetune_epochs=1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_fisher_mask_then_finetune_forgets_a_class(cnn_task):
    model, task = cnn_task
    before = uk.accuracy(model, *task.test_forget())
    out = uk.methods.mask(
        model, task, score="fisher", ratio=0.05, finetune_epochs=3, lr=0.05, batch_size=32, keep_epochs=True
    )
    assert before > 80
    assert uk.accuracy(out, *task.test_forget()) < 20
    assert uk.accuracy(out, *task.test_retain()) > 60
    assert len(out.unlearn_info["epoch_states"]) == 4


# ----------------------------------------------------------------------------- poison


def test_backdoor_trigger_planted_as_described():
    data = uk.load_dataset("digits", device="cpu")
    poisoned, task = uk.poison.backdoor(data, n=200, target=0, size=4, value=0.0, seed=1)
    idx = torch.tensor(poisoned.meta["poison_idx"])
    assert len(idx) == 200 and torch.equal(task.forget_idx, idx)
    assert (poisoned.y_train[idx] == 0).all() and (data.y_train[idx] != 0).all()
    assert (poisoned.x_train[idx][..., -4:, -4:] == 0).all()
    # nothing else changed: the rest of the poisoned images, and every other image
    assert torch.equal(poisoned.x_train[idx][..., :-4, :], data.x_train[idx][..., :-4, :])
    assert torch.equal(poisoned.x_train[idx][..., :, :-4], data.x_train[idx][..., :, :-4])
    rest = torch.ones(len(data.y_train), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(poisoned.x_train[rest], data.x_train[rest])
    assert torch.equal(poisoned.y_train[rest], data.y_train[rest])
    xt, yt = uk.poison.triggered_test(poisoned)
    assert (yt == 0).all() and (xt[..., -4:, -4:] == 0).all() and len(xt) == int((data.y_test != 0).sum())
    with pytest.raises(ValueError, match="fit"):
        uk.poison.backdoor(data, size=9)
    with pytest.raises(ValueError, match="no backdoor"):
        uk.poison.triggered_test(data)


def test_mislabel():
    data = uk.load_dataset("digits", device="cpu")
    noisy, task = uk.poison.mislabel(data, 0.3, seed=0)
    changed = (noisy.y_train != data.y_train).nonzero().flatten()
    assert (
        torch.equal(task.forget_idx, changed)
        and 0.2 * len(data.y_train) < len(changed) <= 0.3 * len(data.y_train) + 1
    )
    assert torch.equal(noisy.y_train.bincount(), data.y_train.bincount())  # shuffled, not redrawn
    with pytest.raises(ValueError, match="share"):
        uk.poison.mislabel(data, 1.0)


def test_fisher_noise_is_eq1_std_scales_as_h_to_the_minus_quarter():
    net = torch.nn.Linear(200, 100)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    h = {"weight": torch.ones(100, 200), "bias": torch.full((100,), 16.0)}
    g = torch.Generator().manual_seed(0)
    masking.eq1_noise(net, h, lam_sigma2=1e-4, max_std=10.0, generator=g)
    std_w = (net.weight - before["weight"]).std().item()  # (1e-4)^{1/4} · 1^{-1/4} = 0.1
    std_b = (net.bias - before["bias"]).std().item()  # 0.1 · 16^{-1/4} = 0.05
    assert std_w == pytest.approx(0.1, rel=0.05) and std_b == pytest.approx(0.05, rel=0.2)
    masking.eq1_noise(net, {"weight": torch.zeros(100, 200)}, lam_sigma2=1e-4, max_std=0.01, generator=g)
    assert (net.weight - before["weight"]).abs().max() < 1.0  # the cap holds where h = 0


def test_fisher_noise_does_not_zero_the_forgotten_row(cnn_task):
    model, task = cnn_task
    out = uk.methods.fisher_noise(model, task, n_samples=50, finetune_epochs=0, seed=0)
    head = [p for n, p in out.named_parameters() if p.shape[0] == task.num_classes and p.dim() == 2][-1]
    assert head[list(task.forget_classes)].abs().sum() > 0
    assert out.unlearn_info["noise_std_mean"] > 0
    a = uk.methods.fisher_noise(model, task, n_samples=50, finetune_epochs=0, lam_sigma2=1e-10, seed=0)
    b = uk.methods.fisher_noise(model, task, n_samples=50, finetune_epochs=0, lam_sigma2=1e-6, seed=0)

    def dist(m):
        return sum((p - q).norm().item() for p, q in zip(m.parameters(), model.parameters()))

    assert dist(a) < dist(b)
