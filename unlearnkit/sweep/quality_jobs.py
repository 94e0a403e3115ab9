"""The per-example forget-quality score of a sweep's methods: many models per group.

Part of :mod:`unlearnkit.sweep`; the score itself is :mod:`unlearnkit.quality`, and the showdown
chapter (``book/09_showdown.ipynb``) explains both.
"""

from __future__ import annotations

import hashlib
import json
import time

import pandas as pd

from ..methods import applicable
from ..results import SweepError
from .config import SweepConfig, hp_for
from .engines import progress_bar, ray_map
from .run import make_task, prepare, use_profile

# the caches hold tensors and plain Python values only, so they load with weights_only=True;
# the version in their names keeps files of another layout from being read
CACHE_VERSION = "v2"


def _jobs_to_file(res: list) -> list:
    import torch

    return [
        {
            name: None if r is None else {**r, "conf": torch.as_tensor(r["conf"], dtype=torch.float64)}
            for name, r in one.items()
        }
        for one in res
    ]


def _jobs_from_file(res: list) -> list:
    return [
        {name: None if r is None else {**r, "conf": r["conf"].numpy()} for name, r in one.items()}
        for one in res
    ]


def _table_to_file(tab: pd.DataFrame, eps: dict, seconds: float) -> dict:
    import torch

    columns = {c: [float(v) for v in tab[c].astype(float)] for c in tab.columns}
    eps = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in eps.items()}
    return {"index": [str(i) for i in tab.index], "columns": columns, "eps": eps, "seconds": float(seconds)}


def _table_from_file(got: dict) -> tuple[pd.DataFrame, dict, float]:
    tab = pd.DataFrame(got["columns"], index=got["index"]).rename_axis("method")
    return tab, {k: v.numpy() for k, v in got["eps"].items()}, got["seconds"]


GROUPINGS = ("one original", "originals")
REF_NAME = "retrain (other seeds)"


def quality_one(args) -> dict:
    """One seed of the forget-quality score: the logit-scaled confidence on every forget example
    of the retrain model (seed s), of an extra retrain model (seed s + 1000: the retrain-vs-retrain
    reference), of the original and of each method applied to the original, with retain, test and
    forget accuracy. ``args = (cfg, task, forget, seed, methods[, grouping[, original_seed]])``;
    ``grouping``: ``"one original"`` (the challenge's: the original of ``original_seed``, the
    same for every seed, each method run with seed s) or ``"originals"`` (the default, a variant:
    the original of seed s). Runs anywhere (in-process or on a Ray worker)."""
    from ..methods import get_method
    from ..metrics import evaluate
    from ..quality import confidences
    from ..training import DivergedError

    cfg, task_name, forget, seed, methods = args[:5]
    grouping = args[5] if len(args) > 5 else "originals"
    original_seed = int(args[6]) if len(args) > 6 else 0
    if grouping not in GROUPINGS:
        raise SweepError(f"Unknown grouping {grouping!r}: {' or '.join(map(repr, GROUPINGS))}.")
    cfg = cfg if isinstance(cfg, SweepConfig) else SweepConfig(**cfg)
    use_profile(cfg, seed)
    task = make_task(cfg, task_name, forget, seed)
    kw = dict(cfg.train_kwargs(), progress=False, verbose=False)
    original, retrained = prepare(
        task, kw, seed, original_seed=original_seed if grouping == "one original" else None
    )
    models = {"retrain": retrained, REF_NAME: prepare(task, kw, seed + 1000)[1], "original": original}
    for m in methods:
        try:
            models[m] = get_method(m)(original, task, seed=seed, **hp_for(cfg, m, task_name))
        except DivergedError:
            models[m] = None
    xf, yf = task.forget_set()
    out = {}
    for name, m in models.items():
        if m is None:
            out[name] = None
            continue
        ev = evaluate(m, task, mia=False).iloc[0]
        out[name] = {
            "conf": confidences([m], xf, yf)[0],
            "train_retain": float(ev["train_retain"]),
            "test_retain": float(ev["test_retain"]),
            "train_forget": float(ev["train_forget"]),
        }
    return out


