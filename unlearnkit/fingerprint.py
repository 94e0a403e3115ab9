"""Hashes of the code behind a cached result, so that a cache is invalidated by code, not only
by configuration.

* :func:`code_hash` is the one hash: a short SHA-256 of the source text of modules, functions or
  files.
* :func:`training_code` covers what decides a trained model's weights (models, training, data,
  tasks, seeding and the zoo's training recipe): it is part of every zoo key
  (:func:`unlearnkit.train_or_load`), so a model trained by older code is not served.
* :func:`run_code` is the ``code`` column of a results file (:mod:`unlearnkit.results`): for a
  method, the source of its module and of the library modules that module imports, plus the
  shared evaluation code (:func:`eval_code`: the training code, the metrics and attacks, the
  evaluator and the sweep's run recipe); for the ``original`` and ``retrain`` rows, the shared
  evaluation code alone.

The hashes are computed once per process (the code a process runs is the code it imported).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = __name__.rsplit(".", 1)[0]
# modules whose source decides a trained model's weights
TRAINING_MODULES = ("models", "training", "data", "tasks")
# modules whose source decides every row of a results table (on top of the training code)
EVAL_MODULES = ("metrics", "attacks", "bench", "methods._registry")
# the sweep's run recipe: these functions of unlearnkit/sweep/run.py (not the whole module)
RECIPE = ("run_one", "_run", "make_task", "prepare", "relearn", "retrain_seconds", "use_profile")


def _source(obj) -> str:
    """The source text of a module, a function or class, or a file path."""
    if isinstance(obj, (str, Path)):
        return Path(obj).read_text(encoding="utf-8")
    if isinstance(obj, ModuleType):
        return Path(inspect.getsourcefile(obj)).read_text(encoding="utf-8")
    return inspect.getsource(inspect.unwrap(obj))


def code_hash(*objs) -> str:
    """A short SHA-256 (16 hex digits) of the source of ``objs`` (modules, functions, classes or
    file paths), in order: it changes whenever any of their source text does."""
    h = hashlib.sha256()
    for obj in objs:
        text = _source(obj)
        h.update(f"{len(text)}:".encode())
        h.update(text.encode("utf-8"))
    return h.hexdigest()[:16]


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _combine(*hashes: str) -> str:
    return _text_hash(":".join(hashes))


def _module(name: str) -> ModuleType:
    full = f"{PACKAGE}.{name}"
    if full not in sys.modules:
        importlib.import_module(full)
    return sys.modules[full]


def _functions(module: ModuleType, names) -> str:
    """The source text of the top-level functions ``names`` of ``module``, as its file has them."""
    text = _source(module)
    defs = {
        n.name: ast.get_source_segment(text, n)
        for n in ast.parse(text).body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    return "\n".join(defs.get(n) or "" for n in names)


def _imported(path: str, package: str) -> list[str]:
    """The files of the package modules that the module at ``path`` imports (relative imports,
    at the top or inside functions), sorted."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
        for alias in node.names:
            for name in (f"{base}.{alias.name}", base):  # a submodule, else the module itself
                try:
                    spec = importlib.util.find_spec(name)
                except (ImportError, ValueError):
                    spec = None
                if spec is not None and spec.origin and spec.origin.endswith(".py"):
                    found.add(spec.origin)
                    break
    found.discard(str(path))
    return sorted(found)


@functools.lru_cache(maxsize=None)
def training_code() -> str:
    """Hash of the code that decides a trained model's weights: the sources of
    :data:`TRAINING_MODULES`, the seeding and the zoo's training recipe."""
    recipe = _functions(_module("profiles"), ["set_seed"]) + _functions(_module("zoo"), ["train_or_load"])
    return _combine(code_hash(*(_module(m) for m in TRAINING_MODULES)), _text_hash(recipe))


@functools.lru_cache(maxsize=None)
def eval_code() -> str:
    """Hash of the code shared by every row of a results table: :func:`training_code`, the
    sources of :data:`EVAL_MODULES` and the sweep's run recipe (:data:`RECIPE`)."""
    recipe = _functions(_module("sweep.run"), RECIPE)
    own = code_hash(*(_module(m) for m in EVAL_MODULES))
    return _combine(own, _text_hash(recipe), training_code())


@functools.lru_cache(maxsize=None)
def method_code(name: str) -> str:
    """Hash of a registered method's code: the source of the library module defining it and of
    the library modules that module imports (a method defined outside the library: the source of
    its function)."""
    from .methods import get_method

    fn = inspect.unwrap(get_method(name))
    path = inspect.getsourcefile(fn)
    if not path or not Path(path).is_file() or not fn.__module__.startswith(PACKAGE + "."):
        return code_hash(fn)  # defined elsewhere (e.g. in a notebook): its own source
    return code_hash(path, *_imported(path, fn.__module__.rsplit(".", 1)[0]))


@functools.lru_cache(maxsize=None)
def run_code(method: str) -> str | None:
    """The ``code`` of a results row: :func:`eval_code` for the reference rows (``original``,
    ``retrain``), a hash of :func:`method_code` and :func:`eval_code` for a method; ``None`` for
    a method that is no longer registered."""
    if method in ("original", "retrain", "reference"):
        return eval_code()
    try:
        own = method_code(method)
    except (ValueError, TypeError, OSError):  # no longer registered, or no source to read
        return None
    return _combine(own, eval_code())
