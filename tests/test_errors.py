"""Bad inputs get clear errors that say what went wrong and what to do, never a deep traceback
or a silently wrong result."""

import urllib.error

import pytest
import torch
from conftest import tiny_mlp

import unlearnkit as uk
from unlearnkit.data import Dataset
from unlearnkit.methods._registry import REGISTRY, register


@pytest.fixture(scope="module")
def m(digits):
    return tiny_mlp(digits, hidden=(8,))


# (id, callable(digits, task0, m), exception, message pattern)
CASES = [
    (
        "unknown dataset",
        lambda d, t, m: uk.load_dataset("imagenet-zz"),
        ValueError,
        r"Unknown dataset 'imagenet-zz'\. Known: digits, digits-super, mnist",
    ),
    (
        "dataset name not a string",
        lambda d, t, m: uk.load_dataset(3),
        TypeError,
        r"expects a dataset name or folder path, got int",
    ),
    ("unknown toy", lambda d, t, m: uk.make_toy("spirals"), ValueError, r"Unknown toy 'spirals'"),
    (
        "unknown model",
        lambda d, t, m: uk.build_model("resnet999", d),
        ValueError,
        r"Unknown model 'resnet999': choose one of mlp, cnn",
    ),
    (
        "image model on vectors",
        lambda d, t, m: uk.build_model("cnn", in_shape=(2,), num_classes=2),
        ValueError,
        r"cnn expects image inputs \(C, H, W\).*use model='mlp'",
    ),
    (
        "model without shapes",
        lambda d, t, m: uk.build_model("mlp"),
        ValueError,
        r"needs a dataset or both in_shape and num_classes",
    ),
    (
        "vit patch",
        lambda d, t, m: uk.build_model("vit", in_shape=(3, 10, 10), num_classes=2, patch=4),
        ValueError,
        r"patch size 4 must divide the input size 10x10",
    ),
    (
        "rebuild a foreign model",
        lambda d, t, m: uk.rebuild(torch.nn.Linear(2, 2)),
        ValueError,
        r"not made by unlearnkit\.build_model",
    ),
    (
        "class out of range",
        lambda d, t, m: uk.forget_classes(d, 10),
        ValueError,
        r"Class 10 is out of range: digits.* has classes 0\.\.9",
    ),
    (
        "negative class",
        lambda d, t, m: uk.forget_classes(d, [2, -1]),
        ValueError,
        r"Class -1 is out of range",
    ),
    ("no class given", lambda d, t, m: uk.forget_classes(d, []), ValueError, r"No class to forget was given"),
    (
        "every class",
        lambda d, t, m: uk.forget_classes(d, range(10)),
        ValueError,
        r"Forgetting every class leaves nothing to retain",
    ),
    (
        "empty instance list",
        lambda d, t, m: uk.forget_instances(d, []),
        ValueError,
        r"The forget set is empty",
    ),
    (
        "every instance",
        lambda d, t, m: uk.forget_instances(d, range(len(d.y_train))),
        ValueError,
        r"The forget set is the whole training set",
    ),
    (
        "instance out of range",
        lambda d, t, m: uk.forget_instances(d, [0, len(d.y_train)]),
        IndexError,
        r"Forget indices must lie in \[0, 299\)",
    ),
    ("negative instance", lambda d, t, m: uk.forget_instances(d, [-3]), IndexError, r"must lie in \[0, "),
    (
        "random n too large",
        lambda d, t, m: uk.forget_random(d, len(d.y_train)),
        ValueError,
        r"n must lie in 1\.\.298",
    ),
    ("random n zero", lambda d, t, m: uk.forget_random(d, 0), ValueError, r"n must lie in 1\.\."),
    (
        "sub-class without fine labels",
        lambda d, t, m: uk.forget_subclass(d, 3),
        ValueError,
        r"has no sub-class labels; sub-class forgetting needs e\.g\. 'cifar20'",
    ),
    (
        "unknown access level",
        lambda d, t, m: t.view("admin"),
        ValueError,
        r"Unknown access level 'admin': choose one of \['full', 'retain'",
    ),
    (
        "retain subset of zero",
        lambda d, t, m: t.retain_subset(0),
        ValueError,
        r"n_per_class must be positive",
    ),
    (
        "unknown profile",
        lambda d, t, m: uk.profile("turbo", quiet=True),
        ValueError,
        r"Unknown profile 'turbo': choose one of smoke, quick, full",
    ),
    (
        "config missing a profile",
        lambda d, t, m: uk.config({"smoke": {}, "quick": {}}),
        ValueError,
        r"config\(\) needs settings for every profile; missing: \['full'\]",
    ),
    (
        "wrong input shape",
        lambda d, t, m: uk.predict(m, torch.rand(2, 3, 32, 32)),
        ValueError,
        r"Input shape \(3, 32, 32\) does not match the model's input shape \(1, 8, 8\)",
    ),
    (
        "wrong input shape in fit",
        lambda d, t, m: uk.fit(uk.clone(m), torch.rand(4, 64), torch.zeros(4).long()),
        ValueError,
        r"Input shape \(64,\) does not match",
    ),
    (
        "integer images",
        lambda d, t, m: uk.predict(m, (d.x_test * 255).long()),
        TypeError,
        r"Inputs must be floating point in \[0, 1\], got torch\.int64",
    ),
    (
        "negative epochs",
        lambda d, t, m: uk.fit(uk.clone(m), d.x_train, d.y_train, epochs=-1),
        ValueError,
        r"epochs must be (an integer )?>= 0, got -1",
    ),
    (
        "empty training set",
        lambda d, t, m: uk.fit(uk.clone(m), d.x_train[:0], d.y_train[:0]),
        ValueError,
        r"Cannot train on an empty set",
    ),
    (
        "unknown optimizer",
        lambda d, t, m: uk.fit(uk.clone(m), d.x_train, d.y_train, optimizer="lbfgs"),
        ValueError,
        r"Unknown optimizer 'lbfgs': choose sgd, adam or adamw",
    ),
    (
        "unknown schedule",
        lambda d, t, m: uk.fit(uk.clone(m), d.x_train, d.y_train, schedule="warm"),
        ValueError,
        r"Unknown schedule 'warm'",
    ),
    (
        "non-positive lr",
        lambda d, t, m: uk.fit(uk.clone(m), d.x_train, d.y_train, lr=0.0),
        ValueError,
        r"learning rate must be a positive number, got 0\.0",
    ),
    (
        "batch size zero",
        lambda d, t, m: list(uk.batches(d.x_train, batch_size=0)),
        ValueError,
        r"batch_size must be (a )?positive( integer)?, got 0",
    ),
    ("subset size zero", lambda d, t, m: d.subset(n_train=0), ValueError, r"subset sizes must be positive"),
    (
        "bad Fisher kind",
        lambda d, t, m: uk.diag_fisher(m, d.x_train[:4], d.y_train[:4], kind="hessian"),
        ValueError,
        r"Unknown Fisher kind 'hessian': choose one of \('empirical', 'true', 'batch'\)",
    ),
    (
        "empirical Fisher without labels",
        lambda d, t, m: uk.diag_fisher(m, d.x_train[:4], kind="empirical"),
        ValueError,
        r"The empirical Fisher needs labels y; use kind='true'",
    ),
    (
        "Fisher of nothing",
        lambda d, t, m: uk.diag_fisher(m, d.x_train[:0], d.y_train[:0]),
        ValueError,
        r"needs at least one sample",
    ),
    (
        "unknown Fisher method",
        lambda d, t, m: uk.diag_fisher(m, d.x_train[:2], d.y_train[:2], method="magic"),
        ValueError,
        r"Unknown method 'magic': choose .*'vmap'.*'loop'",
    ),
    (
        "MAS of nothing",
        lambda d, t, m: uk.mas_importance(m, d.x_train[:0]),
        ValueError,
        r"needs at least one sample",
    ),
    (
        "Fisher on wrong shape",
        lambda d, t, m: uk.diag_fisher(m, torch.rand(2, 5), kind="true"),
        ValueError,
        r"Input shape \(5,\) does not match",
    ),
    (
        "hook without tag",
        lambda d, t, m: uk.train_or_load(t, "original", model="mlp", hook=lambda *a: a[:2]),
        ValueError,
        r"A batch hook changes training, so give it a tag=\.\.\.",
    ),
    (
        "zoo which",
        lambda d, t, m: uk.train_or_load(t, "finetuned"),
        ValueError,
        r"which must be 'original' or 'retrain', got 'finetuned'",
    ),
    (
        "retrain needs a task",
        lambda d, t, m: uk.train_or_load(d, "retrain"),
        ValueError,
        r"A retrain model needs a task",
    ),
    (
        "unknown method",
        lambda d, t, m: uk.get_method("forget_everything"),
        ValueError,
        r"Unknown method 'forget_everything': registered are",
    ),
    (
        "register with unknown access",
        lambda d, t, m: register("x", access="root"),
        ValueError,
        r"Unknown access level 'root'",
    ),
    (
        "model of another kind",
        lambda d, t, m: uk.methods.finetune("model.pt", t),
        TypeError,
        r"finetune: the first argument must be a torch model, got str",
    ),
    (
        "weight distance across architectures",
        lambda d, t, m: uk.weight_distance(m, tiny_mlp(d, hidden=(4,))),
        ValueError,
        r"The models differ at 'net\.net\.1\.weight'",
    ),
    (
        "CKA of different samples",
        lambda d, t, m: uk.linear_cka(torch.rand(3, 2), torch.rand(4, 2)),
        ValueError,
        r"row counts differ",
    ),
    (
        "relearn definition",
        lambda d, t, m: uk.relearn_time(m, t, 50.0, definition="fast"),
        ValueError,
        r"definition must be 'unsir' or 'mask'",
    ),
    (
        "evaluate nothing",
        lambda d, t, m: uk.evaluate({}, t),
        (TypeError, ValueError),
        r"evaluate\(\) needs (at least one model|a model or a non-empty dict)",
    ),
    (
        "runtime of a plain model",
        lambda d, t, m: uk.runtime(m),
        ValueError,
        r"not produced by a registered unlearning method",
    ),
    (
        "labels and inputs differ",
        lambda d, t, m: Dataset(
            "bad", torch.rand(3, 2), torch.zeros(2), torch.rand(1, 2), torch.zeros(1), ["a"]
        ),
        ValueError,
        r"bad: train has 3 inputs but 2 labels",
    ),
    (
        "repeated instances",
        lambda d, t, m: uk.forget_instances(d, [5, 5, 5]),
        ValueError,
        r"forget_instances got repeated indices: 5 \(3x\)\. Give each training sample once",
    ),
    (
        "instance index not an integer",
        lambda d, t, m: uk.forget_instances(d, [2, "7"]),
        ValueError,
        r"Instances are given by integer index, got '7' \(str\)",
    ),
    (
        "random n as text",
        lambda d, t, m: uk.forget_random(d, "10"),
        ValueError,
        r"n is a number of samples \(an integer\) or a fraction in \(0, 1\), got '10' \(str\)",
    ),
    (
        "random fraction above one",
        lambda d, t, m: uk.forget_random(d, 1.5),
        ValueError,
        r"n is a number of samples \(an integer in 1\.\.298\) or a fraction in \(0, 1\), got 1\.5\. "
        r"For 10% of the training set write 0\.1",
    ),
    (
        "random n as bool",
        lambda d, t, m: uk.forget_random(d, True),
        ValueError,
        r"n is a number of samples .* got True \(bool\)",
    ),
    (
        "class as bool",
        lambda d, t, m: uk.forget_classes(d, True),
        ValueError,
        r"A class is an integer id or a class name, got True \(a bool\)",
    ),
    (
        "unknown class name",
        lambda d, t, m: uk.forget_classes(d, ["zero"]),
        ValueError,
        r"Unknown class name 'zero': digits\S* has the classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9",
    ),
    (
        "class as float",
        lambda d, t, m: uk.forget_classes(d, [2.0]),
        ValueError,
        r"A class is an integer id or a class name, got 2\.0 \(float\)",
    ),
    (
        "sub-class as float",
        lambda d, t, m: uk.forget_subclass(uk.load_dataset("digits-super", device="cpu"), 3.0),
        ValueError,
        r"A sub-class is a fine class name or its index, got 3\.0",
    ),
    (
        "stratified sample of nothing",
        lambda d, t, m: uk.data.stratified_indices(d.y_train, n=0),
        ValueError,
        r"n must be positive \(a whole number >= 1\), got 0",
    ),
    (
        "stratified total and per class",
        lambda d, t, m: uk.data.stratified_indices(d.y_train, n=5, n_per_class=1),
        ValueError,
        r"Give n \(the total number of samples\) or n_per_class, not both",
    ),
    (
        "subset size not an integer",
        lambda d, t, m: d.subset(n_train=2.5),
        ValueError,
        r"subset sizes must be positive integers, got n_train=2\.5",
    ),
    (
        "folder for a non-torchvision dataset",
        lambda d, t, m: uk.load_dataset("moons", folder="/tmp"),
        ValueError,
        r"folder=\.\.\. stands in for one of mnist, fashion-mnist, cifar10",
    ),
    (
        "view widened",
        lambda d, t, m: t.view("forget", "probe").view("full"),
        uk.AccessError,
        r"probe sees the task with access 'forget': the forget set D_f only \(zero-shot\)\. A view can "
        r"only be narrowed, never widened to 'full'",
    ),
    (
        "view re-wrapped wider",
        lambda d, t, m: uk.TaskView(t.view("retain_subset", "unsir"), "retain", "finetune"),
        uk.AccessError,
        r"finetune needs access 'retain' \(the retain set D_r\), but it was handed the task as unsir "
        r"sees it \(access 'retain_subset'",
    ),
    (
        "as_task of a narrow view",
        lambda d, t, m: uk.access.as_task(t.view("forget", "jit")),
        uk.AccessError,
        r"as_task\(\) hands out the whole task only from a full-access view; this view is jit's, with access "
        r"'forget'",
    ),
    (
        "method given a dataset",
        lambda d, t, m: uk.methods.finetune(m, d),
        TypeError,
        r"finetune expects a task \(uk\.forget_classes, forget_random, \.\.\.\), got Dataset\. Build a "
        r"task from it first",
    ),
    (
        "empty test split",
        lambda d, t, m: Dataset(
            "bad", torch.rand(3, 2), torch.zeros(3), torch.rand(0, 2), torch.zeros(0), ["a"]
        ),
        ValueError,
        r"bad: the test split is empty",
    ),
]


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(digits, task0, m, call, exc, match):
    with pytest.raises(exc, match=match):
        call(digits, task0, m)


