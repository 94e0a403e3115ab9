"""The experiments of the mnemonic-code chapter (one-shot class unlearning with the Fisher
information), explained in ``book/02_mnemonic_codes.ipynb``.

The chapter's settings per profile (:data:`CONFIGS`), the paper's numbers it sets its results
beside (Tables 2–3 and Appendix C.1 of Yamashita et al.), and the code that runs its sweeps and
per-class experiments and turns them into the chapter's tables. The chapter keeps only the code
of its figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import fisher as _fisher
from ..claims import verdict
from ..data import stratified_indices
from ..methods import average_fisher, class_fisher, mnemonic
from ..models import clone
from ..tasks import forget_classes
from ..training import FAST_RESNET18, accuracy, predict

# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

#: The paper's training recipe (SGD with momentum, cosine schedule).
PAPER_TRAIN = dict(lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="cosine", batch_size=128)
DIGITS = dict(
    dataset="digits",
    paper_data="MNIST",
    model="mlp",
    model_kwargs={"hidden": (256, 256)},
    epochs=100,
    sweep_epochs=100,
    train=PAPER_TRAIN,
    t_mix=0.1,
    code_seed=0,
    forget=0,
    lambdas={"paper": (1e-3, 10.0), "tuned": (0.1, 10.0)},
    finetune=dict(epochs=5, lr=0.02),
    neggrad=dict(epochs=4, lr=0.01, retain_weight=1.0),
    random_labels=dict(epochs=3, lr=1e-4),
    fisher=dict(alpha=1e-6),
    wdata_n=None,
    trigger_ratios=[0.0, 0.1, 0.3, 0.5, 0.8, 1.0],
    ex_epochs=100,  # Exercise 1's model (uniform codes)
    widget_log_l1=(-4, 0),
    widget_log_l2=(-1, 3),
)
#: The chapter's settings per profile (``P.config(CONFIGS)``).
CONFIGS = {
    "smoke": dict(
        DIGITS,
        paired=False,
        n_seeds=1,
        spread_forget=[0],
        tmix_sweep=[0.0, 0.1, 0.3],
        fisher=dict(alpha=1e-6, n_samples=256),
        wdata_n=100,
        n_data=[1, 100, None],
        sweep_l1=[1e-4, 1e-1, 1.0],
        sweep_l2=[1.0, 10.0, 100.0],
        wdata_l1=[1.0],
        wdata_l2=[10.0, 100.0],
        multi=[[0], [0, 1]],
    ),
    "quick": dict(
        DIGITS,
        paired=False,
        n_seeds=3,
        spread_forget=[0, 3, 5],
        tmix_sweep=[0.0, 0.1, 0.3, 0.5, 0.8],
        n_data=[1, 3, 10, 30, 100, None],
        sweep_l1=[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        sweep_l2=[0.1, 1.0, 10.0, 100.0, 1000.0],
        wdata_l1=[1e-2, 1e-1, 1.0],
        wdata_l2=[1.0, 10.0, 100.0],
        multi=[[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]],
    ),
    # full: the book's fast recipe instead of the paper's 200 epochs (a budget: see the
    # introduction); every comparison is between models trained alike
    "full": dict(
        DIGITS,
        dataset="cifar10",
        paper_data="CIFAR-10",
        model="resnet18",
        model_kwargs={},
        epochs=FAST_RESNET18["epochs"],
        train={k: v for k, v in FAST_RESNET18.items() if k not in ("model", "model_kwargs", "epochs")},
        # the t_mix sweep at the recipe's length: t_mix = 0 and 0.3 are the chapter's own models
        sweep_epochs=FAST_RESNET18["epochs"],
        ex_epochs=5,  # Exercise 1's model: a third of the recipe (a budget)
        paired=True,
        t_mix=0.3,
        lambdas={"paper": (1e-5, 1e4)},
        fisher=dict(alpha=1e-6, n_samples=10_000),  # the library's full preset: a sample of D_r
        n_seeds=3,
        spread_forget=[0, 3, 5],
        wdata_n=1000,
        wdata_l1=[1e-6, 1e-5, 1e-4],
        wdata_l2=[1e3, 1e4, 1e5],
        tmix_sweep=[0.0, 0.3, 0.8],
        # the baselines' epochs cut to fit the budget (the paper gives none for CIFAR-10)
        finetune=dict(epochs=1, lr=0.02),
        neggrad=dict(epochs=1, lr=0.01, retain_weight=1.0),
        random_labels=dict(epochs=1, lr=1e-4),
        n_data=[1, 10, 100, 1000, None],
        sweep_l1=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2],
        sweep_l2=[1e2, 1e3, 1e4, 1e5],
        multi=[[0], [0, 1], [0, 1, 2]],
        widget_log_l1=(-7, -2),
        widget_log_l2=(1, 5),
    ),
}


def trim_for_dry_run(cfg, P) -> None:
    """Shorten ``cfg`` in place for a dry run, which checks each code path once: one seed and
    class, the sweeps' ends; the λ grids keep the pair the chapter uses. Nothing changes outside
    a dry run."""
    if not P.dry_run:
        return
    for k in ("n_data", "wdata_l1", "wdata_l2", "multi"):
        setattr(cfg, k, P.few(getattr(cfg, k), last=True))
    cfg.tmix_sweep = _ends_and(P, cfg.tmix_sweep, cfg.t_mix)  # its t_mix is the chapter's original
    used = cfg.lambdas.get("tuned", cfg.lambdas["paper"])
    cfg.sweep_l1 = _ends_and(P, cfg.sweep_l1, used[0])
    cfg.sweep_l2 = _ends_and(P, cfg.sweep_l2, used[1])
    cfg.spread_forget = P.few(cfg.spread_forget)  # the chapter's P.few keeps one seed


def _ends_and(P, grid, used) -> list:
    """A grid's two ends and the value the chapter uses, sorted; a dry run's work over them counts
    as the whole grid's (:class:`unlearnkit.profiles.Few`)."""
    from ..profiles import Few

    kept = sorted({*P.few(grid, last=True), used})
    return Few(kept, planned=len(grid)) if len(kept) < len(grid) else kept


