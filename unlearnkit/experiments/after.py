"""The chapter on the methods that came after the five papers: SCRUB, NegGrad+, SalUn, ℓ1-sparse
and SSD, beside the seed methods that see the same data.

Explained in ``book/08_after_the_five.ipynb``. The methods themselves live in
:mod:`unlearnkit.methods` (``scrub``, ``salun``, ``l1_sparse``, ``ssd``); this module holds what
the chapter measures about them:

* :func:`specs` and :func:`same_access`: each method with its registered preset for a profile,
  and the seed methods whose access level matches the new ones' (read from the registry);
* :func:`watch`: what a gradient-based method's model looks like after every epoch (a probe
  called at epoch 0 and after each epoch of its descent loop), without touching the method;
* :func:`alpha_schedule`, :func:`layer_share`: ℓ1-sparse's α_t and a mask's share per layer;
* :func:`saliency_scores`, :func:`overlap_curve`: SalUn's saliency against Fisher masking's
  score, as the overlap of their top-k sets against that of two random sets;
* :func:`ssd_factors`, :func:`fisher_uses`: SSD's selection and dampening factors, and how SSD,
  Fisher masking and Fisher forgetting use the diagonal Fisher information.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats

from ..fisher import diag_fisher
from ..methods import get_method
from ..methods.l1_sparse import l1_norm
from ..methods.masks import fisher_scores, maskable, top_mask
from ..methods.salun import saliency as _saliency
from ..methods.scrub import distill_kl
from ..methods.ssd import dampening as _dampening
from ..methods.ssd import importances as _importances
from ..training import batches

NEW = ("scrub", "neggrad_plus", "salun", "l1_sparse", "ssd")


# ----------------------------------------------------------------------------- which methods


def record(name: str):
    """The registry's record of ``name`` (``uk.get_method(name).record``)."""
    return get_method(name).record


def specs(names, profile: str, task: str = "full-class", override: dict | None = None) -> dict:
    """``{name: (name, hyper-parameters)}``: each method with its registered preset for
    ``profile`` on ``task``, updated by ``override[name]`` (the chapter's stated departures)."""
    override = override or {}
    return {n: (n, {**record(n).preset(profile, task), **override.get(n, {})}) for n in names}


def access_table(names, profile: str, task: str = "full-class") -> pd.DataFrame:
    """One row per method: its paper, access level, the tasks it is designed for and its preset."""
    rows = {}
    for n in names:
        r = record(n)
        hp = r.preset(profile, task)
        rows[n] = {
            "paper": r.paper,
            "access": r.access,
            "tasks": ", ".join(r.tasks) if r.tasks else "all its access allows",
            f"{profile} preset": ", ".join(f"{k}={v}" for k, v in hp.items()) or "defaults",
        }
    out = pd.DataFrame(rows).T
    out.index.name = "method"
    return out


def same_access(candidates, reference, task: str = "full-class") -> list:
    """The ``candidates`` whose access level is one of the ``reference`` methods' and that may run
    on ``task``, in the given order."""
    levels = {record(n).access for n in reference}
    return [n for n in candidates if record(n).access in levels and record(n).applicable(task) is None]


# ----------------------------------------------------------------------------- per-epoch probes


class Runs:
    """A ``make_task(item, seed)`` for :func:`unlearnkit.run_spread` that remembers the task of
    the run in progress (``task``, ``seed``, ``forget``), so that a probe of :func:`watch` can
    look at that run's data."""

    def __init__(self, make_task):
        self.make_task = make_task
        self.task, self.seed, self.forget = None, None, None

    def __call__(self, item, seed):
        self.task, self.seed, self.forget = self.make_task(item, seed), seed, item
        return self.task


@contextlib.contextmanager
def watch(method: str, probe, runs: Runs | None = None):
    """Inside the block, every descent loop of the registered method ``method`` (e.g.
    ``"scrub"``: the loops its module starts under that name) calls ``probe(model, start)`` (a
    dict of numbers; ``start`` a frozen copy of the model as the loop found it) before the first
    epoch and after each epoch, without gradients. Yields the list of records ``{"call": n,
    "seed", "forget" (from ``runs``), "epoch": e, "loss": the epoch's mean training loss (NaN at
    0), **probe(...)}``. The method runs unchanged: only its loop's ``on_epoch`` hook is set."""
    mod = importlib.import_module(record(method).fn.__module__)
    real = mod.descend
    out: list = []
    calls = [0]

    def look(model, start, epoch, loss):
        was = model.training
        model.eval()
        where = {"seed": runs.seed, "forget": runs.forget} if runs is not None else {}
        try:
            with torch.no_grad():
                seen = probe(model, start)
                out.append({"call": calls[0], **where, "epoch": epoch, "loss": float(loss), **seen})
        finally:
            model.train(was)

    def descend(model, *args, on_epoch=None, **kwargs):
        if kwargs.get("desc") != method:
            return real(model, *args, on_epoch=on_epoch, **kwargs)
        calls[0] += 1
        start = copy.deepcopy(model).eval()
        for p in start.parameters():
            p.requires_grad_(False)
        look(model, start, 0, float("nan"))

        def hook(epoch, loss):
            look(model, start, epoch + 1, loss)
            if on_epoch is not None:
                on_epoch(epoch, loss)

        return real(model, *args, on_epoch=hook, **kwargs)

    mod.descend = descend
    try:
        yield out
    finally:
        mod.descend = real