def test_there_are_many_bad_inputs_covered():
    assert len(CASES) >= 20


# ----------------------------------------------------------------------------- offline and missing files


def test_offline_download_names_the_embedded_dataset(data_root, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **k):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    with pytest.raises(
        uk.DatasetUnavailableError,
        match=r"(?s)Dataset 'mnist' is not under .* could not be downloaded \(URLError.*"
        r"Are you offline\?.*load_dataset\('digits'\)",
    ):
        uk.load_dataset("mnist")


def test_offline_cifar_through_the_network_guard(data_root):
    # no monkeypatched class: the real torchvision download meets the tests' network guard
    with pytest.raises(
        uk.DatasetUnavailableError, match=r"(?s)cifar10.*network access is disabled.*load_dataset\('digits'\)"
    ):
        uk.load_dataset("cifar10")


def test_download_that_leaves_no_files(data_root, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "SVHN", lambda *a, **k: None)
    with pytest.raises(
        uk.DatasetUnavailableError, match=r"Download of 'svhn' finished but its files are not in"
    ):
        uk.load_dataset("svhn")


def test_no_download_allowed(data_root):
    with pytest.raises(
        uk.DatasetUnavailableError,
        match=r"Dataset 'fashion-mnist' is not under .* download=False.*load_dataset\('digits'\)",
    ):
        uk.load_dataset("fashion-mnist", download=False)