#: The paper's Tables 2–3 (mean ± std of three runs: A_R, E_F) and Appendix C.1 (MIA AUC,
#: CIFAR-10), per dataset and method.
PAPER = {
    "MNIST": {
        "mnemonic (paper’s λ)": ("95.9 ± 0.1", "100 ± 0.0", "–"),
        "Fisher forgetting": ("94.1 ± 0.7", "100 ± 0.0", "–"),
    },
    "CIFAR-10": {
        "mnemonic (paper’s λ)": ("94.4 ± 0.1", "100 ± 0.0", "0.49"),
        "Fisher forgetting": ("93.4 ± 0.2", "96.3 ± 2.5", "–"),
    },
}

# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------


def ar_ef(model, task) -> tuple:
    """The paper's two numbers on the test set, in %: ``A_R`` (accuracy on the retained classes)
    and ``E_F`` (error on the forgotten ones, 100 − accuracy)."""
    return accuracy(model, *task.test_retain()), 100 - accuracy(model, *task.test_forget())


def lambda_grid(run, task, l1s, l2s) -> tuple:
    """``A_R`` and ``E_F`` (:func:`ar_ef`) of ``run(λ1, λ2)`` (an unlearned model) over the grid
    ``l1s`` × ``l2s``: two DataFrames, λ1 rows × λ2 columns."""
    res = {(a, b): ar_ef(run(a, b), task) for a in l1s for b in l2s}

    def frame(i):
        return pd.Series({k: v[i] for k, v in res.items()}).unstack().rename_axis(index="λ1", columns="λ2")

    return frame(0), frame(1)


def unlearn_at(lambda1, lambda2, *, method, model, task, **hp):
    """One point of a :func:`lambda_grid`: ``method(model, task, lambda1=λ1, lambda2=λ2, **hp)``,
    the unlearned model. Explained in ``book/02_mnemonic_codes.ipynb``."""
    return method(model, task, lambda1=lambda1, lambda2=lambda2, **hp)


def best_pair(a_r: pd.DataFrame, e_f: pd.DataFrame) -> tuple:
    """The ``(λ1, λ2)`` of a :func:`lambda_grid` with the largest ``A_R + E_F`` (the paper's
    rule)."""
    return (a_r + e_f).stack().idxmax()


def mnemonic_spec(codes, lambdas, check_codes: bool) -> tuple:
    """``("mnemonic", hyper-parameters)`` for :func:`unlearnkit.run_spread`, with the chapter's
    codes and the pair ``lambdas = (λ1, λ2)``."""
    return (
        "mnemonic",
        {"codes": codes, "lambda1": lambdas[0], "lambda2": lambdas[1], "check_codes": check_codes},
    )


