"""Profiles (smoke / quick / full), device, seed and the dry run: one source of truth for a run.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

* ``full``  – the paper's setting, meant for a GPU.
* ``quick`` – the same experiment scaled to a laptop CPU (minutes).
* ``smoke`` – the same code path on embedded data with tiny models (seconds, CI).

``P = uk.profile()`` decides everything once and makes ``P`` the *active* profile:

* the profile name: argument > ``UNLEARNKIT_PROFILE`` > ``full`` with CUDA, ``quick`` without;
* the device: argument > ``UNLEARNKIT_DEVICE`` > ``cuda`` when available;
* the seed: argument > ``UNLEARNKIT_SEED`` > 0; everything is seeded with it;
* the dry run: argument > ``UNLEARNKIT_DRY_RUN`` (``1``): every loop is capped at two steps,
  every dataset at a few hundred images, the zoo lives in a temporary folder and
  :func:`check` skips the scientific claims (they need trained models).

``P.config(CONFIGS)`` picks the profile's settings. This module is the only one that reads
``UNLEARNKIT_*`` variables; loaders, models and methods ask :func:`active` for the device,
the seed and the caps.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

PROFILES = ("smoke", "quick", "full")
DEFAULT_SEED = 0
DRY_RUN_STEPS = 2  # every loop in a dry run stops after this many steps
DRY_RUN_IMAGES = 160  # ... and every dataset keeps at most this many images per split


def dry_run_images(n_classes: int) -> int:
    """Images per split in a dry run: ``DRY_RUN_IMAGES``, or three per (finest) class when that is
    more (CIFAR-100: 300), so that every class keeps a few samples to forget."""
    return max(DRY_RUN_IMAGES, 3 * int(n_classes))


DRY_RUN_BATCH = 16  # ... and training batches hold at most this many samples

_ACTIVE: "Profile | None" = None


class Fewer(int):
    """A count a dry run made smaller (:meth:`Profile.fewer`); ``planned`` is the profile's."""

    def __new__(cls, value: int, planned: int):
        out = super().__new__(cls, value)
        out.planned = int(planned)
        return out

    def __getnewargs__(self):  # copies and pickles keep the planned count
        return int(self), self.planned


class Few(list):
    """The items a dry run kept of a longer list (:meth:`Profile.few`). The work done while
    iterating them counts ``planned / len(kept)`` times in the planned cost
    (:mod:`unlearnkit.budget`): the items left out would have cost as much each. A copy
    (``list(few)``, ``sorted(few)``) is a plain list and counts once."""

    def __init__(self, kept, planned: int, full: list | None = None):
        super().__init__(kept)
        self.planned = int(planned)
        # the profile's whole list, when known: the runs a spread left out (unlearnkit.bench)
        self.full = list(full) if full is not None and len(full) == self.planned else None

    @property
    def factor(self) -> float:
        return self.planned / max(1, len(self))

    def __iter__(self):
        from . import budget

        frame = budget.Frame()
        with budget.into(frame):
            yield from list.__iter__(self)
        budget.commit(frame, self.factor)

    def __getitem__(self, i):
        out = list.__getitem__(self, i)
        if not isinstance(i, slice):
            return out
        full = self.full[i] if self.full is not None else None
        return Few(out, planned=len(range(self.planned)[i]), full=full)  # the planned list's same slice


class GPUWarning(UserWarning):
    """A chapter meant for a GPU is running without one."""


