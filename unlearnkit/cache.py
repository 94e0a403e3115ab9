"""Where cached files live, and how they are written: atomically, always.

Every file the library caches (decoded ImageFolder tensors, trained models) is written to a
temporary file in the same folder and then renamed over its final name, so a crash or a
full disk never leaves half a file behind: a reader sees the old file or the new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from . import profiles


def default_root() -> Path:
    """The cache root: ``UNLEARNKIT_DATA``, else ``data/`` of a source checkout, else
    ``~/.cache/unlearnkit`` (decided by :func:`unlearnkit.profiles.data_root`)."""
    return profiles.data_root()


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file next to ``path``, then rename: a crash never leaves
    half a file, and two processes writing the same file leave one whole copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
