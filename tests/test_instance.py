"""Instance-wise unlearning (Cha et al. 2024): targeted L2-PGD against a linear model worked by
hand, MAS normalisation (Algorithm 2) against hand-computed values, the method's access level,
that it forgets with the forget images alone, its early stop, and its errors."""

import pytest
import torch
import torch.nn as nn
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit import attacks
from unlearnkit.fisher import mas_importance, mas_weights
from unlearnkit.methods.instance import continual_unlearn, instance_unlearn, penalty

FAST = dict(n_adv=4, pgd_iters=20, eps=2.0, max_steps=300)
CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- L2-PGD by hand


class Linear2(nn.Module):
    """f(x) = 10 (x_0, x_1): class 0 or 1 wins by the larger coordinate."""

    def forward(self, x):
        return 10.0 * x


def test_pgd_l2_by_hand():
    # From x = (0.6, 0.4) towards class 1: the loss falls fastest along (-1, +1)/√2, (the CE
    # gradient is (p_0, p_1 − 1) = p_0 (1, −1)), so PGD without a random start walks straight down
    # that diagonal until the ball's edge: x' = x + eps (-1, 1)/√2.
    model = Linear2()
    x = torch.tensor([[0.6, 0.4], [0.9, 0.1]])
    eps = 0.3
    adv = attacks.pgd_l2(model, x, torch.tensor([1, 1]), eps=eps, step=0.05, iters=50, random_start=False)
    d = torch.tensor([-1.0, 1.0]) / 2**0.5
    torch.testing.assert_close(adv, (x + eps * d).clamp(0, 1), atol=1e-5, rtol=0)
    norms = (adv - x).norm(dim=1)
    assert (norms <= eps + 1e-6).all()  # the ε-ball holds per sample
    pred = model(adv).argmax(1)
    assert pred[0] == 1  # 0.6 − 0.21 < 0.4 + 0.21: the target class is reached
    assert pred[1] == 0  # 0.9 is too far for ε = 0.3: the ball wins over the target


