"""One call sets up a chapter: ``P, glue = uk.chapter("c7")``.

Used by every chapter of the book; the opening chapter (``book/01_unlearning_problem.ipynb``)
explains the provenance line it prints.

:func:`chapter` chooses the profile (from ``UNLEARNKIT_PROFILE``, the hardware, or the
argument), prints the provenance line (profile, device, seed, versions), seeds everything,
sets the plot style and starts the chapter's clock. The :class:`Glue` it returns hands values
to the prose (myst-nb's ``glue``): numbers as plain floats, so that ``{glue:text}`name:.1f``` can
format them, and words (:class:`~unlearnkit.claims.Word`, or any string) without quotes. Several
values go in one call, ``glue(c7_best=word, c7_gap=gap)``, so a cell ends in one line of
bookkeeping, not ten. Every name must start with the chapter's prefix, which keeps the names of
two chapters apart. Without myst-nb (a reader's Colab) the values are only kept in
``glue.values``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from . import budget, plots, profiles
from .claims import Word


class Glue:
    """Glue values for a chapter's prose; see :mod:`unlearnkit.chapter`."""

    def __init__(self, prefix: str):
        if not isinstance(prefix, str) or not prefix.isidentifier():
            raise ValueError(f"A chapter's glue prefix is a short name such as 'c7', got {prefix!r}.")
        self.prefix = prefix
        self.values: dict = {}
        try:
            from myst_nb import glue as _glue
        except ImportError:  # a reader's Colab runs the code; the prose is the rendered book's
            _glue = None
        self._glue = _glue

    @staticmethod
    def plain(value):
        """``value`` as the prose shows it: numpy and torch scalars as Python numbers, strings as
        :class:`~unlearnkit.claims.Word` (no quotes); anything else (a figure, a table) as is."""
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 and not isinstance(value, str):
            value = value.item()
        if isinstance(value, (bool, np.bool_)):
            return Word("yes" if value else "no")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            return float(value)
        if isinstance(value, str):
            return value if isinstance(value, Word) else Word(value)
        return value

    def __call__(self, name: str | None = None, value=None, /, **values):
        """``glue(name, value)`` or ``glue(name1=value1, name2=value2, ...)``; returns the value
        (of the one name) or ``None``."""
        if name is not None:
            values = {name: value, **values}
        if not values:
            raise TypeError("glue needs a name and a value, e.g. glue(c7_gap=3.2).")
        for key, v in values.items():
            if not key.startswith(self.prefix + "_"):
                raise ValueError(
                    f"Glue names of this chapter start with {self.prefix + '_'!r}: rename {key!r}."
                )
            v = self.plain(v)
            if isinstance(v, float) and math.isnan(v) and not profiles.active().dry_run:
                raise ValueError(f"{key} is NaN: the prose would show 'nan'. Check the runs behind it.")
            self.values[key] = v
            if self._glue is not None:
                self._glue(key, v, display=False)
        return self.plain(value) if name is not None and len(values) == 1 else None


class Chapter(Glue):
    """The glue of a chapter, with its clock (:meth:`seconds`)."""

    def __init__(self, prefix: str):
        super().__init__(prefix)
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        """Wall seconds since :func:`chapter` was called."""
        return time.perf_counter() - self.t0


def chapter(
    prefix: str, profile: str | None = None, *, seed: int | None = None, quiet: bool = False
) -> tuple[profiles.Profile, Chapter]:
    """Set up a chapter and return ``(P, glue)``: the active :class:`~unlearnkit.Profile` (the
    provenance line printed unless ``quiet``; ``P.few`` and ``P.cap`` trim loops in a dry run)
    and the chapter's :class:`Chapter` glue (``glue.seconds()``: its clock)."""
    P = profiles.profile(profile, seed=seed, quiet=quiet)
    plots.setup()
    where = os.environ.get("UNLEARNKIT_BUDGET")
    if where:  # the book runner collects what the chapter's model calls cost (unlearnkit.budget)
        budget.ledger().reset()
        budget.write_after_each_cell(Path(where))
    if P.name == "full" and not P.dry_run and not quiet:
        # before a long chapter: its planned cost and the time it takes on this GPU (timed now)
        print(budget.plan_line(_stem(prefix), P.device))
    return P, Chapter(prefix)


def _stem(prefix: str) -> str:
    """The chapter file of a glue prefix (``"c1"`` → ``"01_unlearning_problem"``) in the planned
    cost table, or the prefix itself."""
    num = prefix[1:]
    lead = f"{int(num):02d}_" if num.isdigit() else prefix
    return next((n for n in budget.planned() if n.startswith(lead)), prefix)
