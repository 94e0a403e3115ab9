"""Load-or-train: a hit loads without training, a changed configuration trains anew, a corrupt or
foreign file is reported and retrained, never silently used."""

import warnings

import pytest
import torch
from conftest import same_state, state

import unlearnkit as uk
from unlearnkit import zoo

KW = dict(
    model="mlp",
    model_kwargs={"hidden": (16,)},
    epochs=2,
    lr=0.1,
    batch_size=64,
    verbose=False,
    progress=False,
)


@pytest.fixture
def count_fits(monkeypatch):
    """Counts the trainings the zoo starts."""
    calls = []
    real = zoo.fit

    def counting(*a, **k):
        calls.append(k.get("desc"))
        return real(*a, **k)

    monkeypatch.setattr(zoo, "fit", counting)
    return calls


def test_hit_loads_without_training(task0, data_root, count_fits):
    a = uk.train_or_load(task0, "original", **KW)
    assert count_fits == ["train original"] and a.zoo_cached is False
    files = list((data_root / "zoo").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("digits-mlp-original-")
    assert not list((data_root / "zoo").glob(".*tmp"))  # atomic write left no temporary file
    b = uk.train_or_load(task0, "original", **KW)
    assert count_fits == ["train original"] and b.zoo_cached is True  # no second training
    assert same_state(state(a), state(b))
    assert b.zoo_info["test_acc"] == pytest.approx(a.zoo_info["test_acc"])
    assert b.zoo_info["epochs"] == 2 and b.zoo_path == a.zoo_path
    # the original does not depend on which class a task forgets; a dataset works too
    c = uk.train_or_load(uk.forget_classes(task0.data, 5), "original", **KW)
    d = uk.train_or_load(task0.data, "original", **KW)
    assert c.zoo_cached and d.zoo_cached and len(count_fits) == 1


def test_miss_when_the_configuration_changes(task0, data_root, count_fits):
    base = uk.train_or_load(task0, "original", **KW)
    for change in (dict(epochs=3), dict(seed=1), dict(lr=0.05), dict(model_kwargs={"hidden": (8,)})):
        m = uk.train_or_load(task0, "original", **{**KW, **change})
        assert m.zoo_cached is False, change
        assert m.zoo_path != base.zoo_path
    assert len(count_fits) == 5
    assert len(list((data_root / "zoo").glob("*.pt"))) == 5
    # retrain models are keyed by the forget set
    r0 = uk.train_or_load(task0, "retrain", **KW)
    r1 = uk.train_or_load(uk.forget_classes(task0.data, 1), "retrain", **KW)
    assert not r0.zoo_cached and not r1.zoo_cached and r0.zoo_path != r1.zoo_path
    assert uk.train_or_load(task0, "retrain", **KW).zoo_cached


def test_retrain_model_never_sees_the_forget_set(task0, data_root, monkeypatch):
    seen = []
    real = zoo.fit
    monkeypatch.setattr(zoo, "fit", lambda m, x, y, **k: (seen.append(y.clone()), real(m, x, y, **k))[1])
    r = uk.train_or_load(task0, "retrain", **KW)
    assert len(seen[0]) == len(task0.retain_idx) and not (seen[0] == 0).any()
    xf, yf = task0.forget_set()
    assert uk.accuracy(r, xf, yf) < 20.0


def test_hook_with_tag_is_part_of_the_key(task0, data_root, count_fits):
    hook = lambda xb, yb, e, s: (xb, yb)  # noqa: E731
    a = uk.train_or_load(task0, "original", hook=hook, tag="identity", **KW)
    b = uk.train_or_load(task0, "original", **KW)
    c = uk.train_or_load(task0, "original", hook=hook, tag="identity", **KW)
    assert not a.zoo_cached and not b.zoo_cached and c.zoo_cached and a.zoo_path != b.zoo_path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "nan", "foreign", "not-a-dict"])