def per_epoch(records: list, columns) -> pd.DataFrame:
    """Mean and std over the runs (the calls of :func:`watch`) of ``columns`` per epoch."""
    df = pd.DataFrame(records)
    return df.groupby("epoch")[list(columns)].agg(["mean", "std"])


def _mean_over(fn, *tensors, batch_size=256) -> float:
    total, n = 0.0, 0
    for b in batches(*tensors, batch_size=batch_size):
        total += float(fn(*b)) * len(b[0])
        n += len(b[0])
    return total / max(n, 1)


def _probe_sets(runs: Runs, n: int | None):
    """The first ``n`` forget and retain images of the run in progress (a class-mixed retain
    sample: the retain set is ordered as the data set is)."""
    xf, yf = runs.task.forget_set()
    xr, yr = runs.task.retain_set()
    if n is not None and n < len(xr):
        idx = torch.randperm(len(xr), generator=torch.Generator().manual_seed(0))[:n].to(xr.device)
        xr, yr = xr[idx], yr[idx]
    return xf[:n], yf[:n], xr, yr


def kl_probe(runs: Runs, T: float, n: int | None = None):
    """A probe for :func:`watch`: SCRUB's KL_T(student, teacher) on (at most ``n``) forget images
    (what its max-steps ascend) and retain images (what its min-steps keep small); the teacher
    is the model as the loop found it, i.e. the original."""

    def probe(model, start):
        xf, _, xr, _ = _probe_sets(runs, n)

        def kl(xb):
            return distill_kl(model(xb), start(xb), T)

        return {"KL forget": _mean_over(kl, xf), "KL retain": _mean_over(kl, xr)}

    return probe


def ce_probe(runs: Runs, n: int | None = None):
    """A probe for :func:`watch`: the mean cross-entropy on (at most ``n``) forget and retain
    images of the run in progress."""

    def probe(model, start):
        xf, yf, xr, yr = _probe_sets(runs, n)

        def ce(xb, yb):
            return F.cross_entropy(model(xb).float(), yb)

        return {"CE forget": _mean_over(ce, xf, yf), "CE retain": _mean_over(ce, xr, yr)}

    return probe


def l1_probe(model, start=None) -> dict:
    """A probe for :func:`watch`: ‖θ‖₁, the norm ℓ1-sparse penalises."""
    return {"L1 norm": float(l1_norm(model))}


def alpha_schedule(alpha: float, epochs: int) -> np.ndarray:
    """ℓ1-sparse's α_t = α (1 − t / T) for the epochs t = 0 … T − 1 (as ``l1_sparse`` applies it)."""
    t = np.arange(int(epochs), dtype=float)
    return float(alpha) * (1.0 - t / max(int(epochs), 1))


