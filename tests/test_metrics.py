"""The yardsticks against values worked out by hand on tiny tensors, and their behaviour on a
small digits task."""

import math

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.metrics import js_divergence_probs, per_sample_loss


def fixed_output_model(logits, d=2):
    """A model whose logits are ``logits`` for every input: a zero-weight linear layer with that bias."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    m = uk.build_model("mlp", in_shape=(d,), num_classes=len(logits), hidden=(), device="cpu")
    with torch.no_grad():
        m.net.net[-1].weight.zero_()
        m.net.net[-1].bias.copy_(logits)
    return m


def linear_model(weight, bias):
    weight = torch.as_tensor(weight, dtype=torch.float32)
    m = uk.build_model(
        "mlp", in_shape=(weight.shape[1],), num_classes=weight.shape[0], hidden=(), device="cpu"
    )
    with torch.no_grad():
        m.net.net[-1].weight.copy_(weight)
        m.net.net[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return m


# ----------------------------------------------------------------------------- entropy


def test_entropy_by_hand():
    logits = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # uniform over 4: ln 4
            [0.0, math.log(3.0), -1e4, -1e4],  # p = (1/4, 3/4, 0, 0)
            [50.0, 0.0, 0.0, 0.0],
        ]
    )  # nearly one-hot: ~0
    h = uk.entropy(logits)
    expected = torch.tensor([math.log(4.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), 0.0])
    torch.testing.assert_close(h, expected, atol=1e-5, rtol=1e-5)


def test_entropy_is_shift_invariant_and_nonnegative():
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0)) * 3
    h = uk.entropy(x)
    torch.testing.assert_close(h, uk.entropy(x + 7.0))
    assert (h >= 0).all() and (h <= math.log(5) + 1e-6).all()


def test_output_entropy_of_a_model():
    m = fixed_output_model([0.0, math.log(3.0)])
    h = uk.output_entropy(m, torch.zeros(3, 2))
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(h, torch.full((3,), expected), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- unlearn score


@pytest.mark.parametrize(
    "remain, forget, expected",
    [
        (90.0, 50.0, 60.0),  # 0.9 / 1.5
        (100.0, 0.0, 100.0),  # the ideal
        (80.0, 100.0, 40.0),  # nothing forgotten halves the score
        (0.0, 0.0, 0.0),
    ],
)
def test_unlearn_score_by_hand(remain, forget, expected):
    assert uk.unlearn_score(remain, forget) == pytest.approx(expected)


# ----------------------------------------------------------------------------- JS divergence


def test_js_divergence_of_probabilities_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.3, 0.7]])
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.3, 0.7]])
    js = js_divergence_probs(p, q)
    expected = torch.tensor([math.log(2.0), 0.75 * math.log(4.0 / 3.0), 0.0])
    torch.testing.assert_close(js, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(js_divergence_probs(q, p), js)  # symmetric


def test_js_divergence_between_models_by_hand():
    p, q = np.array([0.5, 0.5]), np.array([0.75, 0.25])
    a, b = fixed_output_model(np.log(p)), fixed_output_model(np.log(q))
    m = (p + q) / 2
    expected = 0.5 * (p * np.log(p / m)).sum() + 0.5 * (q * np.log(q / m)).sum()
    x = torch.randn(4, 2)
    assert uk.js_divergence(a, b, x) == pytest.approx(expected, rel=1e-4)
    assert uk.js_divergence(a, a, x) == pytest.approx(0.0, abs=1e-7)


def test_activation_distance_by_hand():
    a, b = fixed_output_model(np.log([0.5, 0.5])), fixed_output_model(np.log([0.75, 0.25]))
    # || (0.5, 0.5) - (0.75, 0.25) ||_2 = 0.25 * sqrt(2)
    assert uk.activation_distance(a, b, torch.zeros(3, 2)) == pytest.approx(0.25 * math.sqrt(2), rel=1e-5)


# ----------------------------------------------------------------------------- CKA


def test_linear_cka_by_hand():
    a = torch.tensor([[1.0], [0.0], [-1.0]])
    b = torch.tensor([[1.0], [1.0], [-2.0]])
    # centred already; <a,b>^2 / (|a|^2 |b|^2) = 9 / (2 * 6)
    assert uk.linear_cka(a, b) == pytest.approx(0.75)


def test_linear_cka_invariances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    assert uk.linear_cka(x, x) == pytest.approx(1.0)
    assert uk.linear_cka(x, 3.0 * x @ q + 2.0) == pytest.approx(1.0)  # rotation, scale, shift
    noise = torch.randn(30, 5, generator=g)
    assert uk.linear_cka(x, noise) < 0.6


# ----------------------------------------------------------------------------- weight distance


def test_weight_distance_by_hand():
    a = linear_model(torch.zeros(2, 3), torch.zeros(2))
    b = linear_model(torch.ones(2, 3), torch.full((2,), 2.0))
    df = uk.weight_distance(a, b)
    assert list(df["layer"]) == ["net.net.1.weight", "net.net.1.bias"]
    assert df["distance"].tolist() == pytest.approx([math.sqrt(6), math.sqrt(8)])
    rel = uk.weight_distance(a, b, relative=True)["distance"].tolist()
    assert rel == pytest.approx([1.0, 1.0])  # |0 - b| / |b|
    assert uk.weight_distance(b, b)["distance"].sum() == 0.0


# ----------------------------------------------------------------------------- accuracy, predictions


def test_accuracy_by_hand():
    # logits = x: predicts the index of the larger coordinate
    m = linear_model(torch.eye(2), torch.zeros(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert uk.accuracy(m, x, torch.tensor([0, 1, 1, 1])) == pytest.approx(75.0)
    assert uk.accuracy(m, x, torch.tensor([0, 1, 0, 1])) == pytest.approx(100.0)
    assert math.isnan(uk.accuracy(m, x[:0], torch.tensor([], dtype=torch.long)))
    torch.testing.assert_close(uk.predict(m, x), x)
    conf = uk.prediction_confusion(m, x)
    np.testing.assert_allclose(conf, [0.5, 0.5])
    np.testing.assert_allclose(uk.prediction_confusion(m, x[:1], num_classes=3), [1.0, 0.0, 0.0])


def test_per_sample_loss_by_hand():
    m = fixed_output_model(np.log([0.25, 0.75]))
    loss = per_sample_loss(m, torch.zeros(2, 2), torch.tensor([0, 1]))
    torch.testing.assert_close(loss, torch.tensor([math.log(4.0), math.log(4.0 / 3.0)]), atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- behaviour on a task


def test_membership_inference_sees_the_training_set(digits, trained_mlp):
    # the model was trained on every training sample: a random forget set looks like members
    task = uk.forget_random(digits, 60, seed=0)
    auc = uk.mia_loss_auc(trained_mlp, task)
    share = uk.mia_entropy(trained_mlp, task)
    assert 0.5 < auc <= 1.0
    assert 50.0 < share <= 100.0
    # a constant model cannot tell members from non-members
    const = uk.build_model("mlp", digits, hidden=(), device="cpu")
    with torch.no_grad():
        for p in const.parameters():
            p.zero_()
    assert uk.mia_loss_auc(const, task) == pytest.approx(0.5)


def test_evaluate_table(task0, trained_mlp):
    blank = uk.build_model("mlp", task0.data, hidden=(32,), device="cpu")
    df = uk.evaluate({"original": trained_mlp, "retrain": blank}, task0)
    for col in (
        "train_forget",
        "train_retain",
        "test_forget",
        "test_retain",
        "E_F",
        "unlearn_score",
        "MIA_entropy_%",
        "MIA_loss_AUC",
        "seconds",
        "JS_to_retrain",
    ):
        assert col in df.columns, col
    row = df.loc["original"]
    xf, yf = task0.forget_set()
    assert row["train_forget"] == pytest.approx(uk.accuracy(trained_mlp, xf, yf))
    assert row["E_F"] == pytest.approx(100.0 - row["test_forget"])
    assert row["unlearn_score"] == pytest.approx(uk.unlearn_score(row["test_retain"], row["test_forget"]))
    assert df.loc["retrain", "JS_to_retrain"] == pytest.approx(0.0, abs=1e-7)
    assert df.loc["original", "JS_to_retrain"] > 0.01
    assert df.index.name == "method"
    single = uk.evaluate(trained_mlp, task0, mia=False)
    assert list(single.index) == ["model"] and "MIA_loss_AUC" not in single.columns


def test_a_large_retain_set_is_scored_on_a_fixed_sample(task0, trained_mlp, monkeypatch):
    from unlearnkit import metrics

    xr, yr = task0.retain_set()
    whole = uk.evaluate(trained_mlp, task0, mia=False).loc["model"]
    assert whole["train_retain"] == pytest.approx(uk.accuracy(trained_mlp, xr, yr))
    monkeypatch.setattr(metrics, "MAX_RETAIN_EVAL", 200)
    idx = metrics.retain_eval_idx(task0)
    assert len(idx) == 200 and len(set(idx.tolist()) - set(task0.retain_idx.tolist())) == 0
    assert torch.equal(idx, metrics.retain_eval_idx(task0))  # the same sample for every model
    d = task0.data
    row = uk.evaluate(trained_mlp, task0, mia=True).loc["model"]
    assert row["train_retain"] == pytest.approx(uk.accuracy(trained_mlp, d.x_train[idx], d.y_train[idx]))
    # the forget set and the test split stay whole
    for col in ("train_forget", "test_forget", "test_retain"):
        assert row[col] == pytest.approx(whole[col])


def test_evaluate_random_forgetting_has_no_test_forget(digits, trained_mlp):
    task = uk.forget_random(digits, 20, seed=1)
    row = uk.evaluate({"m": trained_mlp}, task, mia=True).loc["m"]
    assert math.isnan(row["test_forget"]) and math.isnan(row["E_F"])
    # the score then uses the forget-train accuracy
    assert row["unlearn_score"] == pytest.approx(uk.unlearn_score(row["test_retain"], row["train_forget"]))
    assert 0.0 <= row["MIA_loss_AUC"] <= 1.0


def test_relearn_time_both_definitions(task0, trained_mlp):
    xf, yf = task0.forget_set()
    acc = uk.accuracy(trained_mlp, xf, yf)
    assert uk.relearn_time(trained_mlp, task0, target=acc) == 0  # already there
    loss = per_sample_loss(trained_mlp, xf, yf).mean().item()
    assert uk.relearn_time(trained_mlp, task0, target=loss, definition="mask") == 0
    # a model that forgot class 0 through its head needs at least one epoch, and the curve is recorded
    forgot = uk.clone(trained_mlp)
    with torch.no_grad():
        forgot.net.net[-1].bias[0] = -20.0
    assert uk.accuracy(forgot, xf, yf) == 0.0
    curve = []
    epochs = uk.relearn_time(forgot, task0, target=90.0, max_epochs=3, lr=0.05, curve=curve)
    assert 1 <= epochs <= 4
    assert [c["epoch"] for c in curve] == list(range(len(curve)))
    assert curve[0]["forget_acc"] == 0.0
    assert uk.relearn_time(forgot, task0, target=101.0, max_epochs=1) == 2  # never: max_epochs + 1
    assert uk.accuracy(forgot, xf, yf) == 0.0  # the input is not changed


def test_linear_cka_wide_features_match_narrow_form():
    """A conv layer has far more features than samples: the Gram form must give the same CKA
    as the feature-space form, without building a d x d matrix."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(6, 40, generator=g)
    b = a @ torch.randn(40, 30, generator=g) + 0.5 * torch.randn(6, 30, generator=g)
    ac, bc = (a - a.mean(0)).double(), (b - b.mean(0)).double()
    by_features = float((ac.T @ bc).norm() ** 2 / ((ac.T @ ac).norm() * (bc.T @ bc).norm()))
    assert uk.linear_cka(a, b) == pytest.approx(by_features, rel=1e-6)
    wide = torch.randn(8, 70_000, generator=g)  # d x d would be 39 GB
    assert uk.linear_cka(wide, wide) == pytest.approx(1.0)
    assert 0.0 <= uk.linear_cka(wide, torch.randn(8, 70_000, generator=g)) < 1.0