def test_corrupt_file_is_reported_and_retrained(task0, data_root, count_fits, damage):
    good = uk.train_or_load(task0, "original", **KW)
    path = good.zoo_path
    blob = torch.load(path, weights_only=True)
    if damage == "garbage":
        open(path, "wb").write(b"this is not a checkpoint")
    elif damage == "truncated":
        raw = open(path, "rb").read()
        open(path, "wb").write(raw[: len(raw) // 2])
    elif damage == "empty":
        open(path, "wb").close()
    elif damage == "nan":
        blob["state_dict"] = {k: torch.full_like(v, float("nan")) for k, v in blob["state_dict"].items()}
        torch.save(blob, path)
    elif damage == "foreign":
        blob["key"] = "0123456789abcdef"
        torch.save(blob, path)
    else:
        torch.save([1, 2, 3], path)
    with pytest.warns(uk.CorruptCheckpointWarning, match=r"Retraining it now"):
        again = uk.train_or_load(task0, "original", **KW)
    assert again.zoo_cached is False and len(count_fits) == 2
    uk.check_finite(again)
    assert same_state(state(again), state(good))  # same configuration, same seed: same model
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the replaced file is good again
        assert uk.train_or_load(task0, "original", **KW).zoo_cached


def test_checkpoint_of_another_architecture(task0, tmp_path):
    cfg = {"x": 1}
    small = lambda: uk.build_model("mlp", task0.data, hidden=(4,), device="cpu")  # noqa: E731
    big = lambda: uk.build_model("mlp", task0.data, hidden=(8,), device="cpu")  # noqa: E731
    uk.cached(cfg, small, lambda m: None, cache_dir=tmp_path, verbose=False)
    with pytest.warns(uk.CorruptCheckpointWarning, match="does not fit this architecture"):
        m = uk.cached(cfg, big, lambda m: {"note": "again"}, cache_dir=tmp_path, verbose=False)
    assert m.zoo_info["note"] == "again"


def test_cached_retrain_flag_and_info(tmp_path, task0):
    calls = []
    build = lambda: uk.build_model("mlp", task0.data, hidden=(4,), device="cpu")  # noqa: E731

    def train(m):
        calls.append(1)
        return {"answer": 42}

    m = uk.cached({"a": [1, 2]}, build, train, cache_dir=tmp_path, name="thing", verbose=False)
    assert m.zoo_info["answer"] == 42 and "train_seconds" in m.zoo_info
    assert uk.cached(
        {"a": [1, 2]}, build, train, cache_dir=tmp_path, name="thing", verbose=False
    ).zoo_info == {
        "answer": 42,
        "train_seconds": pytest.approx(m.zoo_info["train_seconds"]),
        "planned_units": 0.0,  # what training it costs as planned (nothing: the model was never called)
    }
    uk.cached({"a": [1, 2]}, build, train, cache_dir=tmp_path, name="thing", retrain=True, verbose=False)
    assert len(calls) == 2
    assert zoo.config_key({"a": 1, "b": 2}) == zoo.config_key({"b": 2, "a": 1})
    assert zoo.config_key({"a": 1}) != zoo.config_key({"a": 2})


def test_verbose_messages(task0, data_root, capsys):
    uk.train_or_load(task0, "original", **{**KW, "verbose": True})
    assert "[zoo] trained and saved digits" in capsys.readouterr().out
    uk.train_or_load(task0, "original", **{**KW, "verbose": True})
    assert "[zoo] loaded digits" in capsys.readouterr().out


def test_code_hash_changes_when_a_source_changes(tmp_path, monkeypatch):
    from unlearnkit import fingerprint

    src = tmp_path / "recipe.py"
    src.write_text("def train():\n    return 1\n")
    a = fingerprint.code_hash(src)
    assert fingerprint.code_hash(src) == a and len(a) == 16
    src.write_text("def train():\n    return 2\n")
    assert fingerprint.code_hash(src) != a
    assert fingerprint.code_hash(src, src) != fingerprint.code_hash(src)
    # modules and functions hash their source text
    real = fingerprint._source
    mod, fn = fingerprint.code_hash(zoo), fingerprint.code_hash(zoo.train_or_load)
    monkeypatch.setattr(fingerprint, "_source", lambda obj: real(obj) + "\n# edited\n")
    assert fingerprint.code_hash(zoo) != mod and fingerprint.code_hash(zoo.train_or_load) != fn


def test_model_trained_by_other_code_is_not_loaded(task0, data_root, count_fits, monkeypatch):
    from unlearnkit import fingerprint

    a = uk.train_or_load(task0, "original", **KW)
    assert '"code": "%s"' % fingerprint.training_code() in torch.load(a.zoo_path, weights_only=True)["config"]
    real = zoo.training_code
    monkeypatch.setattr(zoo, "training_code", lambda: "0123456789abcdef")  # the training code changed
    b = uk.train_or_load(task0, "original", **KW)
    assert b.zoo_cached is False and b.zoo_path != a.zoo_path and len(count_fits) == 2
    monkeypatch.setattr(zoo, "training_code", real)
    assert uk.train_or_load(task0, "original", **KW).zoo_path == a.zoo_path
    # the module of a batch hook is part of the key too
    hook = lambda xb, yb, e, s: (xb, yb)  # noqa: E731
    h = uk.train_or_load(task0, "original", hook=hook, tag="identity", **KW)
    monkeypatch.setattr(zoo, "_hook_code", lambda hook: "0123456789abcdef")
    assert uk.train_or_load(task0, "original", hook=hook, tag="identity", **KW).zoo_path != h.zoo_path
