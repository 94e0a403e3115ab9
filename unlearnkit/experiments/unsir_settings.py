"""The UNSIR chapter's settings per profile (:data:`CONFIGS`) and the paper's numbers it sets its
results beside (Tables 1, 2 and 5–9 of Tarun et al.).

Part of :mod:`unlearnkit.experiments.unsir`; explained in ``book/03_unsir_impair_repair.ipynb``.
"""

from __future__ import annotations

from ..training import FAST_RESNET18

# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

#: The authors' UNSIR settings on CIFAR-10 (noise, impair, repair).
PAPER_UNSIR = dict(
    n_per_class=1000,
    noise_batch=256,
    noise_copies=20,
    noise_steps=40,
    noise_lr=0.1,
    lam=0.1,
    impair_lr=0.02,
    repair_lr=0.01,
    batch_size=256,
)
#: The class sets of the paper's Table 1, by number of classes forgotten.
TABLE1_SETS = {"1": [0], "2": [1, 2], "4": [3, 4, 5, 6], "7": [3, 4, 5, 6, 7, 8, 9]}
DIGITS = dict(
    dataset="digits",
    archs=["cnn"],
    model_kwargs={"cnn": {"width": 16}},
    train=dict(epochs=15, lr=0.05, batch_size=64, weight_decay=5e-4, schedule="cosine"),
    unsir=dict(PAPER_UNSIR, n_per_class=100, noise_batch=64, noise_copies=5, batch_size=32),
    finetune=dict(epochs=5, lr=0.02),
    neggrad=dict(epochs=1, lr=0.01),
    fisher_forgetting=dict(alpha=1e-6, n_samples=500),
    relearn=dict(max_epochs=30, lr=0.01, n_per_epoch=500),
    forget=0,
    n_seeds=3,
    paired=False,
    multi_seeds=3,
    spread_forget=[0, 3, 5],
    multi_sets=TABLE1_SETS,
    n_show_noise=10,
    sequential=[0, 1, 2],
    sweep_impair_lr=[1.0, 0.1, 0.01, 0.001],
    sweep_repair_lr=[1.0, 0.1, 0.01, 0.001],
    sweep_share=[0.01, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0],
    sweep_lam=[0.0, 0.001, 0.01, 0.1, 1.0, 10.0],
    repair_steps=3,
)
#: The chapter's settings per profile (``P.config(CONFIGS)``).
CONFIGS = {
    "smoke": dict(
        DIGITS,
        model_kwargs={"cnn": {"width": 8}},
        sequential=[0, 1],
        train=dict(DIGITS["train"], epochs=8),
        n_seeds=1,
        spread_forget=[0],
        multi_sets={k: TABLE1_SETS[k] for k in ("1", "2")},
        relearn=dict(max_epochs=5, lr=0.01, n_per_epoch=500),
        sweep_impair_lr=[0.1],
        sweep_repair_lr=[0.1, 0.01],
        sweep_share=[0.1, 0.7],
        sweep_lam=[0.0, 0.1],
        repair_steps=2,
    ),
    "quick": DIGITS,
    # full: the book's fast recipe (not the authors' 40 epochs of Adam), one architecture, seed i
    # forgets class i, and one seed per class set (a budget: see the introduction)
    "full": dict(
        DIGITS,
        dataset="cifar10",
        archs=["resnet18"],
        model_kwargs={"resnet18": {}},
        train={k: v for k, v in FAST_RESNET18.items() if k not in ("model", "model_kwargs")},
        unsir=PAPER_UNSIR,
        fisher_forgetting=dict(alpha=1e-6, n_samples=1000),
        relearn=dict(max_epochs=100, lr=0.01, n_per_epoch=500, check_n=500),
        n_seeds=3,
        paired=True,
        multi_seeds=1,
        spread_forget=[0, 3, 8],  # the opening chapter's classes: its models serve here too
        sweep_share=[0.01, 0.1, 0.4, 1.0],
    ),
}


def trim_for_dry_run(cfg, P) -> None:
    """Shorten ``cfg`` in place for a dry run (which checks the code path on a CPU): one run per
    table and short sweeps. The repair sweep keeps its largest rate and the paper's, which
    Tables 5–6 compare. Nothing changes outside a dry run."""
    if not P.dry_run:
        return
    for k in ("sweep_impair_lr", "sweep_share", "sweep_lam"):
        setattr(cfg, k, P.few(getattr(cfg, k), n=2))
    cfg.sweep_repair_lr = sorted({max(cfg.sweep_repair_lr), cfg.unsir["repair_lr"]}, reverse=True)
    # one seed: the chapter's P.few keeps it
    cfg.spread_forget, cfg.archs = P.few(cfg.spread_forget), P.few(cfg.archs)
    cfg.multi_sets = {k: cfg.multi_sets[k] for k in ("1", "2")}  # one and several classes
    cfg.sequential, cfg.repair_steps = P.few(cfg.sequential, n=2), 1
    cfg.unsir = dict(cfg.unsir, noise_batch=8)


