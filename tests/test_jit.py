"""JiT (Foster et al.): the loss of Eq. 1, Algorithm 1, zero-shot access, batch-norm handling, the
information measure of Definitions 4.1-4.2, and boundary shrinking (Chen et al. 2023)."""

import pytest
import torch
import torch.nn as nn

import unlearnkit as uk
from unlearnkit.methods import jit, jit_loss, model_information, sample_information

DEV = torch.device("cpu")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def mlp(d=2, k=3, hidden=(16, 16), seed=0):
    uk.set_seed(seed)
    return uk.build_model("mlp", in_shape=(d,), num_classes=k, hidden=hidden, device=DEV)


@pytest.fixture(scope="module")
def digits():
    return uk.load_dataset("digits", device="cpu", n_train=300, n_test=100)


@pytest.fixture(scope="module")
def cnn_model(digits):
    uk.set_seed(0)
    m = uk.build_model("cnn", digits, width=8)
    uk.fit(m, digits.x_train, digits.y_train, epochs=2, lr=0.05, progress=False, seed=0)
    return m


# ----------------------------------------------------------------------------- the loss, Eq. 1


def test_loss_is_zero_for_a_constant_function():
    m = mlp()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.net.net[-1].bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.randn(5, 2, generator=gen())
    loss = jit_loss(m, x, sigma=0.3, n_samples=10, generator=gen())
    assert loss.item() == 0.0
    loss.backward()  # the norm at zero must not produce NaN gradients
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_loss_of_a_linear_model_is_independent_of_sigma_and_matches_eq1():
    m = mlp(d=4, k=3, hidden=())  # Normalize + Linear: f(x) = W x + b
    x = torch.randn(6, 4, generator=gen(1))
    losses = [
        jit_loss(m, x, sigma=s, n_samples=8, generator=gen(7), reduction="none").detach()
        for s in (1e-3, 0.5, 20.0)
    ]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses[1], losses[2], rtol=1e-4, atol=1e-6)
    # Eq. 1 by hand: mean over copies of ||W xi|| / ||xi||, xi drawn exactly as jit_loss draws them
    xi = torch.randn((6, 8, 4), generator=gen(7))
    w = m.net.net[-1].weight.detach()
    expected = ((xi @ w.T).norm(dim=2) / xi.norm(dim=2)).mean(1)
    torch.testing.assert_close(losses[1], expected, rtol=1e-4, atol=1e-6)
    assert (expected > 0).all()


