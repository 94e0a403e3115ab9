"""What a run costs: multiply-accumulates counted from the model, epoch-equivalents per kind of
work, and the files the book runner collects (unlearnkit/budget.py)."""

import functools
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
    assert set(doc["01_x"]) == {
        "train",
        "unlearn",
        "eval",
        "relearn",
        "total",
        "reused",
        "counted",
        "seconds",
        "limit",
    }
    assert doc["01_x"]["counted"]["total"] == pytest.approx(doc["01_x"]["total"])  # no dry run: as planned
    assert doc["01_x"]["limit"] == budget.CHAPTER_LIMIT
    text = budget.table(per)
    assert "01_x" in text and "book" in text.splitlines()[-1]
    assert budget.write_after_each_cell(tmp_path / "x.json") is False  # not in IPython


# ----------------------------------------------------------------------------- planned cost in a dry run


@pytest.fixture
def dry():
    uk.profile("smoke", device="cpu", quiet=True, dry_run=True)
    yield
    uk.profile("smoke", device="cpu", quiet=True, dry_run=False)


def _units(kind="train"):
    return budget.ledger().planned[kind], budget.ledger().units[kind]


def test_a_capped_training_loop_counts_its_planned_epochs_batches_and_data(dry, fresh_ledger):
    from unlearnkit.training import descend, train_batch_size

    m = uk.build_model("mlp", in_shape=(4,), num_classes=2, hidden=(8,), device="cpu")
    m.dry_run_scale = 10.0  # its data was cut to a tenth
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    b = train_batch_size(128)  # capped at 16: one planned batch is 8 of these
    assert b == 16
    batches = [(x[i : i + b], y[i : i + b]) for i in range(0, 64, b)]

    def ce(model, xb, yb):
        return torch.nn.functional.cross_entropy(model(xb), yb)

    h = descend(m, batches, ce, epochs=5, lr=0.1)
    planned, ran = _units()
    assert h.steps == 2 and ran > 0  # two steps of 16 images ran
    # planned: 5 epochs × 64 images × data factor 10 = 3,200 images, 100 times the 32 it ran
    assert planned == pytest.approx(100 * ran)
    budget.ledger().reset()
    train_batch_size(128)  # (the reset forgot the cap)
    descend(m, batches, ce, epochs=5, lr=0.1, max_steps=3)  # 3 planned steps of 128 images
    planned, ran = _units()
    assert planned == pytest.approx(ran * 3 * 128 / 32)
    budget.ledger().reset()
    odd = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 60, 10)]  # batches no cap made
    descend(m, odd, ce, epochs=5, lr=0.1, max_steps=3)
    planned, ran = _units()
    assert planned == pytest.approx(ran * 3 * 10 / 20)


def test_evaluations_inside_a_capped_loop_count_once_per_planned_epoch(dry, fresh_ledger):
    from unlearnkit.training import descend

    m = uk.build_model("mlp", in_shape=(4,), num_classes=2, hidden=(8,), device="cpu")
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    def on_epoch(epoch, loss):
        with torch.no_grad():
            m(x)  # 64 images forward after each epoch

    descend(m, batches, lambda mod, xb, yb: mod(xb).sum(), epochs=7, lr=1e-6, on_epoch=on_epoch)
    planned, ran = _units("eval")
    assert ran > 0 and planned == pytest.approx(7 * ran)  # one epoch ran, seven were planned


def test_other_capped_loops_and_trimmed_lists_count_what_they_left_out(dry, fresh_ledger):
    P = uk.active()
    data = uk.load_dataset("digits")  # cut for the dry run
    m = uk.build_model("mlp", data, hidden=(8,))
    assert m.dry_run_scale == data.meta["dry_run_scale"] > 1
    x = torch.randn(40, *m.arch["in_shape"])
    uk.fisher.diag_fisher(m, x, torch.zeros(40, dtype=torch.long))  # 2 of 40 samples run
    planned, ran = _units()
    f = budget.data_factor(m)
    assert planned == pytest.approx(20 * f * ran)
    budget.ledger().reset()
    few = P.few([1, 2, 3, 4], n=1)
    assert list(few) == [1] and few.planned == 4
    for _ in few:
        with torch.no_grad(), budget.data_scale(1.0):
            m(x)
    planned, ran = _units("eval")
    assert planned == pytest.approx(4 * ran)
    budget.ledger().reset()
    with budget.loop(lambda: 6.0), budget.data_scale(2.0), torch.no_grad():
        m(x)
    planned, ran = _units("eval")
    assert planned == pytest.approx(12 * ran)


def test_a_dry_run_cuts_the_test_split_by_the_training_split_s_factor(dry):
    data = uk.load_dataset("digits")
    full_train, full_test = 1437, 360
    f = data.meta["dry_run_scale"]
    assert len(data.y_train) <= 160 and f == pytest.approx(full_train / len(data.y_train))
    assert len(data.y_test) == max(round(full_test / f), 30)


