"""UNSIR (impair and repair with error-maximising noise): behaviour tests that can fail."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.methods import error_maximizing_noise, impair_set, unsir

# a setting scaled to the 300 training digits of the fixtures (about 30 per class)
SMALL = dict(
    n_per_class=20,
    noise_batch=32,
    noise_copies=4,
    noise_steps=40,
    batch_size=16,
    impair_lr=0.02,
    repair_lr=0.01,
    seed=0,
)


def _acc(model, x, y, cls):
    keep = y == cls
    return uk.accuracy(model, x[keep], y[keep])


def test_access_level_is_retain_subset():
    assert uk.get_method("unsir").access == "retain_subset"


def test_a_retain_subset_view_refuses_the_forget_set(task0):
    view = task0.view("retain_subset", "unsir")
    with pytest.raises(uk.AccessError):
        view.forget_set()
    with pytest.raises(uk.AccessError):
        view.retain_set()
    x, y = view.retain_subset(n_per_class=5, seed=0)
    assert len(x) == 45 and 0 not in set(y.tolist())


def test_unsir_reads_no_forget_image(trained_mlp, task0, monkeypatch):
    """The method runs through a view; a call to the forget readers would raise."""
    calls = []
    real = uk.Task.forget_set

    def spy(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(uk.Task, "forget_set", spy)
    unsir(trained_mlp, task0, **SMALL)
    assert calls == []


def test_noise_raises_the_forget_class_loss(trained_mlp, digits):
    noise, losses = error_maximizing_noise(
        trained_mlp, [3, 5], batch_size=32, steps=40, seed=0, return_loss=True
    )
    assert noise.shape == (2, 32, *digits.input_shape)
    for i, c in enumerate([3, 5]):
        before, after = losses[c]
        assert after > before + 1.0
        ce = F.cross_entropy(uk.predict(trained_mlp, noise[i]), torch.full((32,), c)).item()
        assert ce == pytest.approx(after, rel=1e-4)
    # more steps raise the loss further; the model itself is untouched
    more, l2 = error_maximizing_noise(trained_mlp, [3], batch_size=32, steps=80, seed=0, return_loss=True)
    assert l2[3][1] > losses[3][1]


def test_noise_leaves_the_model_alone(trained_mlp):
    from conftest import same_state, state

    before = state(trained_mlp)
    error_maximizing_noise(trained_mlp, [1], batch_size=8, steps=5, seed=0)
    assert same_state(before, state(trained_mlp))
    assert all(p.requires_grad for p in trained_mlp.parameters())
    assert all(p.grad is None for p in trained_mlp.parameters())


def test_noise_lives_in_the_normalised_space(trained_mlp):
    """Before any step the noise is N(0, 1) where the first layer sees it."""
    noise = error_maximizing_noise(trained_mlp, [2], batch_size=512, steps=0, seed=0)[0]
    z = trained_mlp.normalize(noise)
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1) < 0.05


def test_lambda_keeps_the_noise_small(trained_mlp):
    big = error_maximizing_noise(trained_mlp, [4], batch_size=16, steps=40, lam=0.0, seed=0)
    small = error_maximizing_noise(trained_mlp, [4], batch_size=16, steps=40, lam=10.0, seed=0)
    z = trained_mlp.normalize
    assert z(small).pow(2).mean() < z(big).pow(2).mean()


def test_noise_for_colour_images():
    uk.set_seed(0)
    m = uk.build_model(
        "cnn",
        in_shape=(3, 32, 32),
        num_classes=10,
        mean=[0.5, 0.4, 0.3],
        std=[0.2, 0.2, 0.2],
        device="cpu",
        width=8,
    )
    noise, losses = error_maximizing_noise(
        m, [0, 7], batch_size=4, steps=3, seed=0, return_loss=True, lam=0.0
    )
    assert noise.shape == (2, 4, 3, 32, 32)
    assert all(after > before for before, after in losses.values())
    # with the authors' penalty (λ = 0.1 on each image's 3072 summed squares) the noise shrinks
    small = error_maximizing_noise(m, [0], batch_size=4, steps=20, seed=0)
    start = error_maximizing_noise(m, [0], batch_size=4, steps=0, seed=0)
    assert small.std() < start.std()


def test_unsir_forgets_one_class_and_keeps_the_rest(trained_mlp, task0, digits):
    before_r = uk.accuracy(trained_mlp, *task0.test_retain())
    m = unsir(trained_mlp, task0, **SMALL)
    assert uk.accuracy(m, *task0.test_forget()) <= 20.0
    assert uk.accuracy(m, *task0.test_retain()) >= before_r - 15.0
    info = m.unlearn_info
    assert info["method"] == "unsir" and info["access"] == "retain_subset"
    assert info["n_retain"] == 9 * 20 and info["n_noise"] == 32 * 4
    for k in ("noise_seconds", "impair_seconds", "repair_seconds"):
        assert info[k] >= 0
    assert info["noise_seconds"] + info["impair_seconds"] + info["repair_seconds"] <= info["seconds"] + 1e-6
    assert set(info["after_impair"]) == {"retain_subset"}


def test_unsir_forgets_several_classes(trained_mlp, digits):
    task = uk.forget_classes(digits, [3, 5, 8])
    before_r = uk.accuracy(trained_mlp, *task.test_retain())
    m = unsir(trained_mlp, task, **SMALL)
    xt, yt = digits.x_test, digits.y_test
    for c in (3, 5, 8):
        assert _acc(m, xt, yt, c) <= 15.0, c
    assert uk.accuracy(m, *task.test_retain()) >= before_r - 20.0


def test_regression_every_noise_batch_carries_its_own_class():
    """The authors' notebook labels every noise sample class 0; ours labels each batch with its class."""
    noise = torch.randn(2, 3, 1, 8, 8)
    xs, ys = torch.rand(5, 1, 8, 8), torch.tensor([0, 1, 2, 4, 6])
    x, y = impair_set(noise, [3, 5], xs, ys, copies=4)
    assert len(x) == 5 + 2 * 3 * 4
    assert torch.equal(y[:5], ys)
    assert y[5:17].tolist() == [3] * 12 and y[17:].tolist() == [5] * 12
    assert torch.equal(x[5:8], noise[0]) and torch.equal(x[17:20], noise[1])
    buggy = impair_set(noise, [3, 5], xs, ys, copies=4, noise_label=0)[1]
    assert set(buggy[5:].tolist()) == {0}


