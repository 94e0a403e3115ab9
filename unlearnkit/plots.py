"""The figures the chapters share, in one style with fixed colours.

Forget is always red, retain blue, test grey; retrain green; the original black.
"""

from __future__ import annotations

import numpy as np
import torch

COLORS = {
    "forget": "#d62728",
    "retain": "#1f77b4",
    "test": "#7f7f7f",
    "original": "#222222",
    "retrain": "#2ca02c",
    "unlearned": "#9467bd",
}


def setup(context: str = "notebook"):
    """The book's plotting style (seaborn whitegrid, readable sizes)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "figure.figsize": (6, 4), "axes.titlesize": "medium"})


def method_colors() -> dict:
    """``{name: colour}``: the original's, and each registered method's from its record."""
    from .methods import REGISTRY

    out = {"original": COLORS["original"]}
    out.update({n: f.record.color for n, f in REGISTRY.items() if f.record.color})
    return out


def color_for(name: str, i: int = 0) -> str:
    """The fixed colour of a method (its record's; the longest registered name ``name`` starts
    with, so ``"JiT (sigma=0.5)"`` is JiT's), else the ``i``-th colour of the palette."""
    import matplotlib.pyplot as plt

    key = name.lower().replace(" ", "_").replace("-", "_")
    known = method_colors()
    hits = [k for k in known if key.startswith(k)]
    if hits:
        return known[max(hits, key=len)]
    from matplotlib.colors import to_hex

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return to_hex(cycle[i % len(cycle)])  # seaborn themes store RGB tuples: always return "#rrggbb"


def _ax(ax, figsize=(6, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def grid_predictions(model, lim=(-3, 3), n: int = 200):
    """Class probabilities of a 2-D model on an n x n grid: (xx, yy, probs[n, n, k])."""
    from .training import predict

    dev = next(model.parameters()).device
    g = np.linspace(lim[0], lim[1], n, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1)).to(dev)
    p = torch.softmax(predict(model, pts), 1).cpu().numpy().reshape(n, n, -1)
    return xx, yy, p


def decision_boundary(
    model,
    x=None,
    y=None,
    ax=None,
    lim=(-3, 3),
    n: int = 200,
    title: str | None = None,
    highlight=None,
    color: str = "k",
    fill: bool = True,
    label: str | None = None,
):
    """Decision regions (filled) and boundary (line) of a 2-D classifier, with optional points."""

    ax = _ax(ax)
    xx, yy, p = grid_predictions(model, lim, n)
    pred = p.argmax(-1)
    k = p.shape[-1]
    if fill:
        ax.contourf(xx, yy, pred, levels=np.arange(k + 1) - 0.5, cmap="coolwarm", alpha=0.25)
    cs = ax.contour(xx, yy, pred, levels=np.arange(k) + 0.5, colors=color, linewidths=1.5)
    if label:
        cs.collections[0].set_label(label) if hasattr(cs, "collections") else None
    if x is not None:
        xc = x.detach().cpu().numpy()
        yc = y.detach().cpu().numpy() if y is not None else None
        ax.scatter(xc[:, 0], xc[:, 1], c=yc, cmap="coolwarm", s=12, edgecolor="k", linewidth=0.3)
    if highlight is not None:
        h = np.atleast_2d(highlight.detach().cpu().numpy() if torch.is_tensor(highlight) else highlight)
        ax.scatter(h[:, 0], h[:, 1], marker="*", s=250, c=COLORS["forget"], edgecolor="k", zorder=5)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def histograms(
    values: dict, ax=None, bins: int = 40, xlabel: str = "", title: str | None = None, density: bool = True
):
    """Overlaid histograms of several named 1-D arrays (e.g. losses of forget vs test samples)."""
    ax = _ax(ax)
    for i, (name, v) in enumerate(values.items()):
        v = v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
        c = COLORS.get(name.split()[0].lower(), color_for(name, i))
        ax.hist(v, bins=bins, alpha=0.45, density=density, label=f"{name} (n={len(v)})", color=c)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "count")
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def metric_bars(
    df,
    columns=("test_retain", "test_forget"),
    ax=None,
    title: str | None = None,
    ylabel: str = "accuracy (%)",
):
    """Grouped bars: one group per method (row of ``df``), one bar per column."""
    ax = _ax(ax, (max(6, 1.2 * len(df)), 4))
    cols = [c for c in columns if c in df.columns]
    w = 0.8 / max(1, len(cols))
    xs = np.arange(len(df))
    palette = {
        "train_forget": COLORS["forget"],
        "test_forget": "#ff9896",
        "train_retain": COLORS["retain"],
        "test_retain": "#aec7e8",
    }
    for i, c in enumerate(cols):
        ax.bar(xs + (i - (len(cols) - 1) / 2) * w, df[c].values, w, label=c, color=palette.get(c))
    ax.set_xticks(xs)
    ax.set_xticklabels(df.index, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def runtime_bars(seconds: dict, ax=None, title: str = "wall time of the unlearning call", log: bool = True):
    """Horizontal bars of seconds per method (log scale by default: methods differ by orders)."""
    ax = _ax(ax, (6, 0.5 * len(seconds) + 1.5))
    names = list(seconds)
    vals = [seconds[n] for n in names]
    ax.barh(names, vals, color=[color_for(n, i) for i, n in enumerate(names)])
    if log:
        ax.set_xscale("log")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.3g}s", va="center", fontsize="small")
    ax.set_xlabel("seconds")
    ax.set_title(title)
    return ax


def heatmap(df, ax=None, title: str | None = None, fmt: str = ".1f", cmap: str = "viridis", **kw):
    """An annotated heatmap of a DataFrame (rows x columns), e.g. a hyper-parameter sweep."""
    import seaborn as sns

    ax = _ax(ax)
    sns.heatmap(df, annot=True, fmt=fmt, cmap=cmap, ax=ax, **kw)
    if title:
        ax.set_title(title)
    return ax


def image_grid(x, labels=None, ncols: int = 8, ax=None, title: str | None = None):
    """A grid of images in [0, 1] (N, C, H, W)."""
    import matplotlib.pyplot as plt

    x = x.detach().cpu().float().clamp(0, 1)
    n = len(x)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 1.1, nrows * 1.2), squeeze=False)
    for i, a in enumerate(axes.flat):
        a.axis("off")
        if i < n:
            img = x[i].permute(1, 2, 0).numpy()
            a.imshow(
                img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None
            )
            if labels is not None:
                a.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def spread(
    runs,
    metric: str,
    ax=None,
    reference: str = "retrain",
    by: str = "forget",
    title: str | None = None,
    ylabel: str | None = None,
    skip=("original",),
):
    """The spread of one metric per method over seeds and forget classes.

    ``runs`` is :attr:`unlearnkit.bench.Spread.runs` (or the Spread itself). One column of points
    per method (colour: the forget class, or ``by``), a bar for the mean and a line for ± std; the
    reference (retrain) band (mean ± std) runs behind every method. Diverged runs are counted
    under the method's name instead of plotted.
    """
    import matplotlib.pyplot as plt

    runs = getattr(runs, "runs", runs)
    methods = [m for m in dict.fromkeys(runs["method"]) if m not in skip]
    ax = _ax(ax, (max(6, 1.1 * len(methods) + 2), 4))
    ref = runs[(runs["method"] == reference) & ~runs["diverged"]][metric]
    if len(ref):
        lo, hi = (
            ref.mean() - ref.std(ddof=1 if len(ref) > 1 else 0),
            ref.mean() + ref.std(ddof=1 if len(ref) > 1 else 0),
        )
        ax.axhspan(lo, hi, color=COLORS["retrain"], alpha=0.15, lw=0)
        ax.axhline(ref.mean(), color=COLORS["retrain"], ls="--", lw=1, label=f"{reference} mean ± std")
    groups = list(dict.fromkeys(runs[by]))
    cmap = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    labels = []
    for i, m in enumerate(methods):
        r = runs[runs["method"] == m]
        ok = r[~r["diverged"]]
        n_div = int(r["diverged"].sum())
        for j, gval in enumerate(groups):
            v = ok[ok[by] == gval][metric].to_numpy(dtype=float)
            ax.scatter(
                i + rng.uniform(-0.18, 0.18, len(v)),
                v,
                s=18,
                color=cmap(j % 10),
                alpha=0.8,
                label=f"{by} {gval}" if i == 0 and len(groups) > 1 else None,
                zorder=3,
            )
        if len(ok):
            mu, sd = ok[metric].mean(), ok[metric].std(ddof=1) if len(ok) > 1 else 0.0
            ax.errorbar(i, mu, yerr=sd, fmt="_", color="k", markersize=22, capsize=6, lw=1.5, zorder=4)
        labels.append(m + (f"\n({n_div}/{len(r)} diverged)" if n_div else ""))
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize="small")
    ax.set_ylabel(ylabel or metric)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="x-small", loc="best")
    return ax