def _quality_key(cfg: SweepConfig, methods, parts: dict, score: bool) -> str:
    """The cache key of the forget-quality jobs (``score=False``: the configuration, the arguments
    and the code that decides the models' confidences: these jobs, the training and evaluation,
    each method's) or of the scored table (``score=True``: that, plus the score's modules)."""
    from .. import epsilon as emod
    from .. import quality as qmod
    from ..fingerprint import _combine, code_hash, eval_code, method_code, training_code

    code = _combine(
        code_hash(quality_one, make_task, hp_for, prepare),
        training_code(),
        eval_code(),
        *[method_code(m) for m in methods],
    )
    if score:
        code = _combine(code, code_hash(qmod, emod, quality))
    blob = json.dumps(
        {"cfg": cfg.fingerprint, "methods": list(methods), "code": code, **parts},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def quality_jobs(
    methods,
    task: str = "full-class",
    forget: str = "0",
    n_models: int = 32,
    cfg=None,
    grouping: str = "originals",
    original_seed: int = 0,
    engine: str = "local",
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = False,
    cache: bool = False,
) -> tuple[list, float]:
    """The ``n_models`` jobs of :func:`quality_one` (seeds 0..n−1): their results in seed order and
    the seconds they took; with ``cache=True`` stored beside the zoo (keyed by configuration,
    arguments and code) and loaded when present (the seconds are those of the run that made them)."""
    from .. import profiles

    cfg = cfg or SweepConfig.from_profile(profiles.active().name)
    if grouping not in GROUPINGS:
        raise SweepError(f"Unknown grouping {grouping!r}: {' or '.join(map(repr, GROUPINGS))}.")
    for m in methods:
        why = applicable(m, task)
        if why:
            raise SweepError(f"Cannot run {m} on the {task} task: {why}.")
    parts = dict(
        task=task,
        forget=str(forget),
        n_models=int(n_models),
        grouping=grouping,
        original_seed=int(original_seed),
    )
    path = None
    if cache:
        import torch

        path = (
            profiles.active().zoo_root
            / f"quality-jobs-{CACHE_VERSION}-{cfg.profile}-{_quality_key(cfg, methods, parts, False)}.pt"
        )
        if path.exists():
            got = torch.load(path, weights_only=True)
            return _jobs_from_file(got["res"]), got["seconds"]
    t0 = time.perf_counter()
    jobs = [
        (cfg.as_dict(), task, str(forget), s, list(methods), grouping, int(original_seed))
        for s in range(n_models)
    ]
    if engine == "local":
        from .. import budget

        bar = progress_bar(len(jobs), progress, "quality")
        res = []
        # a dry run's fewer models (profiles.Profile.fewer) count as the planned number (budget)
        with budget.loop(getattr(n_models, "planned", n_models) / max(1, int(n_models))):
            for j in jobs:
                res.append(quality_one(j))
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
    elif engine == "ray":
        res = ray_map(quality_one, jobs, address=address, num_cpus=num_cpus)
    else:
        raise SweepError(f"Unknown engine {engine!r}: 'local' or 'ray'.")
    if path is not None:
        from ..cache import atomic_save

        atomic_save({"res": _jobs_to_file(res), "seconds": time.perf_counter() - t0}, path)
    return res, time.perf_counter() - t0


def quality(
    methods,
    task: str = "full-class",
    forget: str = "0",
    n_models: int = 32,
    cfg=None,
    engine: str = "local",
    address: str | None = None,
    num_cpus: int | None = None,
    delta: float | None = None,
    sizes=(8, 16, 32),
    progress: bool = False,
    grouping: str = "originals",
    original_seed: int = 0,
    n_boot: int = 0,
    boot_seed: int = 0,
    examples: int | None = None,
    cache: bool = False,
):
    """The forget-quality score (:func:`unlearnkit.quality.forget_quality`) of each method against
    ``n_models`` retrained models (seeds 0..n−1), with the retrain-vs-retrain reference
    (``"retrain (other seeds)"``: retrained models of seeds n_models.. + 1000, what perfect
    unlearning scores with this many models) and the original.

    ``grouping``: ``"originals"`` (default, a variant: the unlearned group is one run from each of
    n originals of seeds 0..n−1) or ``"one original"`` (the challenge's: n unlearning runs with
    seeds 0..n−1 from ONE original, of ``original_seed``; its ``original`` row is that one model n
    times, which the score's peaky rule gives 0). ``delta``: None for the score's own δ.
    ``n_boot`` > 0 adds a bootstrap error bar over models (``F std``, ``F lo``, ``F hi``:
    :func:`unlearnkit.quality.forget_quality_ci`). ``examples``: score a fixed random subset of that
    many forget examples (drawn with a generator seeded 0), to save time. ``cache=True`` stores the
    result beside the zoo, keyed by the configuration, the arguments and the code, and loads it
    when present (``table.attrs["seconds"]``: the time it took when computed, ``["cached"]``).
    Each seed is one independent job (``engine="ray"`` fans them out). Returns ``(table, eps)``:
    a DataFrame with F (and its error bar), the final score, the median ε̂, the share of examples
    with ε̂ = ∞ (perfectly separated), accuracies, and F with the first ``sizes`` models of each
    group; and the ε̂ arrays."""
    import numpy as np
    import torch

    from .. import profiles
    from .. import quality as qmod

    cfg = cfg or SweepConfig.from_profile(profiles.active().name)
    parts = dict(
        task=task,
        forget=str(forget),
        n_models=int(n_models),
        delta=delta,
        sizes=list(sizes),
        grouping=grouping,
        original_seed=int(original_seed),
        n_boot=int(n_boot),
        boot_seed=int(boot_seed),
        examples=examples,
    )
    path = None
    if cache:
        path = (
            profiles.active().zoo_root
            / f"quality-{CACHE_VERSION}-{cfg.profile}-{_quality_key(cfg, methods, parts, True)}.pt"
        )
        if path.exists():
            tab, eps, seconds = _table_from_file(torch.load(path, weights_only=True))
            tab.attrs.update(seconds=seconds, cached=True)
            return tab, eps
    res, t_jobs = quality_jobs(
        methods,
        task,
        forget,
        n_models,
        cfg,
        grouping,
        original_seed,
        engine,
        address,
        num_cpus,
        progress,
        cache,
    )
    t0 = time.perf_counter()  # the scoring; the jobs' own time is t_jobs
    n_ex = len(res[0]["retrain"]["conf"])
    keep = np.arange(n_ex)
    if examples is not None and examples < n_ex:
        g = torch.Generator().manual_seed(0)
        keep = np.sort(torch.randperm(n_ex, generator=g)[: int(examples)].numpy())
    score_kw = {} if delta is None else {"delta": delta}
    ref = np.stack([r["retrain"]["conf"] for r in res])[:, keep]
    ra_r = np.mean([r["retrain"]["train_retain"] for r in res])
    ta_r = np.mean([r["retrain"]["test_retain"] for r in res])
    rows, eps_all = {}, {}
    for name in res[0]:
        if name == "retrain":
            continue
        ok = [r[name] for r in res if r.get(name) is not None]
        if len(ok) < 2:
            rows[name] = {"F": float("nan"), "final": float("nan"), "models": len(ok)}
            continue
        u = np.stack([o["conf"] for o in ok])[:, keep]
        n = min(len(u), len(ref))
        f, eps = qmod.forget_quality(u[:n], ref[:n], return_eps=True, **score_kw)
        ra, ta = np.mean([o["train_retain"] for o in ok]), np.mean([o["test_retain"] for o in ok])
        row = {"F": f}
        if n_boot:
            ci = qmod.forget_quality_ci(u[:n], ref[:n], n_boot=n_boot, seed=boot_seed, **score_kw)
            row.update({"F std": ci.std, "F lo": ci.lo, "F hi": ci.hi})
        row.update(
            {
                "final": qmod.final_score(f, ra, ta, ra_r, ta_r),
                "eps median": float(np.median(eps)),
                "eps inf %": 100 * float(np.mean(np.isinf(eps))),
                "train_forget": float(np.mean([o["train_forget"] for o in ok])),
                "train_retain": ra,
                "test_retain": ta,
                "models": n,
                "examples": len(keep),
            }
        )
        for k in sizes:
            if k < n:
                row[f"F ({k} models)"] = qmod.forget_quality(u[:k], ref[:k], **score_kw)
            elif k == n:
                row[f"F ({k} models)"] = f
        rows[name] = row
        eps_all[name] = eps
    tab = pd.DataFrame(rows).T.rename_axis("method").astype(float)
    seconds = t_jobs + time.perf_counter() - t0
    if path is not None:
        from ..cache import atomic_save

        atomic_save(_table_to_file(tab, eps_all, seconds), path)
    tab.attrs.update(seconds=seconds, cached=False)
    return tab, eps_all