class CheckFailed(AssertionError):
    """A claim a chapter makes about its results does not hold (raised by :func:`check`)."""


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(f"UNLEARNKIT_{name}")
    return v if v not in (None, "") else default


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Profile:
    """The active run: profile name, torch device, seed, dry-run flag and versions."""

    name: str
    device: torch.device
    seed: int = DEFAULT_SEED
    dry_run: bool = False
    versions: dict = field(default_factory=dict)
    _tmp: Any = field(default=None, repr=False)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def config(self, profiles: Mapping[str, Mapping[str, Any]]) -> SimpleNamespace:
        """This profile's settings from ``{"smoke": {...}, "quick": {...}, "full": {...}}``."""
        return _pick(profiles, self.name)

    def cap(self, n: int | None) -> int | None:
        """``n`` steps (``None``: unbounded), or at most two in a dry run."""
        if not self.dry_run:
            return n
        return DRY_RUN_STEPS if n is None else min(int(n), DRY_RUN_STEPS)

    def few(self, items, n: int = 1, last: bool = False) -> list:
        """``items`` as a list; in a dry run only the first ``n`` of them (and the last, with
        ``last=True``: the two ends of a sweep). A dry run checks the code path of every loop,
        not its statistics: one seed, one forget class and a sweep's two ends suffice.

        >>> P.few([0, 3, 5])                    # [0, 3, 5]; [0] in a dry run
        >>> P.few([1e-4, 1e-3, 1e-2], last=True)  # [1e-4, 1e-2] in a dry run
        """
        items = list(items)
        if not self.dry_run or len(items) <= n + int(last):
            return items
        return Few(items[:n] + (items[-1:] if last else []), planned=len(items), full=items)

    def fewer(self, n: int, dry: int) -> int:
        """``n``; in a dry run ``dry`` (when smaller), as a :class:`Fewer` that remembers ``n``,
        so that a loop over it counts the planned ``n`` (:mod:`unlearnkit.budget`)."""
        if not self.dry_run or int(n) <= int(dry):
            return n
        return Fewer(int(dry), planned=int(n))

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the profile's seed (plus ``offset``)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    @property
    def zoo_root(self) -> Path:
        """Where trained models are cached: ``data/zoo``, or a temporary folder in a dry run."""
        if self.dry_run:
            shared = _env("DRY_RUN_ZOO")  # the book runner's: one zoo for a dry run's chapters
            if shared:
                return Path(shared)
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="unlearnkit-dry-run-")
            return Path(self._tmp.name) / "zoo"
        return data_root() / "zoo"

    def provenance(self) -> str:
        """One line naming profile, device and versions, printed at the top of every chapter."""
        v = self.versions
        dev = str(self.device)
        if self.on_gpu:
            dev += f" ({torch.cuda.get_device_name(self.device)})"
        else:
            dev += f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        dry = " | DRY RUN (loops capped, checks skipped)" if self.dry_run else ""
        return (
            f"profile={self.name} | device={dev} | seed={self.seed} | python {v['python']} | "
            f"torch {v['torch']} | torchvision {v['torchvision']} | unlearnkit {v['unlearnkit']}{dry}"
        )

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.provenance()


def _versions() -> dict:
    from ._version import __version__

    try:
        import torchvision

        tv = torchvision.__version__
    except Exception:  # pragma: no cover - torchvision missing/broken
        tv = "unavailable"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": tv,
        "unlearnkit": __version__,
    }


def profile_name(name: str | None = None) -> str:
    """The profile's name (argument > ``UNLEARNKIT_PROFILE`` > hardware default)."""
    name = name or _env("PROFILE") or ("full" if torch.cuda.is_available() else "quick")
    name = str(name).strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
            "(set UNLEARNKIT_PROFILE or pass name=...)."
        )
    return name


def _seed(seed) -> int:
    if seed is None:
        raw = _env("SEED", str(DEFAULT_SEED))
        try:
            seed = int(raw)
        except ValueError:
            raise ValueError(f"UNLEARNKIT_SEED must be an integer, got {raw!r}.") from None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"The seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: the argument, else the active profile's, else ``cuda`` when available.

    ``UNLEARNKIT_DEVICE`` is read only when no profile is active yet.
    """
    if device is None:
        if _ACTIVE is not None:
            return _ACTIVE.device
        device = _env("DEVICE")
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "A CUDA device was asked for but torch sees no GPU. In Colab choose "
            "Runtime > Change runtime type > GPU, or unset UNLEARNKIT_DEVICE."
        )
    return device


def set_seed(seed: int = DEFAULT_SEED, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def profile(
    name: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    quiet: bool = False,
    dry_run: bool | None = None,
) -> Profile:
    """Choose the profile, the device, the seed and the dry-run flag; seed everything; make the
    result the active profile (:func:`active`) and return it.

    Warns loudly when the ``full`` profile runs without a GPU (e.g. Colab without a GPU
    runtime): it will work, but take hours. A dry run says so instead: it exists to check the
    ``full`` code path on a CPU.
    """
    global _ACTIVE
    dry = _truthy(_env("DRY_RUN", "0")) if dry_run is None else bool(dry_run)
    p = Profile(
        name=profile_name(name),
        device=get_device(device) if device else _default_device(),
        seed=_seed(seed),
        dry_run=dry,
        versions=_versions(),
    )
    if p.name == "full" and not p.on_gpu and not p.dry_run:
        warnings.warn(
            "\n" + "!" * 72 + "\nThe 'full' profile is the paper's setting and needs a GPU, but none "
            "was found.\nIn Colab: Runtime > Change runtime type > GPU. Or run "
            "UNLEARNKIT_PROFILE=quick.\n" + "!" * 72,
            GPUWarning,
            stacklevel=2,
        )
    set_seed(p.seed)
    _ACTIVE = p
    _plain_numpy_scalars()
    if not quiet:
        print(p.provenance())
    return p


def _plain_numpy_scalars() -> None:
    """In a notebook, show numpy scalars as plain numbers (``0.5``, not ``np.float64(0.5)``).

    numpy 2 prints its scalars with their type, and myst-nb's ``glue`` stores that text: a
    ``{glue:text}`` format spec then cannot read it back as a number. Outside IPython this does
    nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    import numpy as np

    plain = ip.display_formatter.formatters["text/plain"]
    plain.for_type(np.floating, lambda x, p, cycle: p.text(repr(float(x))))
    plain.for_type(np.integer, lambda x, p, cycle: p.text(repr(int(x))))
    plain.for_type(np.bool_, lambda x, p, cycle: p.text(repr(bool(x))))