# ----------------------------------------------------------------------------- masks


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its name without the last part (``layer1.0.conv1``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def layer_share(mask: dict) -> pd.Series:
    """Per layer (parameters grouped by :func:`layer_of`, in model order), the share (%) of its
    parameters that ``mask`` (``{name: bool tensor}``) keeps."""
    kept, size = {}, {}
    for n, m in mask.items():
        key = layer_of(n)
        kept[key] = kept.get(key, 0) + int(m.sum())
        size[key] = size.get(key, 0) + m.numel()
    return pd.Series({k: 100.0 * kept[k] / size[k] for k in kept}, name="% of the layer")


def saliency_scores(model, x, y, batch_size: int = 256) -> dict:
    """SalUn's weight saliency: ``{name: |∂ Σ CE(f(x), y) / ∂θ|}`` at the current weights, in eval
    mode (:func:`unlearnkit.methods.salun.saliency`, what ``saliency_mask`` thresholds)."""
    return _saliency(model, x, y, batch_size)


def top_fraction(scores: dict, fraction: float) -> dict:
    """Boolean masks of the top ``fraction`` of all the entries of ``scores`` (at least one)."""
    n = sum(s.numel() for s in scores.values())
    return top_mask(scores, max(1, int(round(fraction * n))))


def _flat(mask: dict, names) -> torch.Tensor:
    return torch.cat([mask[n].flatten().cpu() for n in names])


def jaccard(a: dict, b: dict) -> float:
    """|A ∩ B| / |A ∪ B| of two masks over the same parameters."""
    names = list(a)
    fa, fb = _flat(a, names), _flat(b, names)
    union = int((fa | fb).sum())
    return float((fa & fb).sum()) / union if union else float("nan")


def chance_jaccard(fraction: float) -> float:
    """The expected Jaccard index of two independent random masks that each keep ``fraction`` of
    a large set: f² / (2f − f²) = f / (2 − f)."""
    return fraction / (2.0 - fraction)


def overlap_curve(a: dict, b: dict, fractions, seed: int = 0) -> pd.DataFrame:
    """For each fraction f: the Jaccard index of the top-f masks of the scores ``a`` and ``b``
    (over the parameters both score), the share of a's top-f that is also in b's, the Jaccard of
    two random masks of the same size (drawn from ``seed``) and the chance value f / (2 − f)."""
    names = [n for n in a if n in b]
    sa, sb = {n: a[n] for n in names}, {n: b[n] for n in names}
    total = sum(sa[n].numel() for n in names)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for f in fractions:
        ma, mb = top_fraction(sa, f), top_fraction(sb, f)
        fa, fb = _flat(ma, names), _flat(mb, names)
        k = int(fa.sum())
        r1, r2 = torch.zeros(total, dtype=torch.bool), torch.zeros(total, dtype=torch.bool)
        r1[torch.randperm(total, generator=g)[:k]] = True
        r2[torch.randperm(total, generator=g)[:k]] = True
        rows.append(
            {
                "fraction": float(f),
                "jaccard": float((fa & fb).sum()) / max(int((fa | fb).sum()), 1),
                "shared": float((fa & fb).sum()) / max(k, 1),
                "random": float((r1 & r2).sum()) / max(int((r1 | r2).sum()), 1),
                "chance": chance_jaccard(k / total),
            }
        )
    return pd.DataFrame(rows)


def _retain_sample(task, n: int | None, seed: int):
    """``(x, y)`` of D_r, or of ``n`` of its images drawn with ``seed`` when it holds more."""
    xr, yr = task.retain_set()
    if n is not None and n < len(xr):
        idx = torch.randperm(len(xr), generator=torch.Generator().manual_seed(seed))[:n].to(xr.device)
        xr, yr = xr[idx], yr[idx]
    return xr, yr


def mask_overlap(model, task, fractions, *, n_retain: int | None = None, seed: int = 0) -> pd.DataFrame:
    """:func:`overlap_curve` of SalUn's saliency (on D_f) against Fisher masking's score
    (F_f − F_r, per-sample means, the library's default), over the parameters Fisher masking
    may mask (every one but the final classifier's). ``n_retain`` subsamples D_r for F_r."""
    xf, yf = task.forget_set()
    xr, yr = _retain_sample(task, n_retain, seed)
    keep = maskable(model)
    sal = {n: s for n, s in saliency_scores(model, xf, yf).items() if n in keep}
    fish = fisher_scores(model, xf, yf, xr, yr, reduction="mean")
    return overlap_curve(sal, fish, fractions, seed=seed)


# ----------------------------------------------------------------------------- SSD and the Fisher


def ssd_factors(
    model,
    task,
    *,
    alpha: float = 10.0,
    lam: float = 1.0,
    batch_size: int = 64,
    n_samples: int | None = None,
    seed: int = 0,
) -> dict:
    """What :func:`unlearnkit.methods.ssd` computes, laid open: ``{"imp_d", "imp_f", "beta",
    "selected"}`` (dicts per parameter): the importances on D = D_r ∪ D_f and on D_f (squared
    mini-batch gradients), the dampening factors β = min(λ []_D / []_f, 1) of the selected
    parameters (1 elsewhere) and the selection []_f > α []_D. ``n_samples`` and ``seed``
    subsample D as ``ssd`` does with the same arguments (:func:`unlearnkit.methods.ssd.importances`
    and :func:`unlearnkit.methods.ssd.dampening`)."""
    imp_d, imp_f = _importances(model, task, batch_size=batch_size, n_samples=n_samples, seed=seed)
    beta, sel = _dampening(imp_d, imp_f, alpha, lam)
    return {"imp_d": imp_d, "imp_f": imp_f, "beta": beta, "selected": sel}


def selected_betas(factors: dict) -> np.ndarray:
    """The dampening factors β of the parameters SSD selected (its histogram's data)."""
    vals = [factors["beta"][n][factors["selected"][n]].flatten().cpu() for n in factors["beta"]]
    return torch.cat(vals).numpy() if vals else np.zeros(0)


def fisher_uses(model, task, factors: dict, *, n_retain: int | None = None, seed: int = 0,
                sample: int = 200_000) -> dict:  # fmt: skip
    """How three methods read the diagonal Fisher on the same model, over the parameters Fisher
    masking may mask: SSD's ratio []_f / []_D (``factors`` from :func:`ssd_factors`), Fisher
    masking's F_f − F_r (empirical, per-sample means) and Fisher forgetting's noise variance
    1 / F_r (true Fisher of D_r, before its clipping and averaging).

    Returns ``{"spearman": {pair: ρ}, "overlap": share of SSD's selected parameters that are also
    in the top of F_f − F_r of the same size, "chance": that share for a random set (the selected
    share), "selected": SSD's selected share}``; ρ over at most ``sample`` parameters drawn at
    random (``seed``)."""
    xf, yf = task.forget_set()
    xr, yr = _retain_sample(task, n_retain, seed)
    names = list(maskable(model))
    mask_score = fisher_scores(model, xf, yf, xr, yr, reduction="mean")
    f_true = diag_fisher(model, xr, yr, kind="true")
    ratio = {n: factors["imp_f"][n] / factors["imp_d"][n].clamp_min(1e-30) for n in names}
    noise = {n: 1.0 / f_true[n].clamp_min(1e-30) for n in names}

    def flat(d):
        return torch.cat([d[n].detach().flatten().float().cpu() for n in names])

    r, m, v = flat(ratio), flat(mask_score), flat(noise)
    sel = torch.cat([factors["selected"][n].flatten().cpu() for n in names])
    k = int(sel.sum())
    top = torch.zeros_like(sel)
    if k:
        top[torch.topk(m, k).indices] = True
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(r), generator=g)[:sample]
    rho = {
        "SSD ratio vs masking score": stats.spearmanr(r[pick], m[pick]).statistic,
        "masking score vs forgetting noise": stats.spearmanr(m[pick], v[pick]).statistic,
        "SSD ratio vs forgetting noise": stats.spearmanr(r[pick], v[pick]).statistic,
    }
    share = k / len(sel)
    return {
        "spearman": {p: float(x) for p, x in rho.items()},
        "overlap": float((top & sel).sum()) / k if k else float("nan"),
        "chance": share,
        "selected": share,
    }