def test_pgd_l2_ball_and_box_with_random_start(trained_mlp, digits):
    x = digits.x_test[:10]
    t = (digits.y_test[:10] + 1) % 10
    adv = attacks.pgd_l2(
        trained_mlp, x, t, eps=0.5, step=0.1, iters=10, generator=torch.Generator().manual_seed(1)
    )
    assert ((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all() and adv.min() >= 0 and adv.max() <= 1


def test_adversarial_examples_batched_reach_their_targets(trained_mlp, digits):
    x, y = digits.x_train[:6], digits.y_train[:6]
    info = {}
    xa, ya = attacks.adversarial_examples(
        trained_mlp,
        x,
        y,
        n_adv=3,
        eps=4.0,
        step=0.1,
        iters=60,
        generator=torch.Generator().manual_seed(0),
        info=info,
    )
    assert xa.shape == (18, *x.shape[1:]) and ya.shape == (18,)
    assert (ya != y.repeat(3)).all()  # every target is a wrong label
    assert ((xa - x.repeat(3, 1, 1, 1)).flatten(1).norm(dim=1) <= 4.0 + 1e-4).all()
    assert info["success"] >= 0.9 and info["seconds"] > 0
    hit = (uk.predict(trained_mlp, xa).argmax(1) == ya).float().mean().item()
    assert abs(hit - info["success"]) < 1e-6
    assert info["targets"] == "per_image"
    assert (ya.view(3, -1) == ya.view(3, -1)[0]).all()  # Algorithm 1: one target per image
    again = attacks.adversarial_examples(
        trained_mlp, x, y, n_adv=3, eps=4.0, step=0.1, iters=60, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again[0], xa) and torch.equal(again[1], ya)  # same seed, same examples


def test_adversarial_target_rules(trained_mlp, digits):
    x, y = digits.x_train[:6], digits.y_train[:6]

    def targets(**kw):
        info = {}
        ya = attacks.adversarial_examples(
            trained_mlp, x, y, n_adv=5, iters=1, info=info, generator=torch.Generator().manual_seed(0), **kw
        )[1].view(5, -1)
        assert (ya != y[None]).all()
        return ya, info["targets"]

    image, rule = targets()
    assert rule == "per_image" and (image == image[0]).all()  # drawn once, kept for every run
    run, rule = targets(targets="per_run")
    assert rule == "per_run"
    assert (run != run[0]).any(dim=0).any()  # redrawn per run: images change target
    assert torch.equal(targets(same_target=True)[0], image)  # the older flag still works
    assert torch.equal(targets(same_target=False)[0], run)
    given, rule = targets(targets=(y + 1) % 10)
    assert rule == "given" and (given == (y + 1) % 10).all()
    with pytest.raises(ValueError, match="targets must be one of"):
        targets(targets="per_batch")
    with pytest.raises(ValueError, match="contradicts"):
        targets(targets="per_run", same_target=True)


def test_adversarial_examples_errors(trained_mlp, digits):
    x, y = digits.x_train[:4], digits.y_train[:4]
    with pytest.raises(ValueError, match="at least one image"):
        attacks.adversarial_examples(trained_mlp, x[:0], y[:0])
    with pytest.raises(ValueError, match="wrong label"):
        attacks.adversarial_examples(trained_mlp, x, y, n_adv=2, targets=y)
    with pytest.raises(ValueError, match="n_adv"):
        attacks.adversarial_examples(trained_mlp, x, y, n_adv=0)
    with pytest.raises(ValueError, match="eps"):
        attacks.pgd_l2(trained_mlp, x, y, eps=-1.0)


# ----------------------------------------------------------------------------- MAS (Eq. 2, Algorithm 2)


def test_mas_weights_by_hand():
    imp = {
        "w": torch.tensor([[0.0, 1.0], [3.0, 4.0]]),
        "b": torch.tensor([2.0, 4.0, 6.0]),
        "flat": torch.zeros(3),
    }
    w = mas_weights(imp)
    # per tensor: (Ω − min) / (max − min), then 1 − that
    torch.testing.assert_close(w["w"], torch.tensor([[1.0, 0.75], [0.25, 0.0]]))
    torch.testing.assert_close(w["b"], torch.tensor([1.0, 0.5, 0.0]))
    torch.testing.assert_close(w["flat"], torch.ones(3))  # nothing singled out: held in place
    with pytest.raises(ValueError, match="non-empty"):
        mas_weights({})
    with pytest.raises(ValueError, match="NaN"):
        mas_weights({"w": torch.tensor([float("nan")])})


def test_mas_importance_squared_matches_eq2_by_hand():
    # f(x) = W x with W = [[1, 2]], x = (3, 1): ||f||^2 = (3 + 2)^2 = 25, d/dW = 2 * 5 * x = (30, 10);
    # ||f|| = 5, d/dW = x = (3, 1). One sample: the per-sample and batch-mean forms coincide.
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x = torch.tensor([[3.0, 1.0]])
    for per_sample in (True, False):
        torch.testing.assert_close(
            mas_importance(lin, x, squared=True, per_sample=per_sample)["weight"],
            torch.tensor([[30.0, 10.0]]),
        )
        torch.testing.assert_close(
            mas_importance(lin, x, per_sample=per_sample)["weight"], torch.tensor([[3.0, 1.0]])
        )


def test_mas_per_sample_eq2_exceeds_batch_mean_when_gradients_disagree():
    # f(x) = W x, W = [[1, 2]]: d||f(x)||/dW = sign(W x) x. For a = (3, 1) (W a = 5) the gradient is
    # (3, 1); for b = (-1, 1) (W b = 1) it is (-1, 1): opposite signs on the first weight.
    # Eq. 2 (per sample): ((3 + 1) / 2, (1 + 1) / 2) = (2, 1); the scripts' |mean|: (|3 - 1| / 2, 1) = (1, 1).
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    x = torch.tensor([[3.0, 1.0], [-1.0, 1.0]])
    loop = torch.zeros(1, 2)  # Eq. 2 by an explicit loop
    for xi in x:
        (g,) = torch.autograd.grad(lin(xi[None]).norm(), lin.weight)
        loop += g.abs() / len(x)
    torch.testing.assert_close(loop, torch.tensor([[2.0, 1.0]]))
    for method in ("vmap", "loop"):
        torch.testing.assert_close(mas_importance(lin, x, method=method)["weight"], loop)
    batch = mas_importance(lin, x, per_sample=False)["weight"]
    torch.testing.assert_close(batch, torch.tensor([[1.0, 1.0]]))
    assert batch[0, 0] < loop[0, 0]  # cancellation in the batch mean only


# ----------------------------------------------------------------------------- the method


@pytest.fixture(scope="module")
def task16(digits):
    return uk.forget_random(digits, 16, seed=3)


@pytest.fixture(scope="module")
def cnn(digits):
    """A small batch-norm CNN trained on the 300 digits (the method's setting: a conv net)."""
    uk.set_seed(0)
    m = uk.build_model("cnn", digits, width=6, device=CPU)
    uk.fit(m, digits.x_train, digits.y_train, epochs=12, lr=0.05, batch_size=32, progress=False, seed=0)
    return m


def test_registered_with_forget_access():
    fn = uk.get_method("instance_unlearn")
    assert fn.access == "forget" and fn.method_name == "instance_unlearn" and "Cha" in fn.paper
    assert fn is uk.methods.instance_unlearn


def test_never_touches_the_retain_set(trained_mlp, task16):
    view = task16.view("forget", "instance_unlearn")
    with pytest.raises(uk.AccessError):
        view.retain_set()
    with pytest.raises(uk.AccessError):
        view.test_set()

    def peek(model, task, **hp):  # the same view the registry hands the method
        task.retain_set()

    snoop = uk.register("_iw_peek", access="forget")(peek)
    with pytest.raises(uk.AccessError):
        snoop(trained_mlp, task16)
    uk.methods.REGISTRY.pop("_iw_peek")


@pytest.fixture(scope="module")
def unlearned(cnn, task16):
    before = state(cnn)
    out = {v: instance_unlearn(cnn, task16, variant=v, seed=0, **FAST) for v in ("neggrad", "adv+imp")}
    return before, out


def test_forgets_every_image_and_adv_imp_keeps_more(cnn, task16, unlearned):
    before, out = unlearned
    assert same_state(before, state(cnn))  # the input is never mutated
    assert uk.accuracy(cnn, *task16.forget_set()) > 90
    for v, m in out.items():
        assert m.unlearn_info["done"] and m.unlearn_info["forgotten"] == 1.0, v
        assert uk.accuracy(m, *task16.forget_set()) == 0.0
    r = {v: uk.accuracy(m, *task16.retain_set()) for v, m in out.items()}
    assert r["adv+imp"] > r["neggrad"] + 5, r
    info = out["adv+imp"].unlearn_info
    assert info["adv_seconds"] > 0 and info["importance_seconds"] > 0 and info["adv_success"] > 0.5
    assert 0 < info["steps"] <= FAST["max_steps"] and info["access"] == "forget"


def test_info_records_the_choices(unlearned):
    _, out = unlearned
    info = out["adv+imp"].unlearn_info
    assert info["adv_targets"] == "per_image" and info["mas"] == "per_sample" and info["bn"] == "train"
    assert info["weight_decay"] == 1e-5 and info["max_steps"] == FAST["max_steps"] and info["steps"] > 0
    neg = out["neggrad"].unlearn_info
    assert neg["adv_targets"] is None and neg["mas"] is None and neg["bn"] == "train"


def test_target_rule_and_mas_form_change_the_result(cnn, task16):
    cheap = dict(n_adv=2, pgd_iters=3, eps=2.0, max_steps=3, seed=0)
    base = instance_unlearn(cnn, task16, variant="adv+imp", **cheap)
    run = instance_unlearn(cnn, task16, variant="adv+imp", adv_targets="per_run", **cheap)
    old = instance_unlearn(cnn, task16, variant="adv+imp", same_target=False, **cheap)
    batch = instance_unlearn(cnn, task16, variant="adv+imp", mas_per_sample=False, **cheap)
    assert run.unlearn_info["adv_targets"] == old.unlearn_info["adv_targets"] == "per_run"
    assert same_state(state(run), state(old))  # the older flag, the same rule
    assert batch.unlearn_info["mas"] == "batch_mean" and batch.unlearn_info["adv_targets"] == "per_image"
    assert not same_state(state(base), state(run))  # other targets, other examples
    assert not same_state(state(base), state(batch))  # other importance, other penalty


def _bn_stats(model):
    return {n: b.detach().clone() for n, b in model.named_buffers() if "running" in n}


def test_bn_frozen_keeps_running_statistics(cnn, task16):
    before = _bn_stats(cnn)
    assert before
    kw = dict(variant="adv", n_adv=2, pgd_iters=5, eps=2.0, seed=0, max_steps=300, weight_decay=1e-4)
    frozen = instance_unlearn(cnn, task16, bn="frozen", **kw)
    train = instance_unlearn(cnn, task16, bn="train", **kw)
    legacy = instance_unlearn(cnn, task16, bn="batch", **kw)
    for m in (frozen, train):
        assert m.unlearn_info["done"] and uk.accuracy(m, *task16.forget_set()) == 0.0
    assert (
        frozen.unlearn_info["bn"] == "frozen"
        and train.unlearn_info["bn"] == legacy.unlearn_info["bn"] == "train"
    )
    assert frozen.unlearn_info["weight_decay"] == 1e-4
    after = _bn_stats(frozen)
    assert all(torch.equal(after[n], v) for n, v in before.items())  # running statistics untouched
    moved = _bn_stats(train)
    assert any(not torch.equal(moved[n], v) for n, v in before.items() if n.endswith(("mean", "var")))
    assert same_state(state(train), state(legacy))
    assert not same_state(state(frozen), state(cnn))  # the weights still trained


def test_relabel_goal(cnn, task16):
    xf, yf = task16.forget_set()
    new = (yf + 1) % 10
    m = instance_unlearn(cnn, task16, variant="adv", goal="relabel", new_labels=new, seed=0, **FAST)
    assert m.unlearn_info["relabelled"] == 1.0 and m.unlearn_info["new_labels"] == new.tolist()
    assert (uk.predict(m, xf).argmax(1) == new).all()


def test_early_stop_and_step_limit(cnn, task16):
    m = instance_unlearn(cnn, task16, variant="neggrad", seed=0, max_steps=1000)
    steps = m.unlearn_info["steps"]
    assert m.unlearn_info["done"] and 0 < steps < 1000  # stopped as soon as all were forgotten
    one = instance_unlearn(cnn, task16, variant="neggrad", seed=0, max_steps=steps - 1)
    assert one.unlearn_info["steps"] == steps - 1 and not one.unlearn_info["done"]
    again = instance_unlearn(m, task16, variant="neggrad", seed=0)  # nothing left to forget
    assert again.unlearn_info["steps"] == 0
    same = instance_unlearn(cnn, task16, variant="neggrad", seed=0, max_steps=1000)
    assert same_state(state(m), state(same))  # same seed, same numbers


def test_errors(_trained_mlp, task16):
    for kw, msg in [
        (dict(variant="adv+mas"), "variant"),
        (dict(goal="undo"), "goal"),
        (dict(lr=0), "lr"),
        (dict(bn="eval"), "bn"),
        (dict(adv_targets="per_batch"), "adv_targets"),
        (dict(adv_targets="per_image", same_target=False), "contradicts"),
        (dict(max_steps=0), "max_steps"),
        (dict(new_labels=[1]), "goal='relabel'"),
        (dict(goal="relabel", new_labels=[1, 2]), "one label per forget image"),
    ]:
        with pytest.raises(ValueError, match=msg):
            instance_unlearn(_trained_mlp, task16, **kw)
    with pytest.raises(ValueError, match="differ from the true"):
        instance_unlearn(_trained_mlp, task16, goal="relabel", new_labels=task16.forget_set()[1])
    with pytest.raises(ValueError, match="k_cl = 32 is larger"):
        continual_unlearn(_trained_mlp, task16, k_cl=32)
    with pytest.raises(TypeError, match="task itself"):
        continual_unlearn(_trained_mlp, task16.view("forget"))
    with pytest.raises(ValueError, match="multiples"):
        continual_unlearn(_trained_mlp, task16, k_cl=8, at=(4,))


def test_penalty_is_zero_at_the_anchor(_trained_mlp):
    anchor = {n: p.detach().clone() for n, p in _trained_mlp.named_parameters()}
    w = {n: torch.ones_like(p) for n, p in anchor.items()}
    assert penalty(_trained_mlp, anchor, w).item() == 0.0


def test_continual_unlearning(cnn, task16):
    steps = continual_unlearn(cnn, task16, k_cl=8, variant="neggrad", max_steps=300)
    assert [s["k"] for s in steps] == [8, 16]
    assert len(steps[-1]["task"].forget_idx) == 16 and len(steps[0]["task"].forget_idx) == 8
    assert set(steps[0]["task"].forget_idx.tolist()) <= set(task16.forget_idx.tolist())
    assert steps[1]["seconds"] >= steps[0]["seconds"] > 0
    last = steps[-1]["model"]
    assert uk.accuracy(last, *steps[0]["task"].forget_set()) <= 50  # the first request mostly stays forgotten
