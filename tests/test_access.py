"""A method sees a task only through its view, and no route leads from the view to the task.

Every test takes a view with access "forget" (what JiT or boundary shrinking get) and tries
one way out.
"""

import copy
import pickle
import re

import pytest
import torch

import unlearnkit as uk
from unlearnkit.access import ACCESS, TaskView, _unwrap, as_task
from unlearnkit.data import Dataset
from unlearnkit.methods._registry import REGISTRY, register
from unlearnkit.tasks import Task


@pytest.fixture
def view(task0):
    return task0.view("forget", method="zero_shot")


def leads_to_task(value, task) -> bool:
    return value is task or value is task.data or isinstance(value, (Task, Dataset))


# ----------------------------------------------------------------------------- what a forget view shows


def test_forget_view_shows_the_forget_set_and_the_problem_shape(view, task0):
    xf, yf = view.forget_set()
    assert torch.equal(xf, task0.data.x_train[task0.forget_idx]) and (yf == 0).all()
    assert view.num_classes == 10 and view.input_shape == (1, 8, 8) and view.augment is False
    assert view.kind == "class" and view.name == "forget class 0" and view.subclass is None
    assert view.forget_classes == [0] and view.retain_classes == list(range(1, 10))
    assert view.access == "forget" and view.method == "zero_shot"
    assert torch.equal(view.forget_idx, task0.forget_idx) and view.fingerprint == task0.fingerprint


def test_handed_out_tensors_are_copies(view, task0):
    xf, _ = view.forget_set()
    assert xf.untyped_storage().data_ptr() != task0.data.x_train.untyped_storage().data_ptr()
    idx = view.forget_idx
    idx[:] = 0  # scribbling on it changes nothing behind the view
    assert not torch.equal(task0.forget_idx, idx)


# ----------------------------------------------------------------------------- one test per way out


def test_asking_for_a_wider_view(view):
    for wider in ("full", "retain", "forget+retain", "forget+retain_subset", "retain_subset"):
        with pytest.raises(
            uk.AccessError,
            match=rf"zero_shot sees the task with access 'forget'.*never widened to '{re.escape(wider)}'",
        ):
            view.view(wider)
    narrow = view.view("class_ids")
    assert narrow.access == "class_ids" and narrow.forget_classes == [0]
    with pytest.raises(uk.AccessError):
        narrow.forget_set()
    with pytest.raises(uk.AccessError):
        narrow.view("forget")  # narrowed once, narrow for good


def test_reading_the_data(view):
    with pytest.raises(
        uk.AccessError, match=r"zero_shot may see the forget set D_f only .*asked for task\.data"
    ):
        view.data


@pytest.mark.parametrize(
    "reader", ["retain_set", "retain_subset", "test_forget", "test_retain", "test_set", "train_set"]
)
def test_reading_beyond_the_level(view, reader):
    with pytest.raises(uk.AccessError, match=rf"asked for task\.{reader}"):
        getattr(view, reader)()


@pytest.mark.parametrize("index", ["retain_idx", "test_forget_idx", "test_retain_idx"])
def test_reading_indices_beyond_the_level(view, index):
    with pytest.raises(uk.AccessError, match=rf"asked for task\.{index}"):
        getattr(view, index)


def test_as_task(view, task0):
    with pytest.raises(
        uk.AccessError, match=r"as_task\(\) hands out the whole task only from a full-access view"
    ):
        as_task(view)
    assert as_task(task0) is task0  # evaluation code passes plain tasks
    assert as_task(task0.view("full")) is task0


@pytest.mark.parametrize("name", ["_task", "task", "_take", "__post_init__"])
def test_private_names(view, name):
    with pytest.raises((uk.AccessError, AttributeError)):
        getattr(view, name)
    if not name.startswith("__"):
        with pytest.raises(uk.AccessError, match=rf"never the task behind it \('{name}'\)"):
            getattr(view, name)


def test_the_private_reader_reads_only_what_the_view_shows(view):
    for name in ("_take", "__post_init__", "__class__", "view", "data", "retain_set"):
        with pytest.raises(uk.AccessError):
            view._get(name)
    assert view._get("num_classes") == 10


def test_every_name_on_the_view(view, task0):
    """Whatever dir(view) lists either refuses or hands out something that is not the task."""
    for name in dir(view):
        if name.startswith("__") and name not in ("__dict__", "__slots__"):
            continue
        try:
            value = getattr(view, name)
        except (uk.AccessError, AttributeError):
            continue
        assert not leads_to_task(value, task0), name
        assert not leads_to_task(getattr(value, "__self__", None), task0), name
        if isinstance(value, (tuple, list)):
            assert not any(leads_to_task(v, task0) for v in value), name


def test_vars_and_dict(view, task0):
    with pytest.raises(TypeError):
        vars(view)
    with pytest.raises(AttributeError):
        view.__dict__
    assert all(s == "__weakref__" for s in TaskView.__slots__)
    assert view.forget_set.__self__ is view  # a bound reader leads back to the view only