def test_noise_is_measured_in_the_models_normalised_space():
    # with Normalize(std=s) inside, "model" noise of sigma is pixel noise sigma*s and ||xi|| is the
    # model-space norm, so a linear model gives the same loss as with std 1; "input" noise is not
    # rescaled and the loss changes by 1/s
    uk.set_seed(0)
    a = uk.build_model("mlp", in_shape=(1, 2, 2), num_classes=2, hidden=(), mean=[0.0], std=[1.0])
    b = uk.build_model("mlp", in_shape=(1, 2, 2), num_classes=2, hidden=(), mean=[0.0], std=[0.25])
    b.load_state_dict(a.state_dict())
    x = torch.rand(3, 1, 2, 2, generator=gen())
    la = jit_loss(a, x, 0.1, 5, generator=gen(3)).item()
    lb = jit_loss(b, x, 0.1, 5, generator=gen(3)).item()
    lb_in = jit_loss(b, x, 0.1, 5, generator=gen(3), noise_space="input").item()
    assert la == pytest.approx(lb, rel=1e-5)
    assert lb_in == pytest.approx(la / 0.25, rel=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_gradients_reach_every_trainable_parameter(name, digits):
    uk.set_seed(0)
    m = uk.build_model(name, digits, **({"width": 8} if name == "cnn" else {"hidden": (32,)})).eval()
    loss = jit_loss(m, digits.x_train[:4], sigma=0.5, n_samples=5, generator=gen())
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {n}"


def test_differentiating_both_terms_leaves_the_output_bias_without_gradient():
    m = mlp()
    x = torch.randn(4, 2, generator=gen())
    jit_loss(m, x, sigma=0.5, n_samples=6, generator=gen(), detach_noisy=False).backward()
    head = m.net.net[-1]
    assert head.bias.grad.abs().max() < 1e-6  # b cancels in f(x) - f(x + xi)
    assert head.weight.grad.abs().sum() > 0 and m.net.net[1].weight.grad.abs().sum() > 0


def test_clamped_copies_stay_in_range_and_the_denominator_is_the_realised_step():
    # a model that reports its input: with clamping, ||f(x) - f(x')|| = ||x - x'||, so every ratio is 1
    class Identity(nn.Module):
        def forward(self, z):
            return z.flatten(1)

    x = torch.tensor([[0.0, 1.0], [0.5, 0.99]])
    for clamp in (None, (0.0, 1.0)):
        loss = jit_loss(Identity(), x, 0.3, 20, generator=gen(), clamp=clamp, noise_space="input")
        assert loss.item() == pytest.approx(1.0, rel=1e-5)


def test_bad_inputs_get_clear_errors():
    m = mlp()
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="sigma"):
        jit_loss(m, x, sigma=0.0)
    with pytest.raises(ValueError, match="sigma"):
        jit_loss(m, x, sigma=float("nan"))
    with pytest.raises(ValueError, match="n_samples"):
        jit_loss(m, x, sigma=0.1, n_samples=0)
    with pytest.raises(ValueError, match="clamp"):
        jit_loss(m, x, sigma=0.1, clamp=(1.0, 0.0))
    with pytest.raises(ValueError, match="noise_space"):
        jit_loss(m, x, sigma=0.1, noise_space="pixels")
    with pytest.raises(ValueError, match="batch"):
        jit_loss(m, x[0], sigma=0.1)
    with pytest.raises(ValueError, match="shape"):
        jit_loss(m, torch.randn(3, 5), sigma=0.1)
    data = uk.make_toy("blobs", n_train=40, n_test=10, centers=2)
    task = uk.forget_instances(data, [0])
    model = uk.build_model("mlp", data, hidden=(8,))
    with pytest.raises(TypeError, match="sigma"):
        jit(model, task, lr=0.1)
    with pytest.raises(TypeError, match="lr"):
        jit(model, task, sigma=0.1)
    with pytest.raises(ValueError, match="bn"):
        jit(model, task, sigma=0.1, lr=0.1, bn="train")
    with pytest.raises(ValueError, match="batch_size"):
        jit(model, task, sigma=0.1, lr=0.1, batch_size=0)
    with pytest.raises(ValueError, match="learning rate"):
        jit(model, task, sigma=0.1, lr=-1.0)


# ----------------------------------------------------------------------------- Algorithm 1 and access


def test_jit_is_zero_shot_and_never_touches_retain_or_test_data():
    assert jit.access == "forget" and uk.methods.boundary_shrink.access == "forget"
    data = uk.make_toy("blobs", n_train=60, n_test=20, centers=2)
    task = uk.forget_instances(data, [0, 1, 2])
    view = uk.TaskView(task, jit.access, "jit")
    for forbidden in ("retain_set", "retain_subset", "test_set", "test_retain", "train_set"):
        with pytest.raises(uk.AccessError):
            getattr(view, forbidden)()
    calls = []

    class Spy(uk.Task):
        def retain_set(self):
            calls.append("retain_set")
            return super().retain_set()

    spy = Spy(task.data, task.kind, task.forget_idx, task.test_forget_idx)
    model = uk.build_model("mlp", data, hidden=(8,))
    out = jit(model, spy, sigma=0.5, lr=0.01, n_samples=4)
    assert calls == [] and out.unlearn_info["access"] == "forget"


def test_jit_matches_algorithm_1_written_out_with_gradients_cleared_every_step():
    data = uk.make_toy("moons", n_train=60, n_test=20)
    task = uk.forget_instances(data, [3, 7, 11, 19])
    uk.set_seed(0)
    model = uk.build_model("mlp", data, hidden=(16,))
    out = jit(model, task, sigma=0.3, lr=0.05, n_samples=6, batch_size=1, seed=5)
    x, _ = task.forget_set()

    def by_hand(clear):
        m = uk.clone(model).eval()
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        g = gen(5)
        order = torch.randperm(len(x), generator=g)
        for i in order:
            loss = jit_loss(m, x[i : i + 1], 0.3, 6, generator=g, reduction="sum")
            if clear:
                opt.zero_grad()
            loss.backward()
            opt.step()
        return m

    ref, buggy = by_hand(clear=True), by_hand(clear=False)
    for (n, p), q, r in zip(out.named_parameters(), ref.parameters(), buggy.parameters()):
        torch.testing.assert_close(p, q, msg=f"{n} differs from Algorithm 1")
    assert any(not torch.allclose(p, r) for p, r in zip(out.parameters(), buggy.parameters()))


