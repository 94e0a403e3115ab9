"""Diagonal Fisher information: vectorised equals the per-sample loop, matches a closed form on a
linear softmax model, and MAS importance."""

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.fisher import flatten


@pytest.fixture(scope="module")
def small_cnn(digits):
    uk.set_seed(0)
    m = uk.build_model("cnn", digits, width=4, device="cpu")
    uk.fit(m, digits.x_train[:64], digits.y_train[:64], epochs=1, lr=0.05, batch_size=32, seed=0)
    return m


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_vmap_equals_loop_mlp(trained_mlp, digits, kind):
    x, y = digits.x_train[:12], digits.y_train[:12]
    a = uk.diag_fisher(trained_mlp, x, y, kind=kind, method="vmap", batch_size=5)
    b = uk.diag_fisher(trained_mlp, x, y, kind=kind, method="loop")
    assert_same(a, b)
    assert flatten(a).sum() > 0


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_vmap_equals_loop_with_batch_norm(small_cnn, digits, kind):
    x, y = digits.x_train[:6], digits.y_train[:6]
    small_cnn.train()
    a = uk.diag_fisher(small_cnn, x, y, kind=kind, method="vmap", batch_size=4)
    b = uk.diag_fisher(small_cnn, x, y, kind=kind, method="loop")
    assert_same(a, b)
    assert small_cnn.training  # mode restored
    assert a.keys() == {n for n, p in small_cnn.named_parameters()}


def test_closed_form_for_a_linear_softmax_model():
    # logits = W x + b: d log p_c / d b = e_c - p, d log p_c / d W = (e_c - p) x^T
    g = torch.Generator().manual_seed(0)
    m = uk.build_model("mlp", in_shape=(3,), num_classes=4, hidden=(), device="cpu")
    x = torch.randn(7, 3, generator=g)
    y = torch.randint(0, 4, (7,), generator=g)
    p = F.softmax(m(x), 1).detach()
    e = F.one_hot(y, 4).float()
    emp = uk.diag_fisher(m, x, y, kind="empirical")
    torch.testing.assert_close(emp["net.net.1.bias"], ((e - p) ** 2).mean(0), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        emp["net.net.1.weight"], (((e - p)[:, :, None] * x[:, None, :]) ** 2).mean(0), rtol=1e-5, atol=1e-7
    )
    # true Fisher of the bias: E_x sum_c p_c (e_c - p)^2, written out per class, which is E_x p (1 - p)
    true_b = torch.zeros(4)
    for c in range(4):
        true_b += (p[:, c : c + 1] * (F.one_hot(torch.full((7,), c), 4).float() - p) ** 2).mean(0)
    tru = uk.diag_fisher(m, x, kind="true")
    torch.testing.assert_close(tru["net.net.1.bias"], true_b, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(tru["net.net.1.bias"], (p * (1 - p)).mean(0), rtol=1e-5, atol=1e-7)


def test_auto_method_and_batch_kind(trained_mlp, digits):
    x, y = digits.x_train[:8], digits.y_train[:8]
    assert_same(uk.diag_fisher(trained_mlp, x, y), uk.diag_fisher(trained_mlp, x, y, method="loop"))
    # "batch": squared mini-batch gradients, weighted by batch size; one sample per batch = empirical Fisher
    assert_same(
        uk.diag_fisher(trained_mlp, x, y, kind="batch", batch_size=1),
        uk.diag_fisher(trained_mlp, x, y, kind="empirical"),
    )
    whole = uk.diag_fisher(trained_mlp, x, y, kind="batch", batch_size=8)
    trained_mlp.zero_grad()
    F.cross_entropy(trained_mlp(x), y).backward()
    torch.testing.assert_close(whole["net.net.1.bias"], trained_mlp.net.net[1].bias.grad ** 2)


def test_mas_importance(trained_mlp, digits):
    x = digits.x_train[:20]
    imp = uk.mas_importance(trained_mlp, x, batch_size=6, per_sample=False)
    assert imp.keys() == dict(trained_mlp.named_parameters()).keys()
    assert all((v >= 0).all() for v in imp.values()) and flatten(imp).sum() > 0
    assert all(p.grad is None for p in trained_mlp.parameters())  # no gradients left behind
    # the batch-mean form: one full-batch gradient of mean ||f(x)||_2, in absolute value
    trained_mlp.zero_grad()
    trained_mlp(x).norm(dim=1).mean().backward()
    for n, p in trained_mlp.named_parameters():
        torch.testing.assert_close(imp[n], p.grad.abs(), rtol=1e-4, atol=1e-8)
    trained_mlp.zero_grad(set_to_none=True)
    # the per-sample form (Eq. 2, the default) is the mean of |per-sample gradient|: never smaller
    eq2 = uk.mas_importance(trained_mlp, x)
    assert all((eq2[n] >= imp[n] - 1e-6).all() for n in imp)
    assert flatten(eq2).sum() > flatten(imp).sum()
    assert all(p.grad is None for p in trained_mlp.parameters())


@pytest.mark.parametrize("squared", [False, True])
def test_mas_per_sample_vmap_equals_loop_with_batch_norm(small_cnn, digits, squared):
    x = digits.x_train[:6]
    small_cnn.train()
    a = uk.mas_importance(small_cnn, x, squared=squared, method="vmap", chunk=4)
    b = uk.mas_importance(small_cnn, x, squared=squared, method="loop")
    assert_same(a, b)
    assert small_cnn.training  # mode restored
    by_hand = {n: torch.zeros_like(p) for n, p in small_cnn.named_parameters()}
    small_cnn.eval()
    for xi in x:
        out = small_cnn(xi[None])[0]
        norm = out.pow(2).sum() if squared else out.norm()
        gs = torch.autograd.grad(norm, list(small_cnn.parameters()))
        for (n, _), g in zip(small_cnn.named_parameters(), gs):
            by_hand[n] += g.abs() / len(x)
    small_cnn.train()
    assert_same(a, by_hand)
    with pytest.raises(ValueError, match="method"):
        uk.mas_importance(small_cnn, x, method="jit")


def test_flatten():
    d = {"a": torch.ones(2, 2), "b": torch.zeros(3)}
    assert torch.equal(flatten(d), torch.tensor([1.0, 1, 1, 1, 0, 0, 0]))