def test_regression_forgetting_3_and_5_forgets_both(trained_mlp, digits):
    """Ours forgets both classes and keeps the others. (With every noise batch labelled class 0,
    the authors' bug, the impair set still lacks classes 3 and 5, and on digits that alone forgets
    them: the chapter measures this over seeds rather than asserting it here.)"""
    task = uk.forget_classes(digits, [3, 5])
    xt, yt = digits.x_test, digits.y_test
    ours = unsir(trained_mlp, task, **SMALL)
    kept = [_acc(ours, xt, yt, c) for c in (3, 5)]
    assert max(kept) <= 15.0
    others = [c for c in range(10) if c not in (3, 5)]
    assert np.mean([_acc(ours, xt, yt, c) for c in others]) >= 70.0


def test_impair_without_repair_and_callback(trained_mlp, task0):
    seen = []
    unsir(
        trained_mlp,
        task0,
        repair_epochs=2,
        callback=lambda s, e, mdl: seen.append((s, e)),
        **{k: v for k, v in SMALL.items()},
    )
    assert seen == [("impair", 1), ("repair", 1), ("repair", 2)]
    m0 = unsir(trained_mlp, task0, **dict(SMALL, repair_epochs=0))
    assert m0.unlearn_info["repair_seconds"] == 0.0


def test_impair_without_noise(trained_mlp, task0):
    m = unsir(trained_mlp, task0, **dict(SMALL, noise_copies=0))
    assert m.unlearn_info["n_noise"] == 0 and m.unlearn_info["noise_seconds"] < 0.5
    xs, ys = torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3])
    x, y = impair_set(torch.zeros(1, 0, 1, 8, 8), [0], xs, ys, copies=0)
    assert torch.equal(x, xs) and torch.equal(y, ys)


def test_same_seed_same_model(trained_mlp, task0):
    a = unsir(trained_mlp, task0, **dict(SMALL, seed=3))
    b = unsir(trained_mlp, task0, **dict(SMALL, seed=3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_dry_run_caps_the_noise_steps(trained_mlp, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DRY_RUN", "1")
    uk.profiles.reset()
    try:
        assert uk.profiles.active().dry_run
        _, capped = error_maximizing_noise(
            trained_mlp, [3], batch_size=16, steps=40, seed=0, return_loss=True
        )
    finally:
        monkeypatch.delenv("UNLEARNKIT_DRY_RUN")
        uk.profiles.reset()
    _, two = error_maximizing_noise(trained_mlp, [3], batch_size=16, steps=2, seed=0, return_loss=True)
    _, full = error_maximizing_noise(trained_mlp, [3], batch_size=16, steps=40, seed=0, return_loss=True)
    assert capped[3][1] == pytest.approx(two[3][1], rel=1e-5)
    assert full[3][1] > capped[3][1]


def test_random_forgetting_is_refused(trained_mlp, digits):
    task = uk.forget_random(digits, 0.1)
    with pytest.raises(ValueError, match="forgets whole classes"):
        unsir(trained_mlp, task)


@pytest.mark.parametrize(
    "bad",
    [
        dict(lam=-0.1),
        dict(lam=float("nan")),
        dict(impair_lr=0.0),
        dict(repair_lr=-1.0),
        dict(n_per_class=0),
        dict(impair_epochs=-1),
        dict(noise_copies=-1),
        dict(noise_lr=0.0),
        dict(noise_steps=-1),
        dict(batch_size=True),
    ],
)
def test_bad_hyperparameters(trained_mlp, task0, bad):
    with pytest.raises(ValueError):
        unsir(trained_mlp, task0, **dict(SMALL, **bad))


def test_bad_noise_inputs(trained_mlp):
    with pytest.raises(ValueError, match="at least one class"):
        error_maximizing_noise(trained_mlp, [], steps=1)
    with pytest.raises(ValueError, match="0..9"):
        error_maximizing_noise(trained_mlp, [10], steps=1)
    with pytest.raises(ValueError):
        error_maximizing_noise(trained_mlp, [1], lam=-1.0, steps=1)
    with pytest.raises(TypeError):
        error_maximizing_noise("model", [1])
    with pytest.raises(ValueError, match="shaped"):
        impair_set(torch.zeros(1, 2, 64), [1, 2], torch.zeros(3, 64), torch.zeros(3, dtype=torch.long))


def test_noise_penalty_sums_each_images_pixels_then_averages_the_batch():
    from unlearnkit.methods.unsir import noise_penalty

    z = torch.tensor([[[[1.0, 2.0], [0.0, 2.0]]], [[[3.0, 0.0], [0.0, 1.0]]]])  # (2, 1, 2, 2)
    # image 1: 1 + 4 + 0 + 4 = 9; image 2: 9 + 0 + 0 + 1 = 10; batch mean 9.5 (a mean over every
    # pixel would give 19 / 8 = 2.375)
    assert noise_penalty(z).item() == pytest.approx(9.5)
