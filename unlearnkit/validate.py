"""Input validators shared by the methods, loaders and metrics: one clear message each.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong kind of object) with a
sentence that says what was expected and what to do.
"""

from __future__ import annotations

import math
from typing import Iterable


def _is_number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v))


def positive(name: str, v, hint: str = "") -> float:
    """A finite number > 0."""
    if not _is_number(v) or v <= 0:
        raise ValueError(f"{name} must be a positive number, got {v!r}.{' ' + hint if hint else ''}")
    return float(v)


def non_negative(name: str, v, hint: str = "") -> float:
    """A finite number >= 0."""
    if not _is_number(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0, got {v!r}.{' ' + hint if hint else ''}")
    return float(v)


def probability(name: str, v, hint: str = "") -> float:
    """A number in [0, 1]."""
    if not _is_number(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}.{' ' + hint if hint else ''}")
    return float(v)


def integer(name: str, v, lo: int = 1, hint: str = "") -> int:
    """An integer >= ``lo`` (bools are refused)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        try:
            import numpy as np

            if isinstance(v, np.integer) and v >= lo:
                return int(v)
        except ImportError:  # pragma: no cover
            pass
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}.{' ' + hint if hint else ''}")
    return v


def optional_integer(name: str, v, lo: int = 1) -> int | None:
    return None if v is None else integer(name, v, lo)


def choice(name: str, v, options: Iterable):
    """One of ``options``."""
    options = tuple(options)
    if v not in options:
        raise ValueError(f"{name} must be one of {options}, got {v!r}.")
    return v


def clamp_pair(v):
    """``None`` or a pair ``(low, high)`` with low < high."""
    if v is None:
        return None
    try:
        lo, hi = (float(c) for c in v)
    except (TypeError, ValueError):
        raise ValueError(
            f"clamp must be None or a pair (low, high), e.g. (0, 1) for images; got {v!r}."
        ) from None
    if not lo < hi:
        raise ValueError(f"clamp=(low, high) needs low < high, got {v!r}.")
    return lo, hi


def model(name: str, m):
    """A torch module."""
    import torch

    if not isinstance(m, torch.nn.Module):
        raise TypeError(f"{name} must be a torch model (nn.Module), got {type(m).__name__}.")
    return m


def count_or_fraction(name: str, v, total: int) -> int:
    """A number of items out of ``total``: an integer in 1..total-1, or a fraction in (0, 1)
    (rounded, at least one). Bools, text and other numbers are refused."""
    import numpy as np

    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"{name} is a number of samples (an integer) or a fraction in (0, 1), got {v!r} "
            f"({type(v).__name__})."
        )
    if isinstance(v, (float, np.floating)):
        if not 0.0 < v < 1.0:
            raise ValueError(
                f"{name} is a number of samples (an integer in 1..{total - 1}) or a fraction in (0, 1), "
                f"got {v!r}. For 10% of the training set write 0.1."
            )
        return max(1, round(float(v) * total))
    if not 0 < v < total:
        raise ValueError(f"{name} must lie in 1..{total - 1}, got {v}.")
    return int(v)