class Keep:
    """The ``on_run`` hook of :func:`unlearnkit.run_spread` that keeps the original of every
    seed (``originals``) and the models of the run ``(seed, item)`` (``models``)."""

    def __init__(self, seed, item):
        self.run = (seed, item)
        self.originals, self.models = {}, {}

    def __call__(self, run):
        self.originals[run.seed] = run.models["original"]
        if (run.seed, run.forget) == self.run:
            self.models.update(run.models)


def runs_at(runs: pd.DataFrame, method: str, forget) -> pd.DataFrame:
    """The runs of ``method`` on the forget class ``forget``, indexed by seed."""
    return runs[(runs.method == method) & (runs.forget == forget)].set_index("seed")


def summary_mean(summary: pd.DataFrame, method: str, metric: str) -> float:
    """The mean of ``metric`` over the runs of ``method`` in a spread's summary (its column
    ``"<metric> mean"``). Explained in ``book/02_mnemonic_codes.ipynb``."""
    return summary.loc[method, f"{metric} mean"]


def vs_original(table: pd.DataFrame, method: str, words, margin: float = 1.0):
    """The verdict on ``method``'s ``A_R`` against the original's: ``table`` has one column per
    method and one row per run (seed, forget class); the runs both have are compared, paired
    when there are more than one. Explained in ``book/02_mnemonic_codes.ipynb``."""
    pair = table[[method, "original"]].dropna().T.to_numpy()  # [its runs, the original's runs]
    return verdict(*pair, paired=pair.shape[1] > 1, margin=margin, words=words)


def headline(sp, paper_data: str) -> pd.DataFrame:
    """Tables 2–3: the paper's ``A_R``, ``E_F`` and MIA AUC on ``paper_data`` beside ours (mean ±
    std over the runs), with our wall time and number of runs; ``–`` where one side has none."""
    paper = pd.DataFrame(PAPER[paper_data], index=["A_R", "E_F", "MIA"]).T
    ours = sp.table(["test_retain", "E_F"], digits=1)
    cols = {
        ("A_R (%)", "paper"): paper["A_R"],
        ("A_R (%)", "ours"): ours["test_retain"],
        ("E_F (%)", "paper"): paper["E_F"],
        ("E_F (%)", "ours"): ours["E_F"],
        ("MIA loss AUC", "paper"): paper["MIA"],
        ("MIA loss AUC", "ours"): sp.table(["MIA_loss_AUC"], digits=2)["MIA_loss_AUC"],
        ("time (s)", "ours"): sp.table(["seconds"], digits=3)["seconds"],
        ("runs", ""): ours["runs"],
    }
    out = pd.DataFrame(cols).reindex(sp.methods).fillna("–")
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def posinf_table(original, rules: dict, eta_d: dict) -> pd.DataFrame:
    """What each rule for ``η = +∞`` does, per tensor that has such entries (``eta_d``: the ratios
    with ``posinf="dtype_max"``, whose ``+∞`` entries are the largest float): their count, each
    rule's step size α, how many entries it moves by more than 1e-6 and its largest move of a
    ``+∞`` entry. ``rules``: ``{rule: the unlearned model}``."""
    w0 = dict(original.named_parameters())
    rows = {}
    for n, e in eta_d.items():
        inf = e == torch.finfo(torch.float32).max
        if not inf.any():
            continue
        row = {"+inf entries": int(inf.sum()), "entries": e.numel()}
        for rule, m in rules.items():
            delta = (dict(m.named_parameters())[n] - w0[n]).detach().abs()
            row[f"α, {rule}"] = m.unlearn_info["alpha"][n]
            row[f"moved, {rule}"] = int((delta > 1e-6).sum())
            row[f"move of +inf entries, {rule}"] = delta[inf].max().item()
        rows[n] = row
    return pd.DataFrame(rows).T


def per_class_runs(originals: dict, data, codes, classes, l1, l2, check_codes) -> pd.DataFrame:
    """Every class in turn with one pair (λ1, λ2), on each seed's original: one row per (seed,
    class) with ``A_R``, ``E_F``, ``A_R before``, the chosen sign and its scores on the codes."""
    rows = []
    for seed, orig in originals.items():
        for c in classes:
            t = forget_classes(data, [c])
            m = mnemonic(orig, t, codes=codes, lambda1=l1, lambda2=l2, check_codes=check_codes)
            i = m.unlearn_info
            a_r, e_f = ar_ef(m, t)
            rows.append(
                {
                    "seed": seed,
                    "class": c,
                    "A_R": a_r,
                    "E_F": e_f,
                    "A_R before": accuracy(orig, *t.test_retain()),
                    "sign": i["sign"],
                    "codes A_R": i["scores"][i["sign"]]["A_R"],
                    "codes E_F": i["scores"][i["sign"]]["E_F"],
                }
            )
    return pd.DataFrame(rows)