# ---------------------------------------------------------------------------------------------
# the paper's numbers (CIFAR-10)
# ---------------------------------------------------------------------------------------------

#: Tables 1 and 2, class 0: (A_Dr, A_Df, RT) per method; ">100" epochs stored as 101.
PAPER_T1 = {
    "ResNet18": {
        "original": (77.86, 81.01, None),
        "retrain": (78.32, 0.0, 77),
        "finetune": (78.11, 24.55, 8),
        "neggrad": (66.67, 7.44, 54),
        "fisher_forgetting": (10.85, 0.0, None),
        "unsir": (71.06, 0.0, 90),
    },
    "AllCNN": {
        "original": (82.64, 91.02, None),
        "retrain": (85.90, 0.0, 101),
        "finetune": (85.01, 31.07, 12),
        "neggrad": (42.39, 13.47, 18),
        "fisher_forgetting": (7.61, 0.0, None),
        "unsir": (73.90, 0.0, 101),
    },
}
#: Table 1: (A_Dr, A_Df) per number of forgotten classes and method.
PAPER_MULTI = {
    "ResNet18": {
        "1": {
            "original": (77.86, 81.01),
            "retrain": (78.32, 0),
            "finetune": (78.11, 24.55),
            "neggrad": (66.67, 7.44),
            "unsir": (71.06, 0),
        },
        "2": {
            "original": (78.00, 78.65),
            "retrain": (79.15, 0),
            "finetune": (79.53, 31.59),
            "neggrad": (72.12, 0.05),
            "unsir": (73.61, 0),
        },
        "4": {
            "original": (81.42, 73.45),
            "retrain": (85.88, 0),
            "finetune": (85.49, 41.45),
            "neggrad": (54.84, 0.02),
            "unsir": (76.63, 0),
        },
        "7": {
            "original": (79.36, 77.58),
            "retrain": (91.39, 0),
            "finetune": (79.27, 77.71),
            "neggrad": (31.87, 0.19),
            "unsir": (82.86, 0),
        },
    },
    "AllCNN": {
        "1": {
            "original": (82.64, 91.02),
            "retrain": (85.90, 0),
            "finetune": (85.01, 31.07),
            "neggrad": (42.39, 13.47),
            "unsir": (73.90, 0),
        },
        "2": {
            "original": (84.27, 79.74),
            "retrain": (85.21, 0),
            "finetune": (86.45, 35.45),
            "neggrad": (44.25, 2.20),
            "unsir": (80.76, 0),
        },
        "4": {
            "original": (87.06, 78.00),
            "retrain": (91.86, 0),
            "finetune": (91.75, 53.66),
            "neggrad": (22.00, 1.44),
            "unsir": (80.21, 0),
        },
        "7": {
            "original": (83.30, 83.31),
            "retrain": (94.47, 0),
            "finetune": (83.29, 83.28),
            "neggrad": (22.96, 0),
            "unsir": (85.21, 0),
        },
    },
}
#: Table 5 (repair lr 0.01), per impair lr: (R18 A_Dr, R18 A_Df, AllCNN A_Dr, AllCNN A_Df).
PAPER_T5 = {
    1.0: (37.86, 0, 14.91, 0),
    0.1: (41.07, 0, 28.5, 0),
    0.01: (71.47, 0, 70.38, 0),
    0.001: (69.45, 0.80, 74.61, 3.35),
}
#: Table 6 (impair lr 0.02), per repair lr: as :data:`PAPER_T5`.
PAPER_T6 = {
    1.0: (10.94, 0, 12.02, 0),
    0.1: (19.83, 0, 9.84, 0),
    0.01: (70.91, 0, 68.70, 0),
    0.001: (75.97, 2.3, 84.17, 2.72),
}
#: Table 7: dist(original, unsir), dist(original, retrain), dist(unsir, retrain).
PAPER_T7 = {"ResNet18": [164.06, 81.96, 185.14], "AllCNN": [41.44, 78.38, 92.5]}
#: Table 8, ResNet-18 after repair, per share of D_r kept: (A_Dr, A_Df).
PAPER_T8 = {
    0.01: (34.81, 0.89),
    0.1: (64.45, 0),
    0.2: (67.05, 0),
    0.3: (70.82, 0),
    0.4: (71.91, 0),
    0.5: (73.07, 0),
    0.6: (74.03, 0),
}
#: Table 9, A_Dr per λ: (ResNet-18, AllCNN).
PAPER_T9 = {
    10.0: (70.96, 78.21),
    1.0: (68.34, 76.92),
    0.1: (71.06, 76.16),
    0.01: (70.04, 74.28),
    0.001: (71.47, 76.55),
    0.0: (67.03, 76.07),
}
