"""The fit loop: it learns, is deterministic on the CPU, honours its options and the batch hook."""

import pytest
import torch
from conftest import same_state, state, tiny_mlp

import unlearnkit as uk


def test_fit_reduces_the_loss_and_learns(digits):
    m = tiny_mlp(digits)
    before = uk.accuracy(m, digits.x_test, digits.y_test)
    h = uk.fit(
        m,
        digits.x_train,
        digits.y_train,
        epochs=6,
        lr=0.1,
        batch_size=32,
        seed=0,
        eval_data=(digits.x_test, digits.y_test),
    )
    assert h.loss[-1] < 0.5 * h.loss[0]
    assert len(h.loss) == len(h.train_acc) == len(h.eval_acc) == h.epochs == 6
    assert h.eval_acc[-1] == pytest.approx(uk.accuracy(m, digits.x_test, digits.y_test))
    assert h.eval_acc[-1] > max(60.0, before + 30.0)
    assert h.seconds > 0 and not m.training  # left in eval mode


def test_fit_is_deterministic_on_the_cpu(digits):
    runs = []
    for _ in range(2):
        m = tiny_mlp(digits, seed=1)
        h = uk.fit(m, digits.x_train, digits.y_train, epochs=2, lr=0.05, batch_size=32, seed=5, augment=True)
        runs.append((state(m), h.loss))
    assert same_state(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    m = tiny_mlp(digits, seed=1)
    uk.fit(m, digits.x_train, digits.y_train, epochs=2, lr=0.05, batch_size=32, seed=6, augment=True)
    assert not same_state(state(m), runs[0][0])  # the seed matters


def test_identical_metrics_twice(task0):
    """Same seed, same numbers: the whole original -> method -> evaluate chain, twice on the CPU."""
    tables = []
    for _ in range(2):
        uk.set_seed(0)
        m = uk.build_model("mlp", task0.data, hidden=(16,), device="cpu")
        uk.fit(m, task0.data.x_train, task0.data.y_train, epochs=3, lr=0.1, batch_size=64, seed=0)
        out = uk.methods.random_labels(m, task0, epochs=1, lr=0.05)
        tables.append(uk.evaluate({"original": m, "unlearned": out}, task0).drop(columns="seconds"))
    assert tables[0].equals(tables[1])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "onecycle"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_optimizers_and_schedules_train(digits, optimizer, schedule):
    m = tiny_mlp(digits)
    lr = 0.1 if optimizer == "sgd" else 0.01
    h = uk.fit(
        m,
        digits.x_train[:128],
        digits.y_train[:128],
        epochs=3,
        lr=lr,
        batch_size=32,
        optimizer=optimizer,
        schedule=schedule,
        seed=0,
    )
    assert h.loss[-1] < h.loss[0]


def test_schedules_shape_the_learning_rate():
    from unlearnkit.training import make_optimizer, make_schedule

    p = [torch.nn.Parameter(torch.zeros(1))]
    lrs = {}
    for s in ("constant", "cosine", "step", "onecycle"):
        opt = make_optimizer(p, "sgd", lr=1.0)
        sched = make_schedule(opt, s, total_steps=8, steps_per_epoch=2, lr=1.0)
        seen = []
        for _ in range(8):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None:
                sched.step()
        lrs[s] = seen
    assert lrs["constant"] == [1.0] * 8
    assert lrs["cosine"][0] == 1.0 and lrs["cosine"] == sorted(lrs["cosine"], reverse=True)
    assert lrs["step"] == pytest.approx([1.0] * 4 + [0.1] * 2 + [0.01] * 2)  # milestones at 50% and 75%
    assert max(lrs["onecycle"]) == pytest.approx(1.0) and lrs["onecycle"][0] < 0.1


def test_hook_sees_every_batch_and_can_rewrite_it(digits):
    calls = []

    def hook(xb, yb, epoch, step):
        calls.append((epoch, step, len(xb)))
        return xb, torch.zeros_like(yb)  # teach everything to be a 0

    m = tiny_mlp(digits)
    uk.fit(m, digits.x_train[:100], digits.y_train[:100], epochs=2, batch_size=40, lr=0.1, hook=hook, seed=0)
    assert calls == [(0, 0, 40), (0, 1, 40), (0, 2, 20), (1, 0, 40), (1, 1, 40), (1, 2, 20)]
    assert (uk.predict(m, digits.x_test).argmax(1) == 0).all()


def test_augment_flag_changes_the_batches(digits):
    seen = {}
    for aug in (False, True):
        got = []
        m = tiny_mlp(digits)
        uk.fit(
            m,
            digits.x_train[:32],
            digits.y_train[:32],
            epochs=1,
            batch_size=32,
            seed=0,
            augment=aug,
            hook=lambda xb, yb, e, s: (got.append(xb.clone()), (xb, yb))[1],
        )
        seen[aug] = got[0]
    assert sorted(seen[False].flatten().tolist()) != sorted(seen[True].flatten().tolist())
    assert seen[True].shape == seen[False].shape


def test_predict_batches_and_restores_mode(trained_mlp, digits):
    trained_mlp.train()
    full = uk.predict(trained_mlp, digits.x_test)
    small = uk.predict(trained_mlp, digits.x_test, batch_size=7)
    torch.testing.assert_close(full, small)
    assert trained_mlp.training  # the caller's mode is kept
    assert full.dtype == torch.float32 and full.shape == (len(digits.x_test), 10)
    assert uk.predict(trained_mlp, digits.x_test[:0]).shape == (0, 10)


def test_weight_decay_and_clip_grad_are_applied(digits):
    a, b = tiny_mlp(digits), tiny_mlp(digits)
    uk.fit(a, digits.x_train[:64], digits.y_train[:64], epochs=1, lr=0.1, weight_decay=0.0, seed=0)
    uk.fit(b, digits.x_train[:64], digits.y_train[:64], epochs=1, lr=0.1, weight_decay=0.5, seed=0)
    norm = lambda m: sum(p.norm() ** 2 for p in m.parameters()).item()  # noqa: E731
    assert norm(b) < norm(a)
    c, d = tiny_mlp(digits), tiny_mlp(digits)
    start = state(c)
    uk.fit(
        c,
        digits.x_train[:32],
        digits.y_train[:32],
        epochs=1,
        batch_size=32,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        clip_grad=1e-3,
        seed=0,
    )
    uk.fit(
        d,
        digits.x_train[:32],
        digits.y_train[:32],
        epochs=1,
        batch_size=32,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        seed=0,
    )
    step = lambda m: sum(((p - start[k]) ** 2).sum() for k, p in m.state_dict().items()).sqrt().item()  # noqa: E731
    assert step(c) == pytest.approx(1e-3, rel=1e-3)  # one SGD step of lr * clipped gradient norm
    assert step(d) > 10 * step(c)


def test_zero_epochs_changes_nothing(digits):
    m = tiny_mlp(digits)
    before = state(m)
    h = uk.fit(m, digits.x_train, digits.y_train, epochs=0)
    assert same_state(before, state(m)) and h.loss == []