def diverged_word(spread, method: str) -> str:
    """``"diverged in k of n runs"`` or ``""`` for a method of a :class:`~unlearnkit.Spread`."""
    r = spread.runs[spread.runs["method"] == method]
    k = int(r["diverged"].sum())
    return f"diverged in {k} of {len(r)} runs" if k else ""


def is_finite(x) -> bool:
    """Whether ``x`` is a finite number."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


class Collect:
    """An ``on_run`` hook for :func:`unlearnkit.run_spread` that keeps, from every run, what the
    chapter's figures need: ``first`` (the first run, its models included), ``norms`` (per run:
    ‖θ‖₁ of the original, ``finetune`` and ``l1_sparse`` models and SSD's selected share, as
    ``"L1 <name>"`` and ``"SSD selected %"`` arrays), ``salun_layers`` (per run, SalUn's mask
    share per layer) and ``overlap`` (per run, :func:`mask_overlap` at ``fractions``)."""

    def __init__(self, fractions, n_retain: int | None = None):
        self.fractions = list(fractions)
        self.n_retain = n_retain
        self.first = None
        self.rows: list = []
        self.salun_layers: list = []
        self.salun_share: list = []
        self.overlap: list = []

    def __call__(self, run) -> None:
        if self.first is None:
            self.first = run
        m = run.models
        with torch.no_grad():
            row = {f"L1 {n}": float(l1_norm(m[n])) for n in ("original", "finetune", "l1_sparse") if n in m}
        if "ssd" in m:
            row["SSD selected %"] = 100.0 * m["ssd"].unlearn_info["selected_share"]
        self.rows.append(row)
        if "salun" in m:
            self.salun_layers.append(layer_share(m["salun"].unlearn_info["mask"]))
            self.salun_share.append(100.0 * m["salun"].unlearn_info["mask_share"])
        if "original" in m:
            ov = mask_overlap(m["original"], run.task, self.fractions, n_retain=self.n_retain, seed=run.seed)
            self.overlap.append(ov.assign(seed=run.seed, forget=str(run.forget)))

    @property
    def norms(self) -> dict:
        """``{column: array over the runs}`` of :attr:`rows`."""
        df = pd.DataFrame(self.rows)
        return {c: df[c].to_numpy(float) for c in df.columns}
