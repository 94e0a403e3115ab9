"""Load-or-train: the original and the retrain-from-scratch models are trained once per
configuration and reused by every chapter.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

A checkpoint is keyed by a hash of everything that determines it (data fingerprint,
architecture, training arguments, seed, for ``retrain`` the forget set, and the source of the
code that trains it: :func:`unlearnkit.fingerprint.training_code`, plus the module of a batch
hook), so a model trained by older code is never served: it is trained anew. Written
atomically, and read back with ``torch.load(..., weights_only=True)``. A file that
cannot be read or does not match is reported and retrained, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from . import budget, profiles
from .access import as_task
from .cache import atomic_save
from .data import Dataset
from .fingerprint import training_code
from .models import build_model, check_finite
from .profiles import set_seed
from .tasks import Task
from .training import History, fit

ZOO_VERSION = 1


class CorruptCheckpointWarning(UserWarning):
    """A cached checkpoint could not be used and is being retrained."""


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(a) for a in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(a) for k, a in sorted(v.items())}
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def _hook_code(hook) -> str | None:
    """Hash of the source of the module defining a batch hook (``None`` if it has none)."""
    import inspect

    from .fingerprint import code_hash

    try:
        return code_hash(inspect.getsourcefile(inspect.unwrap(hook)))
    except (TypeError, OSError, ValueError):
        return None


def config_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(_jsonable(config), sort_keys=True).encode()).hexdigest()[:16]


def load_checkpoint(path: Path, model: nn.Module, expect: dict | None = None) -> nn.Module:
    """Load weights into ``model`` (``weights_only=True``); raise ``ValueError`` on anything odd."""
    path = Path(path)
    try:
        # torch.load does not verify the zip records' CRC-32: a flipped byte in a tensor would load silently
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise ValueError(f"record {bad!r} fails its CRC-32 checksum")
        blob = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Checkpoint {path} is unreadable or corrupt ({type(e).__name__}: {e}). "
            f"Delete it and train again."
        ) from e
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise ValueError(f"Checkpoint {path} has no 'state_dict': it was not written by unlearnkit.")
    if expect is not None and blob.get("key") != expect.get("key"):
        raise ValueError(f"Checkpoint {path} belongs to another configuration.")
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"Checkpoint {path} does not fit this architecture: {e}") from e
    check_finite(model, f"checkpoint {path.name}")
    info = blob.get("info", "{}")
    model.zoo_info = json.loads(info) if isinstance(info, str) else {}
    return model


def cached(
    config: dict,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict | None],
    cache_dir: str | Path | None = None,
    name: str = "model",
    retrain: bool = False,
    verbose: bool = True,
    key_only: bool = False,
) -> nn.Module | str:
    """Generic load-or-train: ``build()`` makes the untrained model, ``train(model)`` trains it in place
    and may return a dict of info stored with the weights. ``key_only=True`` returns the model's
    cache key instead, building and training nothing."""
    key = config_key({**config, "zoo_version": ZOO_VERSION})
    if key_only:
        return key
    root = Path(cache_dir) if cache_dir is not None else profiles.active().zoo_root
    path = root / f"{name}-{key}.pt"
    model = build()
    if path.exists() and not retrain:
        try:
            model = load_checkpoint(path, model, expect={"key": key})
            if verbose:
                print(f"[zoo] loaded {path.name}")
            model.zoo_path = str(path)
            model.zoo_cached = True
            # what training it would cost (a dry run's trimmed loops count it for the runs they left out)
            budget.loaded(key, model.zoo_info.get("planned_units", 0.0), config.get("which"))
            return model
        except ValueError as e:
            warnings.warn(
                f"{e}\nRetraining it now; the bad file is replaced.", CorruptCheckpointWarning, stacklevel=2
            )
            path.unlink(missing_ok=True)
            model = build()
    t0 = time.perf_counter()
    frame = budget.Frame()  # what training this model costs as planned (counted by budget.trained)
    with budget.into(frame):
        info = train(model) or {}
    units = sum(frame.planned.values())
    info = {"train_seconds": time.perf_counter() - t0, **info, "planned_units": units}
    budget.trained(key, units, config.get("which"))
    check_finite(model, f"freshly trained {name}")
    atomic_save(
        {
            "state_dict": model.state_dict(),
            "key": key,
            "config": json.dumps(_jsonable(config)),
            "info": json.dumps(_jsonable(info)),
        },
        path,
    )
    model.zoo_info = info
    model.zoo_path = str(path)
    model.zoo_cached = False
    if verbose:
        print(f"[zoo] trained and saved {path.name} in {info['train_seconds']:.1f}s")
    return model


@budget.counts("train")
def train_or_load(
    task: Task | Dataset,
    which: str = "original",
    model: str = "resnet18",
    *,
    epochs: int = 10,
    seed: int | None = None,
    model_kwargs: dict | None = None,
    hook: Callable | None = None,
    tag: str | None = None,
    cache_dir=None,
    retrain: bool = False,
    progress: bool | None = None,
    verbose: bool = True,
    key_only: bool = False,
    **fit_kwargs,
) -> nn.Module | str:
    """The ``original`` model (trained on all training data) or the ``retrain`` gold standard
    (trained from scratch on the retain set only), loaded from the cache when it exists.

    ``fit_kwargs`` go to :func:`unlearnkit.fit`. A batch ``hook`` must come with a ``tag``
    naming it, because functions cannot be hashed into the cache key. ``key_only=True``
    returns the model's cache key and trains nothing (a dry run uses it for the models of the
    runs it left out, :func:`unlearnkit.budget.settle_left_out`).
    """
    seed = profiles.active().seed if seed is None else seed
    which = which.lower()
    if which not in ("original", "retrain"):
        raise ValueError(f"which must be 'original' or 'retrain', got {which!r}.")
    if hook is not None and not tag:
        raise ValueError(
            "A batch hook changes training, so give it a tag=... that names it "
            "(it becomes part of the cache key)."
        )
    if isinstance(task, Dataset):
        if which == "retrain":
            raise ValueError("A retrain model needs a task (what to forget), not just a dataset.")
        data, t = task, None
    else:
        t = as_task(task)
        data = t.data
    model_kwargs = dict(model_kwargs or {})
    config = {
        "data": data.fingerprint,
        "dataset": data.name,
        "which": which,
        "model": model,
        "model_kwargs": model_kwargs,
        "epochs": epochs,
        "seed": seed,
        "fit": fit_kwargs,
        "tag": tag,
        "forget": t.fingerprint if which == "retrain" else None,
        "code": training_code(),
    }
    if hook is not None:
        config["hook_code"] = _hook_code(hook)
    if which == "original":
        x, y = data.x_train, data.y_train
    else:
        x, y = t.retain_set()
    fit_kwargs.setdefault("augment", data.augment)

    def build():
        set_seed(seed)
        return build_model(model, data, **model_kwargs)

    def train(m):
        set_seed(seed)
        h: History = fit(
            m,
            x,
            y,
            epochs=epochs,
            hook=hook,
            progress=progress,
            seed=seed,
            eval_data=(data.x_test, data.y_test),
            desc=f"train {which}",
            **fit_kwargs,
        )
        return {
            "epochs": epochs,
            "final_loss": h.loss[-1] if h.loss else None,
            "test_acc": h.eval_acc[-1] if h.eval_acc else None,
            "fit_seconds": h.seconds,
            "eval_acc": h.eval_acc,
        }

    name = f"{data.name.split('[')[0].replace(':', '_').replace('/', '_')}-{model}-{which}"
    return cached(
        config,
        build,
        train,
        cache_dir=cache_dir,
        name=name,
        retrain=retrain,
        verbose=verbose,
        key_only=key_only,
    )


#: The settings of a chapter's configuration that :func:`train_or_load` takes.
FIT_KEYS = (
    "model",
    "model_kwargs",
    "epochs",
    "lr",
    "batch_size",
    "schedule",
    "weight_decay",
    "momentum",
    "optimizer",
    "label_smoothing",
    "eval_every",
    "augment",
)


def fit_settings(cfg, **extra) -> dict:
    """The keyword arguments of :func:`train_or_load` found in ``cfg`` (a chapter's settings,
    a namespace or a dict: :data:`FIT_KEYS`), plus ``extra``. A profile that trains with
    :data:`unlearnkit.FAST_RESNET18` splices the recipe into its settings; the others name
    their own."""
    d = cfg if isinstance(cfg, dict) else vars(cfg)
    return {**{k: d[k] for k in FIT_KEYS if k in d}, **extra}
