"""Profiles (smoke / quick / full), device choice and seeding.

Explained in the opening chapter (``book/01_unlearning_problem.ipynb``).

* ``full``  – the paper's setting, meant for a GPU.
* ``quick`` – the same experiment scaled to a laptop CPU (minutes).
* ``smoke`` – the same code path on embedded data with tiny models (seconds, CI).

The profile is taken from the ``UNLEARNKIT_PROFILE`` environment variable;
otherwise ``full`` when CUDA is available and ``quick`` on a CPU.
"""
from __future__ import annotations

import os
import platform
import random
import sys
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import torch

PROFILES = ("smoke", "quick", "full")
DEFAULT_SEED = 0


class GPUWarning(UserWarning):
    """A chapter meant for a GPU is running without one."""


@dataclass
class Profile:
    """The active profile: its name, the torch device and the seed."""

    name: str
    device: torch.device
    seed: int = DEFAULT_SEED
    versions: dict = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    def provenance(self) -> str:
        """One line naming profile, device and versions, printed at the top of every chapter."""
        v = self.versions
        dev = str(self.device)
        if self.on_gpu:
            dev += f" ({torch.cuda.get_device_name(self.device)})"
        else:
            dev += f" ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        return (f"profile={self.name} | device={dev} | seed={self.seed} | python {v['python']} | "
                f"torch {v['torch']} | torchvision {v['torchvision']} | unlearnkit {v['unlearnkit']}")

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.provenance()


def _versions() -> dict:
    from . import __version__
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception:  # pragma: no cover - torchvision missing/broken
        tv = "unavailable"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": tv, "unlearnkit": __version__}


def profile_name(name: str | None = None) -> str:
    """The active profile's name (argument > ``UNLEARNKIT_PROFILE`` > hardware default)."""
    name = name or os.environ.get("UNLEARNKIT_PROFILE") or ("full" if torch.cuda.is_available() else "quick")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
                         "(set UNLEARNKIT_PROFILE or pass name=...).")
    return name


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available, else ``cpu`` (``UNLEARNKIT_DEVICE`` overrides)."""
    device = device or os.environ.get("UNLEARNKIT_DEVICE")
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("A CUDA device was asked for but torch sees no GPU. In Colab choose "
                           "Runtime > Change runtime type > GPU, or unset UNLEARNKIT_DEVICE.")
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


def profile(name: str | None = None, seed: int = DEFAULT_SEED, device: str | None = None,
            quiet: bool = False) -> Profile:
    """Choose the profile, the device and seed everything.

    Warns loudly when the ``full`` profile runs without a GPU (e.g. Colab without a
    GPU runtime): it will work, but take hours.
    """
    p = Profile(name=profile_name(name), device=get_device(device), seed=seed, versions=_versions())
    if p.name == "full" and not p.on_gpu:
        warnings.warn("\n" + "!" * 72 + "\nThe 'full' profile is the paper's setting and needs a GPU, but none "
                      "was found.\nIn Colab: Runtime > Change runtime type > GPU. Or run "
                      "UNLEARNKIT_PROFILE=quick.\n" + "!" * 72, GPUWarning, stacklevel=2)
    set_seed(seed)
    if not quiet:
        print(p.provenance())
    return p


def config(profiles: Mapping[str, Mapping[str, Any]], name: str | None = None) -> SimpleNamespace:
    """Pick the active profile's settings from ``{"smoke": {...}, "quick": {...}, "full": {...}}``."""
    missing = [p for p in PROFILES if p not in profiles]
    if missing:
        raise ValueError(f"config() needs settings for every profile; missing: {missing}")
    return SimpleNamespace(**dict(profiles[profile_name(name)]))


def settings_table(profiles: Mapping[str, Mapping[str, Any]]):
    """The three profiles side by side as a pandas DataFrame (for the parameters cell)."""
    import pandas as pd
    keys = list(dict.fromkeys(k for p in PROFILES for k in profiles[p]))
    return pd.DataFrame({p: [profiles[p].get(k, "") for k in keys] for p in PROFILES},
                        index=keys).astype(str)