def test_imagefolder_errors(tmp_path):
    (tmp_path / "half" / "train" / "a").mkdir(parents=True)
    with pytest.raises(
        ValueError,
        match=r"is not an ImageFolder dataset: it needs train/<class>/\*\.jpg and "
        r"test/<class>/\*\.jpg",
    ):
        uk.load_dataset(str(tmp_path / "half"))
    with pytest.raises(ValueError, match=r"ImageFolder path .*missing does not exist"):
        uk.load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty/train holds no images"):
        uk.load_dataset(str(tmp_path / "empty"))


def test_unknown_sub_class_names_and_ids():
    d = Dataset(
        "tiny20",
        torch.rand(4, 3, 2, 2),
        torch.tensor([0, 0, 1, 1]),
        torch.rand(2, 3, 2, 2),
        torch.tensor([0, 1]),
        ["animals", "vehicles"],
        fine_train=torch.tensor([0, 1, 2, 3]),
        fine_test=torch.tensor([0, 2]),
        fine_classes=["cat", "dog", "car", "rocket"],
    )
    with pytest.raises(ValueError, match=r"Unknown sub-class 'tank'; tiny20 has e\.g\. \['cat'"):
        uk.forget_subclass(d, "tank")
    with pytest.raises(ValueError, match=r"Sub-class 9 is out of range 0\.\.3"):
        uk.forget_subclass(d, 9)


