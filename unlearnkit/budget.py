"""What a run costs, in ResNet-18 CIFAR-10 epoch-equivalents (EE), counted from the model calls.

One EE is 50,000 images forward and backward through the CIFAR ResNet-18 of
:func:`unlearnkit.build_model` (``"resnet18"``, 10 classes, 3×32×32): a training epoch of
CIFAR-10. A forward pass alone counts a third of a forward-and-backward one. Every call of a
library model (a module built by :func:`unlearnkit.build_model`, which carries ``model.arch``)
is counted: the images of the batch × the model's multiply-accumulates per image (:func:`macs`,
counted from the model's convolutions and linear layers on one input, not read from a table) ×
3 when the call records a graph for a backward pass, 1 otherwise; divided by the same for one
EE (:func:`reference_macs`).

Each call counts towards one of four kinds (:data:`KINDS`): ``train`` (the zoo training an
original or a retrained model), ``unlearn`` (a registered method, whatever it computes inside),
``eval`` (:func:`unlearnkit.evaluate`) and ``relearn`` (:func:`unlearnkit.relearn_time`); a call
outside these counts as ``train`` with a backward pass and as ``eval`` without one. Code marks
its kind with ``with budget.kind("unlearn"): ...``.

:func:`ledger` holds the counts of this process; :func:`snapshot` turns them into EE. The book
runner (``python -m unlearnkit.book``) collects each chapter's into ``budget.json`` and prints a
table.

**Planned cost in a dry run.** A dry run caps its loops (two steps, training batches of 16, 160
images per split, one seed and one forget item of each list), so what it runs is not what the
profile plans. Each capped loop knows what it would have run and scales what it counted to that
(:func:`loop`, :func:`commit`):

* the **data**: a capped dataset remembers how much larger it was (``meta["dry_run_scale"]``,
  the same factor for its training and test splits), and a model built for it carries that
  factor (``model.dry_run_scale``); a pass over data counts that many times its images.
  Passes whose size does not follow the data (``k`` chosen images, generated noise, a fixed
  number of samples) say so with :func:`data_scale`;
* **training loops** (:func:`unlearnkit.training.descend`): planned steps × planned batch
  (``min(epochs × images per epoch, max_steps × batch)``) against the steps it took; the
  evaluations inside count once per planned epoch;
* **other capped loops** (relearning epochs, PGD iterations, Fisher samples): planned
  iterations against those run;
* **trimmed lists** (:meth:`unlearnkit.profiles.Profile.few`): the work done while iterating
  the kept items counts ``len(planned) / len(kept)`` times.

A loop that would stop early (a stopping rule, relearning that succeeds) counts at its cap.
:func:`snapshot` gives both: the planned EE (``train`` … ``total``) and the counted ones
(``counted``); outside a dry run they are equal.

Explained in the introduction (``book/intro.md``, "What a chapter costs").
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

KINDS = ("train", "unlearn", "eval", "relearn")
EE_IMAGES = 50_000  # images in one epoch-equivalent (CIFAR-10's training set)
CHAPTER_LIMIT = 150.0  # EE a chapter's ``full`` may cost
BOOK_LIMIT = 1000.0  # EE the whole book's ``full`` may cost
BACKWARD_FACTOR = 3  # a forward and backward pass costs three forward passes
# the model of one EE: the CIFAR ResNet-18 (its ``model.arch``)
REFERENCE = {
    "name": "resnet18",
    "in_shape": [3, 32, 32],
    "num_classes": 10,
    "mean": None,
    "std": None,
    "kwargs": {},
}

_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar("unlearnkit_budget_kind", default=None)
_LOCK = threading.Lock()
_COUNTING = threading.local()  # set while counting MACs: those calls are not part of the run


# ----------------------------------------------------------------------------- multiply-accumulates


def macs(model: nn.Module, input_shape) -> int:
    """Multiply-accumulates of ``model`` for one input of ``input_shape`` (no batch dimension):
    every ``Conv2d`` (output elements × input channels per group × kernel area) and ``Linear``
    (output elements × input features), counted on one forward pass of a zero input in eval
    mode. Normalisation, activations and pooling are not counted (they are a few % of a CNN)."""
    total = [0]

    def count(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * k
        elif isinstance(mod, nn.Linear):
            total[0] += out[0].numel() * mod.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    p = next(model.parameters(), None)
    x = torch.zeros((1, *tuple(int(s) for s in input_shape)), device=p.device if p is not None else "cpu")
    _COUNTING.on = True
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        _COUNTING.on = False
        model.train(was)
        for h in hooks:
            h.remove()
    return int(total[0])


@functools.lru_cache(maxsize=None)
def arch_macs(arch: str) -> int:
    """:func:`macs` of a library model from its ``model.arch`` (given as ``repr`` of its sorted
    items), counted on a fresh CPU twin: the caller's model, its hooks and the random state are
    left alone."""
    import ast

    from .models import build_model

    a = dict(ast.literal_eval(arch))
    with torch.random.fork_rng(devices=[]):
        twin = build_model(
            a["name"],
            in_shape=a["in_shape"],
            num_classes=a["num_classes"],
            mean=a["mean"],
            std=a["std"],
            device="cpu",
            **a["kwargs"],
        )
    return macs(twin, a["in_shape"])


def _key(arch: dict) -> str:
    return repr(sorted(arch.items()))


def reference_macs() -> int:
    """Multiply-accumulates of the CIFAR ResNet-18 for one 3×32×32 image (counted, once)."""
    return arch_macs(_key(REFERENCE))


def ee(images: float, model_macs: float, backward: bool) -> float:
    """EE of ``images`` through a model of ``model_macs`` per image, with or without backward."""
    units = BACKWARD_FACTOR if backward else 1
    return images * model_macs * units / (EE_IMAGES * reference_macs() * BACKWARD_FACTOR)


# ----------------------------------------------------------------------------- the ledger


class Ledger:
    """Counts of one process: forward image-MACs per kind (3 per image for a backward pass), as
    run (``units``) and as planned (``planned``: scaled by the dry run's caps), and the wall
    time since :meth:`reset`."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.units = dict.fromkeys(KINDS, 0.0)
        self.planned = dict.fromkeys(KINDS, 0.0)
        self.reused = 0.0
        self.calls = dict.fromkeys(KINDS, 0)
        _TRAINED.clear()
        _REUSED.clear()
        _CHARGED.clear()
        _SETTLED.clear()
        _BATCH_CAP.update(capped=0, ratio=1.0)
        self.started = time.perf_counter()

    def add(self, kind: str, images: int, model_macs: int, backward: bool, scale: float = 1.0) -> None:
        units = float(images) * model_macs * (BACKWARD_FACTOR if backward else 1)
        with _LOCK:
            self.units[kind] += units
            self.calls[kind] += 1
        _add_planned(_FRAME.get(), kind, units * scale)


# ----------------------------------------------------------------------------- planned cost (dry run)


class Frame:
    """The planned work counted inside one capped loop, before its factor is known, and the
    trained models it loaded from the zoo (``loaded``: their planned training, once per model;
    the runs the loop left out would have trained their own, see :func:`commit`)."""

    def __init__(self, shared: tuple = ()):
        self.planned = dict.fromkeys(KINDS, 0.0)
        # zoo key -> [planned units, "original"/"retrain"/..., how many such models the run plans]
        self.loaded: dict[str, list] = {}
        self.shared = tuple(shared)  # kinds of model the left-out runs share with the kept ones


_FRAME: contextvars.ContextVar[Frame | None] = contextvars.ContextVar("unlearnkit_budget_frame", default=None)
_DATA: contextvars.ContextVar[float | None] = contextvars.ContextVar("unlearnkit_budget_data", default=None)


def _add_planned(frame: Frame | None, kind: str, units: float) -> None:
    with _LOCK:
        (frame.planned if frame is not None else _LEDGER.planned)[kind] += units


@contextlib.contextmanager
def into(frame: Frame, data: float | None = None):
    """Count the model calls inside the block into ``frame`` (and, with ``data``, with that data
    factor instead of the model's, see :func:`data_scale`)."""
    token = _FRAME.set(frame)
    dtok = _DATA.set(float(data)) if data is not None else None
    try:
        yield frame
    finally:
        if dtok is not None:
            _DATA.reset(dtok)
        _FRAME.reset(token)


_CHARGED: dict = {}  # zoo key -> copies of it counted so far (itself and left-out runs' models)
_TRAINED: set = set()  # zoo keys of the models this process trained
_REUSED: set = set()  # ... and of those it loaded that another process had trained


def trained(key: str, units: float = 0.0, which: str | None = None) -> None:
    """The zoo trained the model ``key`` in this process, at a planned cost of ``units`` (counted
    once as ``train``, whatever loop it was trained in: a loop that stands for runs it left out
    counts their own models as copies of it, see :func:`commit`)."""
    _TRAINED.add(key)
    units = float(units or 0.0)
    if units and key in _planned_elsewhere():  # another chapter's left-out run plans it
        with _LOCK:
            _LEDGER.reused += units
    elif units:
        _add_planned(None, "train", units)
        frame = _FRAME.get()
        if frame is not None:
            frame.loaded.setdefault(key, [units, which, 1.0])


def loaded(key: str, units: float, which: str | None = None) -> None:
    """The zoo loaded the model ``key`` whose planned training is ``units``. A loop that stands
    for runs it left out (:func:`loop`) counts that training once per left-out run, since their
    models differ; a model another process trained counts once as ``reused``: the training
    this chapter, run alone on an empty zoo, would add."""
    units = float(units or 0.0)
    if not units:
        return
    frame = _FRAME.get()
    if frame is not None:
        frame.loaded.setdefault(key, [units, which, 1.0])
    if key not in _TRAINED and key not in _REUSED:
        _REUSED.add(key)
        with _LOCK:
            _LEDGER.reused += units


#: The file in a dry run's zoo that lists the models each chapter's left-out runs plan (one
#: ``key process-id`` per line): the same model planned by a later chapter is reused, not trained.
PLANNED_MODELS_FILE = "planned-models.txt"
_SETTLED: set = set()  # keys of left-out runs' models this process has settled


def _planned_models_path() -> Path:
    from . import profiles

    return Path(profiles.active().zoo_root) / PLANNED_MODELS_FILE


def _planned_elsewhere() -> set:
    """Keys of models another process (an earlier chapter of the same dry run) planned."""
    path, me = _planned_models_path(), str(os.getpid())
    if not path.exists():
        return set()
    return {k for k, _, pid in (ln.partition(" ") for ln in path.read_text().splitlines()) if pid != me}


def settle_left_out(models: dict) -> None:
    """The models of the runs a dry run left out, ``{zoo key: planned units}``, each counted as a
    training by :func:`commit` (as a copy of the kept run's). A model an earlier chapter of the
    same dry run trained or planned is moved from ``train`` to ``reused``; every key is noted in
    the zoo's :data:`PLANNED_MODELS_FILE` for the chapters after. Models this process trained
    or loaded are not copies (the kept runs share them) and are skipped."""
    new = {k: u for k, u in models.items() if k not in _SETTLED and k not in _TRAINED and k not in _REUSED}
    if not new:
        return
    elsewhere = _planned_elsewhere()
    root = _planned_models_path().parent
    for key, units in new.items():
        if key in elsewhere or any(root.glob(f"*-{key}.pt")):
            with _LOCK:
                _LEDGER.planned["train"] -= units
                _LEDGER.reused += units
    _SETTLED.update(new)
    root.mkdir(parents=True, exist_ok=True)
    with open(_planned_models_path(), "a") as f:
        f.write("".join(f"{k} {os.getpid()}\n" for k in new))


def commit(frame: Frame, factor: float) -> None:
    """Add ``factor`` × the work counted in ``frame`` to the enclosing loop (or the ledger). Each
    model it loaded from the zoo stands for ``factor`` models (the left-out runs' own), unless its
    kind is in the frame's ``shared``; at the outermost level every such copy beyond the one
    this run has counts as a training."""
    factor = float(factor) if factor == factor and factor > 0 else 1.0
    parent = _FRAME.get()
    for k, v in frame.planned.items():
        if v:
            _add_planned(parent, k, v * factor)
    for key, (units, which, n) in frame.loaded.items():
        n = n if which in frame.shared else n * factor
        if parent is None:  # the planned copies of a model beyond the one this run has, once:
            # another loop over the same runs (a second spread) stands for the same models
            extra = n - _CHARGED.get(key, 1.0)
            if extra > 0:
                _add_planned(None, "train", extra * units)
                _CHARGED[key] = n
        else:
            have = parent.loaded.get(key)
            parent.loaded[key] = [units, which, max(n, have[2]) if have else n]


@contextlib.contextmanager
def loop(factor=None, shared: tuple = ()):
    """Count the block's model calls as ``factor`` times what they were: a capped loop that would
    have run ``factor`` times longer. ``factor`` is a number or a callable asked at the end of the
    block (when the loop knows how far it got); ``None`` means 1. The runs left out would train
    their own models, except the kinds in ``shared`` (e.g. ``("original",)`` for a loop over
    forget items: every item of a seed unlearns the same original).

    >>> with budget.loop(lambda: planned_epochs / epochs_run): ...
    """
    frame = Frame(shared)
    with into(frame):
        yield frame
    commit(frame, factor() if callable(factor) else (1.0 if factor is None else factor))


@contextlib.contextmanager
def data_scale(factor: float):
    """Inside the block a pass over data counts ``factor`` times its images instead of the
    model's data factor: ``1`` for passes whose size does not follow the dataset (``k`` chosen
    images, generated noise, a fixed number of samples)."""
    token = _DATA.set(float(factor))
    try:
        yield
    finally:
        _DATA.reset(token)


def sampled(n_kept: int, n_wanted: int | None, model: nn.Module | None = None):
    """:func:`data_scale` for a sample of at most ``n_wanted`` items drawn from data: the planned
    run draws ``min(n_wanted, its data's size)``, this one kept ``n_kept`` (``None``: no sample,
    the data factor stands)."""
    if n_wanted is None:
        return contextlib.nullcontext()
    planned = min(float(n_wanted), n_kept * data_factor(model))
    return data_scale(planned / max(1, n_kept))


def data_factor(model: nn.Module | None = None) -> float:
    """How many times larger than in this run a pass over the data would be in the planned run:
    the :func:`data_scale` in force, else the model's ``dry_run_scale``, else 1."""
    f = _DATA.get()
    if f is not None:
        return f
    return float(getattr(model, "dry_run_scale", None) or 1.0)


@contextlib.contextmanager
def quiet():
    """Model calls inside the block are not counted (a dry run measuring an epoch's length)."""
    was = getattr(_COUNTING, "on", False)
    _COUNTING.on = True
    try:
        yield
    finally:
        _COUNTING.on = was


_BATCH_CAP = {"capped": 0, "ratio": 1.0}  # the last training batch a dry run capped


def note_batch_cap(planned: int, capped: int) -> None:
    """Remember that a training batch of ``planned`` samples was capped at ``capped``
    (:func:`unlearnkit.training.train_batch_size`)."""
    _BATCH_CAP.update(capped=int(capped), ratio=max(1.0, float(planned) / max(1, int(capped))))


def batch_ratio(batch: int) -> float:
    """Planned ÷ run batch size for a loop whose batches hold ``batch`` samples: the last noted
    cap when ``batch`` is that capped size, else 1 (the batch was not capped)."""
    return _BATCH_CAP["ratio"] if batch == _BATCH_CAP["capped"] else 1.0


_LEDGER = Ledger()


def ledger() -> Ledger:
    """This process's :class:`Ledger`."""
    return _LEDGER


def snapshot() -> dict:
    """``{kind: EE planned, ..., "total": EE, "reused": EE, "counted": {kind: EE run, ...,
    "total": EE}, "seconds": wall time since the ledger's reset}``. Outside a dry run planned =
    counted. ``reused``: the planned training of the models the zoo already had (a chapter run
    alone, on an empty zoo, costs ``total + reused``)."""
    per = 1.0 / (EE_IMAGES * reference_macs() * BACKWARD_FACTOR)
    out = {k: _LEDGER.planned[k] * per for k in KINDS}
    out["total"] = sum(out.values())
    out["reused"] = _LEDGER.reused * per
    counted = {k: _LEDGER.units[k] * per for k in KINDS}
    counted["total"] = sum(counted.values())
    out["counted"] = counted
    out["seconds"] = time.perf_counter() - _LEDGER.started
    return out


@contextlib.contextmanager
def kind(name: str):
    """Count the model calls inside the block as ``name`` (one of :data:`KINDS`). The outermost
    block decides: a method's evaluation of its own progress is part of the method's cost."""
    if name not in KINDS:
        raise ValueError(f"Unknown budget kind {name!r}: choose one of {KINDS}.")
    token = _KIND.set(_KIND.get() or name)
    try:
        yield
    finally:
        _KIND.reset(token)


def counts(name: str):
    """Decorator: the model calls made inside the function count as ``name`` (:func:`kind`)."""

    def deco(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with kind(name):
                return fn(*args, **kwargs)

        return inner

    return deco


def _batch_size(x) -> int:
    try:
        from torch._C._functorch import get_unwrapped, is_batchedtensor

        while is_batchedtensor(x):  # a per-sample call under torch.func.vmap: the whole batch
            x = get_unwrapped(x)
    except ImportError:  # pragma: no cover - older torch
        pass
    return int(x.shape[0]) if x.dim() > 0 else 1


def _hook(module, args, output) -> None:
    arch = getattr(module, "arch", None)
    if arch is None or getattr(_COUNTING, "on", False) or not args or not torch.is_tensor(args[0]):
        return
    try:
        model_macs = arch_macs(_key(arch))
    except Exception:  # an arch the builders do not know (a hand-made model): not counted
        return
    backward = torch.is_grad_enabled() and torch.is_tensor(output) and output.requires_grad
    k = _KIND.get() or ("train" if backward else "eval")
    _LEDGER.add(k, _batch_size(args[0]), model_macs, backward, scale=data_factor(module))


_HANDLE = nn.modules.module.register_module_forward_hook(_hook)


# ----------------------------------------------------------------------------- files


def write(path: Path, cells: list | None = None) -> None:
    """Write :func:`snapshot` (with ``cells``: what each cell planned) to ``path`` as JSON,
    atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = snapshot()
    if cells:
        doc["cells"] = cells
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def write_after_each_cell(path: Path) -> bool:
    """In an IPython kernel, write :func:`snapshot` to ``path`` after every cell (so the file
    holds the chapter's cost however its kernel ends), with the planned EE of each cell that
    planned at least 0.5 (``cells``: its first line, its EE per kind and in all); ``False``
    outside IPython."""
    try:
        ip = get_ipython()  # noqa: F821  (defined inside IPython only)
    except NameError:
        return False
    cells, last = [], [dict.fromkeys((*KINDS, "total"), 0.0)]

    def after(result=None):
        snap = snapshot()
        if snap["total"] - last[0]["total"] >= 0.5:
            raw = getattr(getattr(result, "info", None), "raw_cell", "") or ""
            first = next((ln.strip() for ln in raw.splitlines() if ln.strip()), "")
            cells.append([first[:80]] + [round(snap[k] - last[0][k], 2) for k in (*KINDS, "total")])
        last[0] = snap
        write(path, cells)

    ip.events.register("post_run_cell", after)
    return True


def collect(folder: Path, names) -> dict:
    """``{chapter: snapshot}`` from the files the chapters ``names`` wrote into ``folder``
    (``<name>.json``, see :func:`write_after_each_cell`); a chapter without a file is left out."""
    out = {}
    for n in names:
        f = Path(folder) / f"{n}.json"
        if f.is_file():
            out[n] = json.loads(f.read_text())
    return out


def save(path: Path, per_chapter: dict, limit: float = CHAPTER_LIMIT) -> None:
    """Write ``{chapter: {kind: EE, "total": EE, "limit": EE, "counted": {...}, "seconds": s}}``
    to ``path`` (EE planned, see :func:`snapshot`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {n: {**s, "limit": limit} for n, s in per_chapter.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def over_limits(
    per_chapter: dict,
    limit: float = CHAPTER_LIMIT,
    book_limit: float = BOOK_LIMIT,
    waived: dict | None = None,
) -> list:
    """One sentence per chapter whose planned EE exceed ``limit``, and one if the book's exceed
    ``book_limit``; empty when every limit holds. Chapters in ``waived`` (default
    :data:`WAIVED`) are left out, and the book's limit with them."""
    waived = WAIVED if waived is None else waived
    out = [
        f"{n} plans {s['total']:.0f} EE, over its limit of {limit:.0f}"
        for n, s in per_chapter.items()
        if s.get("total", 0.0) > limit and n not in waived
    ]
    book = sum(s.get("total", 0.0) for s in per_chapter.values())
    if book > book_limit and not waived:
        out.append(f"the book plans {book:.0f} EE, over its limit of {book_limit:.0f}")
    return out


def table(per_chapter: dict, limit: float = CHAPTER_LIMIT) -> str:
    """A plain-text table of ``{chapter: snapshot}``: planned EE per kind and in all, the limit,
    the EE of the chapter run alone on an empty zoo, the EE this run counted and its wall time."""
    cols = (*KINDS, "total")
    head = (
        f"{'chapter':<28s}"
        + "".join(f"{k:>9s}" for k in cols)
        + f"{'limit':>7s}{'alone':>8s}{'counted':>9s}{'time':>8s}"
    )
    lines = [head, "-" * len(head)]
    for name, s in per_chapter.items():
        cells = "".join(f"{s.get(k, float('nan')):9.1f}" for k in cols)
        ran = s.get("counted", {}).get("total", float("nan"))
        alone = s.get("total", float("nan")) + s.get("reused", 0.0)
        lines.append(
            f"{name:<28s}{cells}{limit:7.0f}{alone:8.1f}{ran:9.3g}{s.get('seconds', float('nan')):7.0f}s"
        )
    book = sum(s.get("total", 0.0) for s in per_chapter.values())
    lines.append(f"{'book':<28s}{'':36s}{book:9.1f}{BOOK_LIMIT:7.0f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the planned table


#: Where the last full dry run's per-chapter table is kept (shipped with the package, so that a
#: chapter opened in Colab knows its planned cost): ``python -m unlearnkit.book --profile full
#: --dry-run --save-budget`` writes it.
PLANNED_FILE = Path(__file__).resolve().parent / "budget_planned.json"

#: Seconds one EE takes on a GPU, for the estimates a chapter prints before the GPU has been
#: timed. ``MEASURED`` lists the ones measured with ``tests/bench_fit.py`` (none yet: the others
#: are estimates from the CIFAR ResNet-18's published throughput with bf16/fp16 and channels-last).
SECONDS_PER_EE = {"H100": 4.0, "A100": 6.0, "T4": 48.0}
MEASURED: dict = {}


def planned(chapter: str | None = None, path: Path | None = None) -> dict:
    """The saved per-chapter table of :data:`PLANNED_FILE` (``{}`` when there is none), or one
    chapter's row (``{}`` when it is not in the table)."""
    f = Path(path) if path is not None else PLANNED_FILE
    try:
        table = json.loads(f.read_text())
    except (OSError, ValueError):
        table = {}
    return table if chapter is None else table.get(chapter, {})


def save_planned(per_chapter: dict, path: Path | None = None) -> Path:
    """Write the planned rows of a full dry run (``{chapter: snapshot}``) into :data:`PLANNED_FILE`;
    the rows of chapters it did not run stay as they were."""
    f = Path(path) if path is not None else PLANNED_FILE
    keep = ("train", "unlearn", "eval", "relearn", "total", "reused")
    doc = planned(path=f)
    doc.update({n: {k: round(float(s.get(k, 0.0)), 2) for k in keep} for n, s in per_chapter.items()})
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=f".{f.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, f)
    return f


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def times_text(ee: float) -> str:
    """``"about 9 min on an H100, 14 min on an A100, 1.9 h on a T4 (estimated)"``."""
    parts = [f"{_duration(ee * s)} on a{'n' if g[0] in 'AH' else ''} {g}" for g, s in SECONDS_PER_EE.items()]
    est = [g for g in SECONDS_PER_EE if g not in MEASURED]
    note = "estimated" if len(est) == len(SECONDS_PER_EE) else f"estimated for {', '.join(est)}"
    return f"about {', '.join(parts)} ({note})" if est else f"about {', '.join(parts)}"


def cost_text(chapter: str, path: Path | None = None) -> str:
    """A chapter's planned ``full`` cost in words, from the saved table: ``"120 EE (ResNet-18
    CIFAR-10 epoch-equivalents), about 8 min on an H100, ... (estimated)"``, and what it costs
    on an empty zoo when other chapters' models serve it."""
    row = planned(chapter, path)
    if not row:
        return "a cost not yet counted (run the full dry run with --save-budget)"
    text = f"{row['total']:.0f} EE (ResNet-18 CIFAR-10 epoch-equivalents), {times_text(row['total'])}"
    if row.get("reused", 0.0) >= 1:
        alone = row["total"] + row["reused"]
        text += f"; {alone:.0f} EE run alone, when no earlier chapter has trained its models"
    return text


def gpu_seconds_per_ee(device, steps: int = 6, batch: int = 256) -> float:
    """Seconds one EE takes on ``device``, timed: a few training steps of the CIFAR ResNet-18
    (channels-last, bf16 where the GPU has it, fp16 otherwise) after two warm-up steps.
    Nothing is counted in the ledger and the random state is left alone."""
    from .models import build_model

    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), quiet():
        m = build_model("resnet18", in_shape=(3, 32, 32), num_classes=10, device=device)
        m = m.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=device)
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float16
        t0 = 0.0
        for i in range(steps + 2):
            if i == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                loss = nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / (steps * batch) * EE_IMAGES


def plan_line(chapter: str, device=None) -> str:
    """The line a chapter prints before it starts in ``full``: its planned EE and the time they
    take on this device (timed with :func:`gpu_seconds_per_ee`)."""
    row = planned(chapter)
    if not row:
        return f"{chapter}: planned cost not counted yet"
    line = f"planned: {row['total']:.0f} EE"
    if device is not None and torch.device(device).type == "cuda":
        s = gpu_seconds_per_ee(device)
        name = torch.cuda.get_device_name(torch.device(device))
        line += f", about {_duration(row['total'] * s)} on this {name} ({s:.1f} s per EE, timed just now)"
    else:
        line += f", {times_text(row['total'])}"
    return line


#: Chapters whose ``full`` may still exceed :data:`CHAPTER_LIMIT`, each with the reason; the
#: dry run reports them without failing. The book's limit is waived while any chapter is. Empty:
#: every chapter fits.
WAIVED: dict = {}

MARK_BEGIN, MARK_END = "<!-- budget table: begin -->", "<!-- budget table: end -->"


def markdown_table(table: dict | None = None) -> str:
    """The planned table as the introduction shows it: EE per kind and in all, what a chapter
    costs run alone, and the time on each GPU of :data:`SECONDS_PER_EE`."""
    table = planned() if table is None else table
    gpus = list(SECONDS_PER_EE)
    head = ["chapter", "train", "unlearn", "eval", "relearn", "total EE", "run alone"]
    head += [f"{g}{'' if g in MEASURED else ' (est.)'}" for g in gpus]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tot = dict.fromkeys(("train", "unlearn", "eval", "relearn", "total"), 0.0)
    for name, row in table.items():
        for k in tot:
            tot[k] += row.get(k, 0.0)
        cells = [name] + [f"{row.get(k, 0.0):.0f}" for k in tot]
        cells.append(f"{row.get('total', 0.0) + row.get('reused', 0.0):.0f}")
        cells += [_duration(row.get("total", 0.0) * SECONDS_PER_EE[g]) for g in gpus]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**book**"] + [f"**{tot[k]:.0f}**" for k in tot] + [""]
    cells += [f"**{_duration(tot['total'] * SECONDS_PER_EE[g])}**" for g in gpus]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_intro_table(intro: Path, table: dict | None = None) -> bool:
    """Replace the block between :data:`MARK_BEGIN` and :data:`MARK_END` in ``intro`` with
    :func:`markdown_table`; ``False`` when the file has no such block."""
    intro = Path(intro)
    text = intro.read_text()
    if MARK_BEGIN not in text or MARK_END not in text:
        return False
    head, rest = text.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    new = f"{head}{MARK_BEGIN}\n{markdown_table(table)}\n{MARK_END}{tail}"
    fd, tmp = tempfile.mkstemp(dir=intro.parent, prefix=f".{intro.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, intro)
    return True
