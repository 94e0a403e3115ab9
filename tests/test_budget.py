"""What a run costs: multiply-accumulates counted from the model, epoch-equivalents per kind of
work, and the files the book runner collects (unlearnkit/budget.py)."""

import json

import pytest
import torch

import unlearnkit as uk
from unlearnkit import budget


@pytest.fixture
def fresh_ledger():
    budget.ledger().reset()
    yield budget.ledger()
    budget.ledger().reset()


def test_macs_are_counted_from_the_layers():
    mlp = uk.build_model("mlp", in_shape=(64,), num_classes=10, hidden=(32,), device="cpu")
    assert budget.macs(mlp, (64,)) == 64 * 32 + 32 * 10
    nn = torch.nn
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 16, 2))
    assert budget.macs(conv, (3, 4, 4)) == 4 * 4 * 8 * 3 * 9 + 8 * 16 * 2
    # the CIFAR ResNet-18 of one EE: about 0.56 billion multiply-accumulates per image
    assert 0.54e9 < budget.reference_macs() < 0.57e9


def test_an_epoch_of_the_reference_model_is_one_ee_and_a_forward_pass_a_third(fresh_ledger):
    assert budget.ee(50_000, budget.reference_macs(), backward=True) == pytest.approx(1.0)
    assert budget.ee(50_000, budget.reference_macs(), backward=False) == pytest.approx(1 / 3)
    m = uk.build_model("resnet18", in_shape=(3, 32, 32), num_classes=10, device="cpu")
    m(torch.zeros(4, 3, 32, 32)).sum().backward()  # records a graph: forward and backward
    with torch.no_grad():
        m(torch.zeros(6, 3, 32, 32))
    s = budget.snapshot()
    assert s["train"] == pytest.approx(4 / 50_000) and s["eval"] == pytest.approx(6 / 50_000 / 3)
    assert s["total"] == pytest.approx(s["train"] + s["eval"]) and s["unlearn"] == 0


def test_each_kind_of_work_is_counted_where_it_happens(digits, tmp_path, fresh_ledger):
    uk.profile("smoke", device="cpu", quiet=True)
    task = uk.forget_classes(digits, [0])
    fit = dict(model="mlp", model_kwargs={"hidden": (16,)}, epochs=1, lr=0.1, progress=False)
    fit["cache_dir"] = tmp_path
    original = uk.train_or_load(task, "original", verbose=False, **fit)
    after_train = budget.snapshot()
    assert after_train["train"] > 0 and after_train["unlearn"] == after_train["eval"] == 0
    unlearned = uk.methods.finetune(original, task, seed=0, epochs=1)
    assert budget.snapshot()["unlearn"] > 0
    uk.evaluate({"u": unlearned}, task, mia=False)
    assert budget.snapshot()["eval"] > 0
    uk.relearn_time(unlearned, task, 100.0, max_epochs=1)
    s = budget.snapshot()
    assert s["relearn"] > 0 and s["train"] == after_train["train"]  # the method's work is its own
    # a second load from the zoo trains nothing
    uk.train_or_load(task, "original", verbose=False, **fit)
    assert budget.snapshot()["train"] == s["train"]


def test_the_outermost_kind_decides_and_unknown_kinds_are_refused(fresh_ledger):
    m = uk.build_model("mlp", in_shape=(8,), num_classes=2, device="cpu")
    with budget.kind("relearn"), budget.kind("eval"), torch.no_grad():
        m(torch.zeros(5, 8))
    assert budget.ledger().calls["relearn"] == 1 and budget.ledger().calls["eval"] == 0
    with pytest.raises(ValueError, match="choose one of"):
        with budget.kind("inference"):
            pass


def test_counting_leaves_the_random_state_and_the_models_hooks_alone(fresh_ledger):
    m = uk.build_model("cnn", in_shape=(1, 12, 12), num_classes=3, device="cpu")  # an arch not seen yet
    seen = []
    m.net.register_forward_hook(lambda mod, i, o: seen.append(i[0].shape[0]))
    torch.manual_seed(3)
    with torch.no_grad():
        m(torch.ones(7, 1, 12, 12))  # its first call counts its MACs on a twin
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(3), after)  # no random number was drawn
    assert seen == [7]  # the hook saw only the real call
    assert budget.ledger().calls["eval"] == 1


def test_write_collect_save_and_table(tmp_path, fresh_ledger):
    m = uk.build_model("mlp", in_shape=(8,), num_classes=2, device="cpu")
    with torch.no_grad():
        m(torch.zeros(50, 8))
    budget.write(tmp_path / "b" / "01_x.json")
    assert not list((tmp_path / "b").glob(".*.tmp"))  # written atomically
    per = budget.collect(tmp_path / "b", ["01_x", "02_missing"])
    assert list(per) == ["01_x"] and per["01_x"]["eval"] > 0
    budget.save(tmp_path / "budget.json", per)
    doc = json.loads((tmp_path / "budget.json").read_text())
    assert set(doc["01_x"]) == {"train", "unlearn", "eval", "relearn", "total", "seconds", "limit"}
    assert doc["01_x"]["limit"] == budget.CHAPTER_LIMIT
    text = budget.table(per)
    assert "01_x" in text and "book" in text.splitlines()[-1]
    assert budget.write_after_each_cell(tmp_path / "x.json") is False  # not in IPython