def test_rewriting_the_view(view):
    with pytest.raises(AttributeError, match="read-only"):
        view.access = "full"
    with pytest.raises(AttributeError):
        object.__setattr__(view, "access", "full")
    with pytest.raises(AttributeError, match="read-only"):
        del view.method
    with pytest.raises(AttributeError):
        view.__class__ = Task
    with pytest.raises(AttributeError, match="initialised twice"):
        view.__init__(view, "full", "zero_shot")
    assert view.access == "forget"


def test_rewrapping_a_view(view):
    for wider in ("full", "retain", "forget+retain"):
        with pytest.raises(
            uk.AccessError,
            match=rf"other needs access '{re.escape(wider)}'.*handed the task as zero_shot sees "
            r"it \(access 'forget'",
        ):
            TaskView(view, wider, "other")
    same = TaskView(view, "forget", "other")
    assert same.access == "forget" and same.method == "other" and len(same.forget_set()[0]) == 30
    assert TaskView(view, "none", "other").num_classes == 10
    with pytest.raises(uk.AccessError):
        TaskView(view, "none", "other").forget_classes


def test_copies_and_pickles(view):
    assert copy.copy(view) is view and copy.deepcopy(view) is view
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(view)


def test_a_view_of_nothing_hides_even_the_class_ids(task0):
    v = task0.view("none", "blind")
    assert v.num_classes == 10 and v.kind == "class"
    for name in ("forget_classes", "retain_classes", "fingerprint", "forget_idx"):
        with pytest.raises(uk.AccessError, match=rf"asked for task\.{name}"):
            getattr(v, name)


def test_only_tasks_are_viewed(digits):
    with pytest.raises(TypeError, match=r"expects a task .*got Dataset\. Build a task from it first"):
        TaskView(digits, "forget", "m")
    with pytest.raises(TypeError, match=r"got str"):
        TaskView("task", "forget", "m")
    with pytest.raises(ValueError, match=r"Unknown access level 'root'"):
        TaskView(uk.forget_classes(digits, 0), "root", "m")


# ---------------------------------------------------------------------------- the registry and nested methods


def test_unwrap_hands_tasks_and_views_on_as_they_are(task0, view, digits):
    assert _unwrap(task0) is task0 and _unwrap(view) is view
    with pytest.raises(TypeError, match=r"got Dataset\. Build a task from it first"):
        _unwrap(digits)
    # what the registry builds from it: a plain task gets any level, a view only a narrower one
    assert TaskView(_unwrap(task0), "full", "m").access == "full"
    with pytest.raises(uk.AccessError):
        TaskView(_unwrap(view), "retain", "m")


@pytest.fixture
def probes():
    seen = {}

    def make(name, access, then=None):
        @register(name, access=access)
        def probe(model, task):
            seen[name] = (type(task).__name__, task.access)
            if then is not None:
                return then(model, task)
            return model

        return probe

    yield make, seen
    for name in ("probe_inner_full", "probe_inner_class_ids", "probe_outer", "probe_outer2", "probe_plain"):
        REGISTRY.pop(name, None)


def test_registered_method_gets_a_view_of_a_plain_task(m, task0, probes):
    make, seen = probes
    plain = make("probe_plain", "retain")
    out = plain(m, task0)
    assert seen["probe_plain"] == ("TaskView", "retain") and out.unlearn_info["access"] == "retain"


def test_a_method_cannot_widen_its_view_by_calling_another(m, task0, probes):
    make, seen = probes
    inner_full = make("probe_inner_full", "full")
    outer = make("probe_outer", "forget", then=lambda model, task: inner_full(model, task))
    with pytest.raises(
        uk.AccessError,
        match=r"probe_inner_full needs access 'full'.*handed the task as "
        r"probe_outer sees it \(access 'forget'",
    ):
        outer(m, task0)
    inner_ids = make("probe_inner_class_ids", "class_ids")
    outer2 = make("probe_outer2", "forget", then=lambda model, task: inner_ids(model, task))
    outer2(m, task0)
    assert seen["probe_inner_class_ids"] == ("TaskView", "class_ids")


@pytest.fixture(scope="module")
def m(digits):
    from conftest import tiny_mlp

    return tiny_mlp(digits, hidden=(4,))


@pytest.mark.parametrize("access", list(ACCESS))
def test_narrowing_follows_the_table(task0, access):
    full = task0.view("full", "m")
    for inner in ACCESS:
        wider = (
            inner == "full"
            and access != "full"
            or inner != "full"
            and not ACCESS[inner] <= ACCESS[access]
            and access != "full"
        )
        if wider:
            with pytest.raises(uk.AccessError):
                full.view(access).view(inner)
        else:
            assert full.view(access).view(inner).access == inner