def _default_device() -> torch.device:
    dev = _env("DEVICE")
    if dev is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return get_device(dev)


def active() -> Profile:
    """The profile chosen by the last :func:`profile` call (a quiet default one if none was made)."""
    global _ACTIVE
    if _ACTIVE is None:
        dry = _truthy(_env("DRY_RUN", "0"))
        _ACTIVE = Profile(
            name=profile_name(), device=_default_device(), seed=_seed(None), dry_run=dry, versions=_versions()
        )
    return _ACTIVE


def reset() -> None:
    """Forget the active profile (tests use this)."""
    global _ACTIVE
    _ACTIVE = None


def _pick(profiles: Mapping[str, Mapping[str, Any]], name: str) -> SimpleNamespace:
    if not isinstance(profiles, Mapping):
        raise TypeError("The settings must be a dict {'smoke': {...}, 'quick': {...}, 'full': {...}}.")
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ValueError(f"config() needs settings for every profile; missing: {missing}")
    return SimpleNamespace(**dict(profiles[name]))


def config(profiles: Mapping[str, Mapping[str, Any]], name: str | None = None) -> SimpleNamespace:
    """The settings of profile ``name``, else of the active profile (``P.config`` does the same)."""
    return _pick(profiles, profile_name(name) if name else active().name)


def check(condition, message: str) -> bool:
    """Assert a claim the chapter makes about its results.

    Raises :class:`CheckFailed` (an ``AssertionError``) with ``message`` when ``condition`` is
    false. In a dry run the models are not trained, so the claim is skipped (and said so).
    Returns whether the claim held.
    """
    if active().dry_run:
        print(f"[dry run] check skipped: {message}")
        return True
    if not bool(condition):
        raise CheckFailed(f"Claim does not hold: {message}")
    return True


def settings_table(profiles: Mapping[str, Mapping[str, Any]], width: int = 40):
    """The three profiles side by side as a pandas DataFrame (for the parameters cell).

    Long values (nested dicts) are cut at ``width`` characters so the table fits the page.
    """
    import pandas as pd

    def short(v):
        s = str(v)
        return s if len(s) <= width else s[: width - 1] + "…"

    keys = list(dict.fromkeys(k for p in PROFILES for k in profiles[p]))
    return pd.DataFrame({p: [short(profiles[p].get(k, "")) for k in keys] for p in PROFILES}, index=keys)


# ----------------------------------------------------------------------------- paths and switches


def data_root() -> Path:
    """``UNLEARNKIT_DATA``, else ``data/`` of a source checkout, else ``~/.cache/unlearnkit``."""
    env = _env("DATA")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent / "data"
    if checkout.is_dir() and os.access(checkout, os.W_OK):
        return checkout
    return Path.home() / ".cache" / "unlearnkit"


def dataset_folder(name: str) -> Path | None:
    """An offline ImageFolder copy named by ``UNLEARNKIT_<NAME>`` (e.g. ``UNLEARNKIT_CIFAR10``)."""
    v = _env(name.upper().replace("-", "_"))
    return Path(v).expanduser() if v else None


_QUIET = [0]  # depth of progress_off() blocks


@contextlib.contextmanager
def progress_off():
    """No progress bars from loops that follow the default inside the block (a sweep run that was
    asked for none: its methods' own loops would otherwise each open a bar, hundreds per sweep)."""
    _QUIET[0] += 1
    try:
        yield
    finally:
        _QUIET[0] -= 1


def progress_default() -> bool:
    """Progress bars on unless ``UNLEARNKIT_PROGRESS=0`` (the book runner and the tests set it) or
    inside :func:`progress_off`."""
    return not _QUIET[0] and _truthy(_env("PROGRESS", "1"))
