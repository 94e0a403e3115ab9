"""Tables the chapters share: mean ± std cells (:func:`pm`, :func:`pm_of`), and our numbers
beside a paper's.

Every chapter puts its spread beside the paper it reproduces (the opening chapter,
``book/01_unlearning_problem.ipynb``, explains how to read such a table).
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

DASH = "–"


def pm(mean, std=None, digits: int = 1) -> str:
    """``"12.3 ± 4.5"``; ``"12.3"`` without a spread; ``"–"`` for a missing value."""
    if mean is None or (isinstance(mean, (float, np.floating)) and math.isnan(mean)):
        return DASH
    if std is None or (isinstance(std, (float, np.floating)) and math.isnan(std)):
        return f"{float(mean):.{digits}f}"
    return f"{float(mean):.{digits}f} ± {float(std):.{digits}f}"


def std_of(values) -> float:
    """The sample standard deviation (``ddof=1``) of the finite ``values``: 0 for one value (a
    single run has no spread), NaN for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else float("nan"))


def pm_of(values, digits: int = 1) -> str:
    """``"mean ± std"`` of the finite ``values`` (runs): the std as :func:`std_of` (``± 0.0`` for
    one run), ``"–"`` when there is none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return pm(v.mean(), std_of(v), digits) if len(v) else DASH


def count(n, noun: str, plural: str | None = None) -> str:
    """``"1 seed"``, ``"3 seeds"``: a count with its noun in the right number (``plural`` for an
    irregular one, e.g. ``count(2, "class", "classes")``)."""
    k = int(round(float(n)))
    return f"{k} {noun if k == 1 else (plural or noun + 's')}"


def runs_text(
    seeds: int, items: int, paired: bool = False, noun: str = "class", plural: str = "classes"
) -> str:
    """How a spread's runs are made: ``"3 seeds × 3 classes"`` (every seed with every item), or
    with ``paired=True`` (:func:`unlearnkit.run_spread`) ``"3 runs, each its own seed and class"``."""
    if paired:
        return f"{count(seeds, 'run')}, each its own seed and {noun}"
    return f"{count(seeds, 'seed')} × {count(items, noun, plural)}"


def paper_cell(value, digits: int = 1) -> str:
    """A paper's number as the table shows it: a value, ``(mean, std)``, or ``"–"`` when the
    paper has none."""
    if value is None:
        return DASH
    if isinstance(value, (tuple, list)):
        return pm(value[0], value[1] if len(value) > 1 else None, digits)
    if isinstance(value, str):
        return value
    return pm(value, None, digits)


def runs_of(spread, method: str, metric: str, **where) -> np.ndarray:
    """The values of ``metric`` over the runs of ``method`` that did not diverge, in run order
    (seed × forget); ``where`` keeps only rows with those column values (e.g. ``forget=64``)."""
    r = spread.runs
    keep = (r["method"] == method) & ~r["diverged"].astype(bool)
    for col, v in where.items():
        keep &= r[col] == v
    return r.loc[keep, metric].to_numpy(float)


def beside_paper(
    spread,
    metrics: Mapping[str, str],
    papers: Mapping[str, Mapping],
    *,
    by: str | None = None,
    digits: int = 1,
    ours: str = "ours",
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Our mean ± std over the runs beside each paper's number, one column pair per metric.

    ``metrics``: ``{column of spread.runs: label}``. ``papers``: ``{source: {method: {column:
    value}}}`` (``source`` labels the column, e.g. ``"paper (ResNet-18)"``; a value is a number,
    ``(mean, std)`` or ``None``). With ``by`` (a column such as ``"forget"``) the rows are
    ``(item, method)`` and the papers' entries are ``{method: {item: {column: value}}}``.
    ``names`` renames our methods to the papers' keys (``{our name: paper's name}``).
    """
    names = dict(names or {})
    runs = spread.runs
    items = list(dict.fromkeys(runs[by])) if by else [None]
    rows = {}
    for item in items:
        for method in spread.methods:
            key = (item, method) if by else method
            row = {}
            for col, label in metrics.items():
                v = runs_of(spread, method, col, **({by: item} if by else {}))
                if not len(v) and by and not ((runs[by] == item) & (runs["method"] == method)).any():
                    continue
                row[(label, ours)] = (
                    pm(v.mean(), v.std(ddof=1) if len(v) > 1 else None, digits) if len(v) else "diverged"
                )
                for source, table in papers.items():
                    entry = table.get(names.get(method, method), {})
                    if by:
                        entry = entry.get(item, {})
                    row[(label, source)] = paper_cell(entry.get(col), digits)
            if row:
                rows[key] = row
    out = pd.DataFrame(rows).T
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    if by:
        out.index.names = [by, "method"]
    else:
        out.index.name = "method"
    return out


def compact(df: pd.DataFrame, precision: int = 1):
    """A wide table in small type, one line per cell (a pandas ``Styler``), for the showdown's
    rankings."""
    return df.style.format(precision=precision).set_table_styles(
        [{"selector": "td, th", "props": "white-space: nowrap; font-size: 0.78em; padding: 2px 8px;"}]
    )