OUTCOMES = ["clean", "forgotten, A_R −10 or more", "partly forgotten", "collapsed"]


def outcomes(per_cls: pd.DataFrame, collapse_at: float) -> pd.Series:
    """The outcome of each run of :func:`per_class_runs`, the first that applies: ``collapsed``
    (``A_R ≤ collapse_at``), ``partly forgotten`` (``E_F < 99.9``), ``forgotten, A_R −10 or
    more``, else ``clean``."""
    forgot = per_cls["E_F"] >= 99.9
    cat = np.select(
        [per_cls["A_R"] <= collapse_at, ~forgot, per_cls["A_R"] < per_cls["A_R before"] - 10],
        ["collapsed", "partly forgotten", "forgotten, A_R −10 or more"],
        "clean",
    )
    return pd.Series(cat, index=per_cls.index, name="outcome")


def fisher_pair(model, x, y, num_classes: int, forget, retain) -> tuple:
    """The flattened class-averaged Fisher of the forgotten and of the retained classes, from
    ``(x, y)``."""
    pc = class_fisher(model, x, y, range(num_classes))
    return _fisher.flatten(average_fisher(pc, forget)), _fisher.flatten(average_fisher(pc, retain))


def sample_per_class(x, y, n: int, seed: int) -> tuple:
    """``n`` images of each class of ``(x, y)`` (stratified, drawn with ``seed``)."""
    idx = stratified_indices(y, n_per_class=n, seed=seed).to(y.device)
    return x[idx], y[idx]


def fisher_errors(estimates: dict, oracle: tuple) -> pd.DataFrame:
    """Distance of each Fisher estimate ``(f_F, f_R)`` to the oracle's: per entry (``error``) and
    relative to the oracle's norm (``relative``)."""
    return pd.DataFrame(
        {
            name: {
                "f_F error": (e[0] - oracle[0]).norm().item() / len(oracle[0]),
                "f_R error": (e[1] - oracle[1]).norm().item() / len(oracle[1]),
                "f_F relative": ((e[0] - oracle[0]).norm() / oracle[0].norm()).item(),
                "f_R relative": ((e[1] - oracle[1]).norm() / oracle[1].norm()).item(),
            }
            for name, e in estimates.items()
        }
    ).T


def trigger_table(model, data, code, ratios, forget) -> pd.DataFrame:
    """Is the code a trigger? Test accuracy (%) and the share (%) of test images predicted as
    ``forget`` when each test image is mixed with ``code``, ``(1 − r)·x + r·ξ``, per ratio ``r``."""
    rows = {}
    for r in ratios:
        pred = predict(model, (1 - r) * data.x_test + r * code).argmax(1)
        rows[r] = {
            "test accuracy (%)": 100 * (pred == data.y_test).float().mean().item(),
            f"predicted class {forget} (%)": 100 * (pred == forget).float().mean().item(),
        }
    return pd.DataFrame(rows).T.rename_axis("share of code")


def multi_shot(original, data, codes, class_sets, l1, l2, check_codes) -> pd.DataFrame:
    """One shot for several classes at once: ``A_R``, ``E_F`` and ``A_R before`` per class set."""
    rows = {}
    for classes in class_sets:
        t = forget_classes(data, classes)
        m = mnemonic(original, t, codes=codes, lambda1=l1, lambda2=l2, check_codes=check_codes)
        a_r, e_f = ar_ef(m, t)
        rows[", ".join(map(str, classes))] = {
            "A_R": a_r,
            "E_F": e_f,
            "A_R before": accuracy(original, *t.test_retain()),
        }
    return pd.DataFrame(rows).T.rename_axis("forgotten classes")


def perturb_only(original, names, sign: int, alpha: dict, eta: dict):
    """A copy of ``original`` with the one-shot perturbation ``sign · α · η`` applied to the
    parameters in ``names`` only."""
    m = clone(original)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n in names:
                p += sign * alpha[n] * eta[n]
    return m


def diverged_note(runs: pd.DataFrame) -> str:
    """One sentence on the runs that diverged: per method how many of its runs and the first
    error message, or that none did."""
    div = runs[runs.diverged]
    if not len(div):
        return "No method diverged in this run."
    return " ".join(
        f"{m} diverged in {len(g)} of {(runs.method == m).sum()} runs: {g['error'].iloc[0]}"
        for m, g in div.groupby("method", sort=False)
    )
