"""Proposition 1 of the Fisher-masking paper, with numbers: linear regression, the exact KL between
the retrained and the masked model, and the upper bound of Eq. 2.

Explained in the Fisher-masking chapter (``book/05_fisher_masking.ipynb``).

Model: p(y | x, w) = N(wᵀx, 1). Rows of ``X`` (shape ``(N, d)``) are samples (the paper's X is
the transpose). For unit-variance Gaussians the KL between two weight vectors, averaged over the
inputs of D, is exactly ½ (w − w')ᵀ F (w − w') with F = XᵀX / |D|: the Fisher approximation in the
paper's proof is exact here, and the looseness of Eq. 2 comes from its other steps.

* ``w*_r`` (:func:`solve`) is the least-squares solution on D_r; ``kind="diag"`` uses the
  diagonal normal equations w_j = b_j / F_jj that the proof assumes.
* :func:`kl` is ½ Δᵀ F Δ with the full F; :func:`bound` is Eq. 2 (λ the largest eigenvalue of
  XᵀX, c₁ = max_j b²_{r,j}, c₂ = max_j b²_{f,j}, c = max(c₁, 2c₂) Σ_j 1/F²_{r,jj}).
* :func:`mask_by` ranks the coordinates by F_f − F_r, F_f, an activation score or at random.
"""

from __future__ import annotations

import math

import numpy as np

RULES = ("fisher", "fisher_forget", "activation", "random")


def _split(X, y, forget):
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    forget = np.asarray(forget, dtype=bool)
    if X.ndim != 2 or len(X) != len(y) or len(forget) != len(y):
        raise ValueError("X must be (N, d), y (N,) and forget a boolean vector of length N.")
    if not forget.any() or forget.all():
        raise ValueError("forget must mark a non-empty strict subset of the samples.")
    return X, y, forget


def diag_fishers(X, forget):
    """(F, F_r, F_f): the diagonals Σ_i x²_ij over D, D_r and D_f (the paper drops the 1/|D|)."""
    X = np.asarray(X, dtype=float)
    forget = np.asarray(forget, dtype=bool)
    fr, ff = (X[~forget] ** 2).sum(0), (X[forget] ** 2).sum(0)
    return fr + ff, fr, ff


def solve(X, y, kind: str = "exact"):
    """Least-squares weights: ``"exact"`` (lstsq) or ``"diag"`` (w_j = Σ y x_j / Σ x_j²)."""
    X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
    if kind == "exact":
        return np.linalg.lstsq(X, y, rcond=None)[0]
    if kind == "diag":
        return (X * y[:, None]).sum(0) / (X**2).sum(0)
    raise ValueError(f"kind must be 'exact' or 'diag', got {kind!r}.")


def masked(w, mask):
    """ŵ_r: w with the coordinates in ``mask`` set to zero."""
    out = np.array(w, dtype=float, copy=True)
    out[np.asarray(mask, dtype=bool)] = 0.0
    return out


def kl(X, w_a, w_b):
    """KL(w_a, w_b) = ½ (w_a − w_b)ᵀ F (w_a − w_b), F = XᵀX / N (exact for unit-variance Gaussians)."""
    X = np.asarray(X, dtype=float)
    d = np.asarray(w_a, dtype=float) - np.asarray(w_b, dtype=float)
    return 0.5 * float(d @ (X.T @ X / len(X)) @ d)


def bound(X, y, forget, mask):
    """The right-hand side of Eq. 2 for the mask ``mask`` (``inf`` where some F_r,jj = 0)."""
    X, y, forget = _split(X, y, forget)
    F, Fr, Ff = diag_fishers(X, forget)
    br = (X[~forget] * y[~forget, None]).sum(0)
    bf = (X[forget] * y[forget, None]).sum(0)
    lam = float(np.linalg.eigvalsh(X.T @ X).max())
    c1, c2 = float((br**2).max()), float((bf**2).max())
    with np.errstate(divide="ignore", invalid="ignore"):
        c = max(c1, 2 * c2) * float((1.0 / Fr**2).sum())
        keep = ~np.asarray(mask, dtype=bool)
        tail = float(((1.0 / F[keep] ** 2) * (Ff[keep] / Fr[keep]) ** 2).sum())
    val = lam / (2 * len(X)) * (c + 2 * c1 * tail)
    return val if math.isfinite(val) else float("inf")


def proof_step(X, w_r, w_hat):
    """The middle of the proof: λ/(2|D|) Σ_j (w*_{r,j} − ŵ_{r,j})², between the KL and Eq. 2."""
    X = np.asarray(X, dtype=float)
    lam = float(np.linalg.eigvalsh(X.T @ X).max())
    return lam / (2 * len(X)) * float(((np.asarray(w_r) - np.asarray(w_hat)) ** 2).sum())


def mask_by(rule: str, X, forget, k: int, seed: int = 0, w=None):
    """A boolean mask of ``k`` coordinates chosen by ``rule``:

    * ``"fisher"``: the top k by F_f − F_r (FisherMask);
    * ``"fisher_forget"``: the top k by F_f alone (the forget-only variant);
    * ``"activation"``: the top k by A_f − A_r, A the mean |x_j w_j| over each set (the
      linear unit's output; ``w`` the trained weights);
    * ``"random"``: k coordinates drawn at random.
    """
    X = np.asarray(X, dtype=float)
    forget = np.asarray(forget, dtype=bool)
    d = X.shape[1]
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}: choose one of {RULES}.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= d:
        raise ValueError(f"k must be an integer in 0..{d}, got {k!r}.")
    _, Fr, Ff = diag_fishers(X, forget)
    if rule == "fisher":
        s = Ff - Fr
    elif rule == "fisher_forget":
        s = Ff
    elif rule == "activation":
        if w is None:
            raise ValueError("The activation rule needs the trained weights w.")
        a = np.abs(X * np.asarray(w, dtype=float)[None])
        s = a[forget].mean(0) - a[~forget].mean(0)
    else:
        s = np.random.default_rng(seed).random(d)
    out = np.zeros(d, dtype=bool)
    if k:
        out[np.argsort(-s, kind="stable")[:k]] = True
    return out


def regression_problem(
    n: int = 400,
    d: int = 40,
    forget_share: float = 0.1,
    n_specific: int = 8,
    noise: float = 0.1,
    seed: int = 0,
):
    """A regression task with a 'class' to forget: ``(X, y, forget)``.

    Every sample uses the shared features; the forget group also lights up ``n_specific``
    features of its own (weak in D_r), and its targets follow different weights there.
    """
    g = np.random.default_rng(seed)
    forget = np.zeros(n, dtype=bool)
    forget[: max(1, int(round(forget_share * n)))] = True
    scale = np.ones(d)
    X = g.normal(size=(n, d)) * scale
    spec = np.arange(d - n_specific, d)
    X[np.ix_(~forget, spec)] *= 0.1  # D_r barely uses the specific features
    X[np.ix_(forget, spec)] *= 3.0  # D_f leans on them
    w_true = g.normal(size=d)
    w_forget = w_true.copy()
    w_forget[spec] += g.normal(scale=2.0, size=n_specific)
    y = np.where(forget, X @ w_forget, X @ w_true) + noise * g.normal(size=n)
    return X, y, forget