def test_default_batch_is_the_authors_128_with_losses_summed_into_one_step():
    import inspect

    assert inspect.signature(jit).parameters["batch_size"].default == 128
    data = uk.make_toy("moons", n_train=300, n_test=20)
    task = uk.forget_instances(data, list(range(0, 300, 2)))  # 150 samples: 2 batches
    uk.set_seed(0)
    model = uk.build_model("mlp", data, hidden=(16,))
    out = jit(model, task, sigma=0.3, lr=0.01, n_samples=6, seed=3)
    assert out.unlearn_info["steps"] == 2
    x, _ = task.forget_set()
    m = uk.clone(model).eval()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    g = gen(3)
    order = torch.randperm(len(x), generator=g)
    for b in (order[:128], order[128:]):
        opt.zero_grad()
        jit_loss(m, x[b], 0.3, 6, generator=g, reduction="sum").backward()
        opt.step()
    for (n, p), q in zip(out.named_parameters(), m.parameters()):
        torch.testing.assert_close(p, q, msg=f"{n}: the default is not one summed step per batch of 128")
    one = jit(model, task, sigma=0.3, lr=0.01, n_samples=6, batch_size=1, seed=3)
    assert one.unlearn_info["steps"] == 150


def test_jit_does_not_mutate_its_input_and_is_deterministic():
    data = uk.make_toy("moons", n_train=60, n_test=20)
    task = uk.forget_instances(data, [0, 5])
    uk.set_seed(0)
    model = uk.build_model("mlp", data, hidden=(16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = jit(model, task, sigma=0.5, lr=0.05, n_samples=5)
    b = jit(model, task, sigma=0.5, lr=0.05, n_samples=5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters()))
    assert a.unlearn_info["seconds"] > 0 and not a.training


def test_frozen_batch_norm_keeps_running_statistics_and_per_sample_independence(digits, cnn_model):
    task = uk.forget_classes(digits, [0])
    stats = lambda m: {k: v.clone() for k, v in m.named_buffers() if "running_" in k}  # noqa: E731
    s0 = stats(cnn_model)
    frozen = jit(cnn_model, task, sigma=0.5, lr=1e-4, n_samples=4, bn="frozen")
    batch = jit(cnn_model, task, sigma=0.5, lr=1e-4, n_samples=4, bn="batch")
    assert all(torch.equal(s0[k], v) for k, v in stats(frozen).items())
    assert any(not torch.allclose(s0[k], v) for k, v in stats(batch).items())
    # eval mode: a sample's loss does not depend on the rest of the batch; batch statistics: it does
    x, _ = task.forget_set()
    first = lambda m, b: jit_loss(m, b, 0.5, 4, generator=gen(), reduction="none")[0].item()  # noqa: E731
    ev = uk.clone(cnn_model).eval()
    assert first(ev, x[[0, 1]]) == pytest.approx(first(ev, x[[0, 2]]), rel=1e-5)
    tr1, tr2 = uk.clone(cnn_model).train(), uk.clone(cnn_model).train()
    assert first(tr1, x[[0, 1]]) != pytest.approx(first(tr2, x[[0, 2]]), rel=1e-5)


# -------------------------------------------------------------------------- the toy: a high-information point


@pytest.fixture(scope="module")
def moons_model():
    data = uk.make_toy("moons", n_train=100, n_test=400, noise=0.25)
    uk.set_seed(0)
    model = uk.build_model("mlp", data, hidden=(64, 64))
    uk.fit(
        model,
        data.x_train,
        data.y_train,
        epochs=300,
        batch_size=100,
        lr=0.01,
        optimizer="adam",
        weight_decay=1e-3,
        schedule="constant",
        progress=False,
        seed=0,
    )
    return data, model


def test_unlearning_a_high_information_point_flips_it_and_spares_the_rest(moons_model):
    data, model = moons_model
    x, y = data.x_train, data.y_train
    alpha = sample_information(x, y, r=0.5)
    pred = uk.predict(model, x).argmax(1)
    ok = (pred == y) & ~alpha.isnan()
    hi = min(torch.nonzero(ok).flatten().tolist(), key=lambda i: alpha[i].item())
    lo = max(
        torch.nonzero(~alpha.isnan()).flatten().tolist(),
        key=lambda i: (alpha[i].item(), int(((x - x[i]).norm(dim=1) <= 0.5).sum())),
    )
    assert alpha[hi] < 0.1 and alpha[lo] == 1.0
    others_acc = uk.accuracy(model, x[torch.arange(len(x)) != hi], y[torch.arange(len(x)) != hi])
    task = uk.forget_instances(data, [hi])
    unlearned = jit(model, task, sigma=1.0, lr=1e-2, n_samples=25)
    assert uk.predict(unlearned, x[hi : hi + 1]).argmax(1).item() != y[hi].item(), (
        "the point was not forgotten"
    )
    xr, yr = task.retain_set()
    assert others_acc > 95
    assert uk.accuracy(unlearned, xr, yr) >= 90.0, (
        "accuracy on the other points fell below the stated bound (90%)"
    )
    # the same step leaves a low-information point alone
    kept = jit(model, uk.forget_instances(data, [lo]), sigma=1.0, lr=1e-2, n_samples=25)
    assert uk.predict(kept, x[lo : lo + 1]).argmax(1).item() == y[lo].item()
    assert torch.softmax(uk.predict(kept, x[lo : lo + 1]), 1)[0, y[lo]] > 0.9


# ----------------------------------------------------------------------------- information (Defs 4.1-4.2)


def test_sample_information_counts_agreeing_neighbours():
    x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [5.0]])
    y = torch.tensor([0, 0, 1, 0, 1])
    a = sample_information(x, y, r=0.15)
    # neighbours within 0.15 (self excluded): 0->{1}, 1->{0,2}, 2->{1,3}, 3->{2}, 4->{}
    torch.testing.assert_close(a[:4], torch.tensor([1.0, 0.5, 0.0, 0.0]))
    assert torch.isnan(a[4])
    a_self = sample_information(x, y, r=0.15, include_self=True)
    torch.testing.assert_close(a_self, torch.tensor([1.0, 2 / 3, 1 / 3, 0.5, 1.0]))
    with pytest.raises(ValueError, match="radius"):
        sample_information(x, y, r=0.0)


