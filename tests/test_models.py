"""Every architecture builds for small inputs, normalises first, and can be cloned and rebuilt."""

import pytest
import torch

import unlearnkit as uk
from unlearnkit.models import Normalize

SMALL = {
    "mlp": dict(hidden=(16,)),
    "cnn": dict(width=4),
    "resnet18": dict(widths=(4, 8, 8, 8)),
    "resnet20": dict(widths=(4, 8, 8)),
    "allcnn": dict(width=4),
    "vgg11": dict(width_mult=0.125),
    "vit": dict(dim=16, depth=1, heads=2),
}


def test_every_listed_model_has_a_small_test_configuration():
    assert set(SMALL) == set(uk.MODELS)


@pytest.mark.parametrize("name", uk.MODELS)
def test_builds_and_predicts_on_small_images(name):
    uk.set_seed(0)
    m = uk.build_model(name, in_shape=(3, 8, 8), num_classes=5, mean=[0.5] * 3, std=[0.25] * 3, **SMALL[name])
    x = torch.rand(4, 3, 8, 8)
    m.train()
    out = m(x)  # train mode (batch norm on batch statistics)
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    assert uk.predict(m, x).shape == (4, 5)
    assert m.arch["name"] == name and m.arch["in_shape"] == [3, 8, 8] and m.arch["num_classes"] == 5
    assert isinstance(m[0], Normalize)


def test_built_from_a_dataset(digits):
    m = uk.build_model("cnn", digits, width=4)
    assert m.arch["in_shape"] == [1, 8, 8] and m.arch["num_classes"] == 10
    assert m.arch["mean"] == list(digits.mean) and m.arch["std"] == list(digits.std)
    assert next(m.parameters()).device == digits.device
    assert uk.predict(m, digits.x_test[:3]).shape == (3, 10)


def test_mlp_on_vectors_and_its_size():
    m = uk.build_model("mlp", in_shape=(2,), num_classes=3, hidden=(4, 5))
    assert m(torch.zeros(7, 2)).shape == (7, 3)
    assert sum(p.numel() for p in m.parameters()) == (2 * 4 + 4) + (4 * 5 + 5) + (5 * 3 + 3)


def test_normalize_is_the_first_layer():
    n = Normalize(mean=[0.5, 0.0], std=[0.25, 2.0], channels=2)
    x = torch.ones(1, 2, 1, 1)
    torch.testing.assert_close(n(x).flatten(), torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(Normalize(channels=1)(x[:, :1]), x[:, :1])  # identity by default
    # the model's output equals the network applied to the normalised input
    uk.set_seed(0)
    m = uk.build_model("mlp", in_shape=(1, 2, 2), num_classes=2, hidden=(), mean=[0.5], std=[0.25])
    x = torch.rand(3, 1, 2, 2)
    torch.testing.assert_close(m(x), m.net((x - 0.5) / 0.25))
    assert "mean" not in m.state_dict() and "normalize.mean" not in m.state_dict()  # not in checkpoints


def test_same_seed_same_weights_and_rebuild(digits):
    uk.set_seed(3)
    a = uk.build_model("cnn", digits, width=4)
    uk.set_seed(3)
    b = uk.build_model("cnn", digits, width=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    r = uk.rebuild(a)
    assert r.arch == a.arch and type(r.net) is type(a.net)
    assert [p.shape for p in r.parameters()] == [p.shape for p in a.parameters()]
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), r.parameters()))  # fresh weights


def test_clone_is_independent(digits):
    a = uk.build_model("mlp", digits, hidden=(8,))
    c = uk.clone(a)
    assert c.arch == a.arch and c.arch is not a.arch
    with torch.no_grad():
        next(c.parameters()).add_(1.0)
    assert not torch.equal(next(c.parameters()), next(a.parameters()))


def test_check_finite():
    m = uk.build_model("mlp", in_shape=(2,), num_classes=2, hidden=(3,))
    uk.check_finite(m)  # passes quietly
    with torch.no_grad():
        m.net.net[1].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite weights in 'net\.net\.1\.weight'"):
        uk.check_finite(m)


def test_vgg_stops_pooling_on_tiny_inputs():
    m = uk.build_model("vgg11", in_shape=(1, 8, 8), num_classes=10, width_mult=0.125)
    pools = [l for l in m.modules() if isinstance(l, torch.nn.MaxPool2d)]
    assert len(pools) == 3  # 8 -> 4 -> 2 -> 1, then no more
    assert m(torch.rand(2, 1, 8, 8)).shape == (2, 10)