def test_limits_are_checked_per_chapter_and_for_the_book():
    per = {"01": {"total": 140.0}, "02": {"total": 151.0}}
    assert budget.over_limits(per, waived={}) == ["02 plans 151 EE, over its limit of 150"]
    many = {f"{i:02d}": {"total": 149.0} for i in range(7)}
    assert budget.over_limits(many, waived={}) == ["the book plans 1043 EE, over its limit of 1000"]
    assert budget.over_limits({"01": {"total": 1.0}}, waived={}) == []
    # a waived chapter is reported by the runner, not failed, and the book's limit waits for it
    assert budget.over_limits(per, waived={"02": "why"}) == []
    assert budget.over_limits(many, waived={"00": "why"}) == []


def test_relearning_checks_a_forget_sample_and_confirms_on_the_whole_set(digits):
    uk.profile("smoke", device="cpu", quiet=True)
    task = uk.forget_classes(digits, [0])
    m = uk.build_model("mlp", digits, hidden=(16,))
    m.train(False)
    curve = []
    # a target no model reaches: every epoch is checked on the sample only, never confirmed
    n = uk.relearn_time(m, task, 101.0, max_epochs=2, check_n=20, curve=curve)
    assert n == 3 and len(curve) == 3
    # a target every model meets at once: stops at epoch 0 after the whole set agrees
    assert uk.relearn_time(m, task, -1.0, max_epochs=2, check_n=20) == 0
    with pytest.raises(ValueError, match="check_n"):
        uk.relearn_time(m, task, 50.0, check_n=0)


def test_a_trimmed_spread_counts_every_planned_model_once(dry, fresh_ledger, tmp_path):
    """3 seeds × 2 classes planned, one run kept: 3 originals and 6 retrained models."""
    P = uk.active()
    data = uk.load_dataset("digits")
    fit = dict(model="mlp", model_kwargs={"hidden": (8,)}, epochs=2, lr=0.1, progress=False, verbose=False)
    make = functools.partial(uk.make_task, data, "full-class")
    one = uk.train_or_load(make(0, 0), "original", seed=0, cache_dir=tmp_path / "probe", **fit)
    per_model = one.zoo_info["planned_units"]
    rt = uk.train_or_load(make(0, 0), "retrain", seed=0, cache_dir=tmp_path / "probe", **fit)
    per_rt = rt.zoo_info["planned_units"]  # the retain set is a tenth smaller
    assert 0 < per_rt < per_model
    budget.ledger().reset()
    sp = uk.run_spread(
        ["mask_classifier"],
        make,
        {**fit, "cache_dir": tmp_path / "zoo"},
        seeds=P.few([0, 1, 2]),
        forget=P.few([0, 1]),
        mia=False,
    )
    assert len(sp.runs["seed"].unique()) == 1
    train = budget.ledger().planned["train"]
    assert train == pytest.approx(3 * per_model + 6 * per_rt, rel=0.01)
    budget.ledger().reset()
    uk.run_spread(
        ["mask_classifier"],
        make,
        {**fit, "cache_dir": tmp_path / "zoo2"},
        seeds=P.few([0, 1, 2]),
        forget=P.few([0, 1, 2]),
        mia=False,
        paired=True,
    )
    assert budget.ledger().planned["train"] == pytest.approx(3 * per_model + 3 * per_rt, rel=0.03)


def test_a_stopping_rule_counts_once_per_planned_step(dry, fresh_ledger):
    from unlearnkit.training import descend

    m = uk.build_model("mlp", in_shape=(4,), num_classes=2, hidden=(8,), device="cpu")
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    def never(model):
        with torch.no_grad():
            model(x[:8])  # 8 images forward at every step
        return False

    descend(m, batches, lambda mod, xb, yb: mod(xb).sum(), epochs=5, lr=1e-6, stop=never)
    planned, ran = _units("eval")
    assert ran > 0 and planned == pytest.approx(ran * 20 / 2)  # 2 checks ran, 5 × 4 steps planned


def test_two_trimmed_spreads_over_the_same_runs_count_their_models_once(dry, fresh_ledger, tmp_path):
    P = uk.active()
    data = uk.load_dataset("digits")
    fit = dict(model="mlp", model_kwargs={"hidden": (8,)}, epochs=2, lr=0.1, progress=False, verbose=False)
    fit["cache_dir"] = tmp_path
    make = functools.partial(uk.make_task, data, "full-class")
    kw = dict(seeds=P.few([0, 1, 2]), forget=P.few([0, 1, 2]), mia=False, paired=True)
    uk.run_spread(["mask_classifier"], make, fit, **kw)
    once = budget.ledger().planned["train"]
    uk.run_spread(["mask_classifier"], make, fit, **kw)  # the same six models again
    assert budget.ledger().planned["train"] == pytest.approx(once)