# ----------------------------------------------------------------------------- weights and checkpoints


def test_nan_weights_are_refused(m, task0):
    bad = uk.clone(m)
    with torch.no_grad():
        bad.net.net[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite weights in 'net\.net\.1\.weight' \(NaN or inf\)"):
        uk.check_finite(bad)
    with pytest.raises(ValueError, match=r"model given to neggrad has non-finite weights"):
        uk.methods.neggrad(bad, task0)


def test_diverging_training_stops_with_advice(digits):
    model = tiny_mlp(digits, hidden=(8,))
    with pytest.raises(ValueError, match=r"diverged at step \d+ \(epoch \d+\).*lower the learning rate"):
        uk.fit(model, digits.x_train, digits.y_train, epochs=20, lr=1e12, momentum=0.9, schedule="constant")


def test_corrupt_checkpoint_warns_and_retrains(task0, data_root):
    import struct
    import zipfile

    kw = dict(model="mlp", model_kwargs={"hidden": (8,)}, epochs=1, verbose=False, progress=False)
    good = uk.train_or_load(task0, "original", **kw)
    with zipfile.ZipFile(good.zoo_path) as z:  # flip one byte inside the first weight tensor
        rec = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(open(good.zoo_path, "rb").read())
    name_len, extra_len = struct.unpack("<HH", raw[rec.header_offset + 26 : rec.header_offset + 30])
    start = rec.header_offset + 30 + name_len + extra_len  # the tensor's bytes (stored uncompressed)
    raw[start + 17] ^= 0xFF
    open(good.zoo_path, "wb").write(bytes(raw))
    with pytest.warns(
        uk.CorruptCheckpointWarning,
        match=r"(?s)Checkpoint .* is unreadable or corrupt .*CRC-32.*Retraining it now",
    ):
        again = uk.train_or_load(task0, "original", **kw)
    assert not again.zoo_cached
    uk.check_finite(again)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), good.parameters()))


def test_method_beyond_its_access_is_stopped(m, task0):
    @register("greedy_for_errors", access="retain_subset")
    def greedy(model, task):
        task.forget_set()
        return model

    try:
        with pytest.raises(
            uk.AccessError,
            match=r"greedy_for_errors may see a small subset of the retain set, never "
            r"forget images \(access level 'retain_subset'\), but it asked for "
            r"task\.forget_set",
        ):
            greedy(m, task0)
    finally:
        REGISTRY.pop("greedy_for_errors", None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_that_is_not_there(monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_DEVICE", "cuda")
    monkeypatch.setattr(uk.profiles, "_ACTIVE", None)  # the variable is read while no profile is active
    with pytest.raises(RuntimeError, match=r"A CUDA device was asked for but torch sees no GPU.*Colab"):
        uk.get_device()