def test_model_information_reads_the_models_neighbourhood():
    class Halfplane(nn.Module):  # class 1 iff the first coordinate is positive
        def forward(self, z):
            return torch.stack([-z[:, 0], z[:, 0]], 1) * 10

    m = Halfplane()
    m.register_parameter("dummy", nn.Parameter(torch.zeros(1)))
    x = torch.tensor([[5.0, 0.0], [0.0, 0.0], [-5.0, 0.0]])
    a = model_information(m, x, r=1.0, n_samples=2000)
    assert a[0] == 1.0 and a[2] == 1.0
    assert a[1] == pytest.approx(0.5, abs=0.05)


# ----------------------------------------------------------------------------- boundary shrinking


def test_boundary_shrink_relabels_with_nearest_false_labels_and_forgets():
    data = uk.make_toy("blobs", n_train=100, n_test=100, centers=2)
    uk.set_seed(0)
    model = uk.build_model("mlp", data, hidden=(32,))
    uk.fit(
        model,
        data.x_train,
        data.y_train,
        epochs=100,
        batch_size=100,
        lr=0.01,
        optimizer="adam",
        progress=False,
        seed=0,
    )
    task = uk.forget_classes(data, [0])
    xf, yf = task.forget_set()
    small = uk.methods.nearest_false_labels(model, xf, yf, bound=0.01)
    large = uk.methods.nearest_false_labels(model, xf, yf, bound=2.0)
    assert (small != yf).float().mean() < 0.2 < 0.9 < (large != yf).float().mean()
    out = uk.methods.boundary_shrink(model, task, bound=2.0, lr=0.01, epochs=10)
    assert out.unlearn_info["access"] == "forget" and out.unlearn_info["hits"] > 0.9
    assert uk.accuracy(out, xf, yf) < 0.5 * uk.accuracy(model, xf, yf)
    assert uk.accuracy(out, *task.retain_set()) > 90
    with pytest.raises(ValueError, match="bound"):
        uk.methods.boundary_shrink(model, task, bound=0.0)