def test_models_an_earlier_chapter_trained_or_planned_count_as_reused(
    dry, fresh_ledger, tmp_path, monkeypatch
):
    """Two chapters of one dry run, paired over seeds 0, 1, 2: the first with classes 0, 3, 5, the
    second with 0, 3, 8. Only the second's retrained model of (seed 2, class 8) is new to it; the
    others the first trained (its kept run) or planned (its left-out runs)."""
    zoo = tmp_path / "zoo"
    monkeypatch.setenv("UNLEARNKIT_DRY_RUN_ZOO", str(zoo))
    P = uk.active()
    data = uk.load_dataset("digits")
    fit = dict(model="mlp", model_kwargs={"hidden": (8,)}, epochs=2, lr=0.1, progress=False, verbose=False)
    make = functools.partial(uk.make_task, data, "full-class")
    probe = tmp_path / "probe"
    per_o = uk.train_or_load(make(0, 0), "original", seed=0, cache_dir=probe, **fit).zoo_info["planned_units"]
    per_r = uk.train_or_load(make(0, 0), "retrain", seed=0, cache_dir=probe, **fit).zoo_info["planned_units"]
    budget.ledger().reset()
    kw = dict(seeds=P.few([0, 1, 2]), mia=False, paired=True)
    uk.run_spread(["mask_classifier"], make, fit, forget=P.few([0, 3, 5]), **kw)
    first = budget.snapshot()
    assert budget.ledger().planned["train"] == pytest.approx(3 * per_o + 3 * per_r, rel=0.03)
    assert first["reused"] == 0
    planned = (zoo / budget.PLANNED_MODELS_FILE).read_text().split()
    assert len(planned) == 2 * 4  # the left-out runs' two originals and two retrained models
    # the next chapter is another process
    (zoo / budget.PLANNED_MODELS_FILE).write_text("".join(f"{k} 1\n" for k in planned[::2]))
    budget.ledger().reset()
    uk.run_spread(["mask_classifier"], make, fit, forget=P.few([0, 3, 8]), **kw)
    assert budget.ledger().planned["train"] == pytest.approx(per_r, rel=0.03)
    assert budget.ledger().reused == pytest.approx(3 * per_o + 2 * per_r, rel=0.03)
    # a chapter that trains a model another chapter only planned counts it as reused too
    budget.ledger().reset()
    (zoo / budget.PLANNED_MODELS_FILE).write_text(
        uk.train_or_load(make(5, 2), "retrain", seed=2, key_only=True, **fit) + " 1\n"
    )
    uk.train_or_load(make(5, 2), "retrain", seed=2, **fit)
    assert budget.ledger().planned["train"] == 0
    assert budget.ledger().reused == pytest.approx(per_r, rel=0.03)


def test_the_introduction_shows_the_saved_planned_table():
    from pathlib import Path

    intro = (Path(__file__).resolve().parents[1] / "book" / "intro.md").read_text()
    block = intro.split(budget.MARK_BEGIN, 1)[1].split(budget.MARK_END, 1)[0].strip()
    assert block == budget.markdown_table().strip(), (
        "book/intro.md's cost table differs from unlearnkit/budget_planned.json: run "
        "`python -m unlearnkit.book --profile full --dry-run --save-budget`"
    )
    table = budget.planned()
    assert table and all(row["total"] > 0 for row in table.values())


def test_markdown_table_and_cost_text_read_a_planned_table(tmp_path):
    f = tmp_path / "p.json"
    budget.save_planned(
        {"01_a": {"train": 90.0, "unlearn": 20.0, "eval": 5.0, "relearn": 5.0, "total": 120.0}}, f
    )
    budget.save_planned({"02_b": {"train": 10.0, "total": 10.0, "reused": 90.0}}, f)  # rows merge
    table = budget.planned(path=f)
    assert list(table) == ["01_a", "02_b"]
    md = budget.markdown_table(table)
    assert "| 01_a | 90 | 20 | 5 | 5 | 120 | 120 |" in md and "| 02_b | 10 | 0 | 0 | 0 | 10 | 100 |" in md
    assert "**130**" in md  # the book's total
    assert "120 EE" in budget.cost_text("01_a", f) and "100 EE run alone" in budget.cost_text("02_b", f)
    assert "not yet counted" in budget.cost_text("99_z", f)
    assert "8 min on an H100" in budget.times_text(120.0)


def test_a_dry_runs_fewer_count_survives_copies(dry):
    import copy
    import pickle

    n = uk.active().fewer(20, 2)
    assert n == 2 and n.planned == 20
    for again in (copy.deepcopy(n), copy.copy(n), pickle.loads(pickle.dumps(n))):
        assert again == 2 and again.planned == 20
    assert uk.profile("smoke", device="cpu", quiet=True).fewer(20, 2) == 20  # outside a dry run


def test_a_generated_stand_in_counts_at_the_real_dataset_s_size(dry):
    data = uk.load_dataset("cifar100")  # not on this machine: a dry run generates a stand-in
    assert data.meta.get("stand_in")
    assert data.meta["dry_run_scale"] * len(data.y_train) == pytest.approx(50_000)
