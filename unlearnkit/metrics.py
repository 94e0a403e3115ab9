"""The yardsticks of unlearning.

Defined and illustrated in the opening chapter (``book/01_unlearning_problem.ipynb``).

* accuracy on train-forget, train-retain, test-forget, test-retain;
* E_F = 100 - test-forget accuracy (the mnemonic-code paper's forgetting error);
* unlearn score = remain acc / (1 + forget acc) (Fisher-masking paper, accuracies as fractions);
* membership inference: ``mia_entropy`` (logistic regression on output entropy, fitted on
  retain-train vs test, reported as the share of the forget set called "member": the
  SSD/JiT benchmark) and ``mia_loss_auc`` (loss-threshold AUC, forget-train vs unseen
  samples of the same kind: 0.5 means indistinguishable);
* relearn time, both definitions: UNSIR's (epochs of 500 random training samples until
  forget accuracy is back to the original's) and Fisher masking's (epochs on the whole
  training set until the forget loss is back to the original's);
* layer-wise weight distance, activation distance, output entropy, JS divergence,
  linear CKA, prediction confusion.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import budget, profiles
from .access import as_task
from .tasks import Task
from .training import accuracy, fit, predict

EPS = 1e-12


# ----------------------------------------------------------------------------- simple quantities


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits), per row."""
    logp = F.log_softmax(logits.float(), 1)
    return -(logp.exp() * logp).sum(1)


def output_entropy(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return entropy(predict(model, x))


def per_sample_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(predict(model, x), y.to(x.device), reduction="none")


def unlearn_score(remain_acc: float, forget_acc: float) -> float:
    """remain / (1 + forget), both given in percent, returned in percent (Fisher masking, Sec. 5)."""
    r, f = remain_acc / 100.0, forget_acc / 100.0
    return 100.0 * r / (1.0 + f)


def js_divergence_probs(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-row Jensen–Shannon divergence (nats) between probability vectors."""
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * ((a + EPS).log() - (b + EPS).log())).sum(1)  # noqa: E731
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def js_divergence(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """Mean JS divergence between the two models' predictive distributions on ``x``."""
    return (
        js_divergence_probs(F.softmax(predict(model_a, x), 1), F.softmax(predict(model_b, x), 1))
        .mean()
        .item()
    )


def activation_distance(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """Mean L2 distance between the two models' softmax outputs on ``x``."""
    return (F.softmax(predict(model_a, x), 1) - F.softmax(predict(model_b, x), 1)).norm(dim=1).mean().item()


def weight_distance(model_a: nn.Module, model_b: nn.Module, relative: bool = False) -> pd.DataFrame:
    """Layer-wise L2 distance ‖θ_a − θ_b‖ per parameter tensor (optionally divided by ‖θ_b‖)."""
    pb = dict(model_b.named_parameters())
    rows = []
    for n, p in model_a.named_parameters():
        if n not in pb or pb[n].shape != p.shape:
            raise ValueError(f"The models differ at {n!r}: weight distance needs the same architecture.")
        d = (p.detach() - pb[n].detach()).norm().item()
        if relative:
            d /= pb[n].detach().norm().item() + EPS
        rows.append({"layer": n, "distance": d})
    return pd.DataFrame(rows)


def prediction_confusion(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> np.ndarray:
    """Share of ``x`` predicted as each class (where do forgotten samples go?)."""
    logits = predict(model, x)
    k = num_classes or logits.shape[1]
    if len(x) == 0:
        return np.zeros(k)
    return np.bincount(logits.argmax(1).cpu().numpy(), minlength=k) / len(x)


def bn_stat_change(model_a: nn.Module, model_b: nn.Module) -> float:
    """Relative change (%) of all batch-norm running means and variances of ``model_a`` against
    ``model_b``: ‖Δ‖ / ‖stats_b‖ over every ``running_mean`` and ``running_var`` buffer.

    0 when nothing moved (e.g. JiT with frozen batch norm); NaN for a model without batch norm.
    """
    bufs_b = dict(model_b.named_buffers())
    keys = [k for k, _ in model_a.named_buffers() if "running_" in k]
    if not keys:
        return float("nan")
    bufs_a = dict(model_a.named_buffers())
    missing = [k for k in keys if k not in bufs_b or bufs_b[k].shape != bufs_a[k].shape]
    if missing:
        raise ValueError(f"The models differ at {missing[0]!r}: compare two models of the same architecture.")
    num = sum(float(((bufs_a[k].float() - bufs_b[k].float()) ** 2).sum()) for k in keys)
    den = sum(float((bufs_b[k].float() ** 2).sum()) for k in keys)
    return 100.0 * math.sqrt(num / max(den, EPS))


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n samples
    (n x d1, n x d2): ||a^T b||_F^2 / (||a^T a||_F ||b^T b||_F) on centred features, computed from
    the n x n Gram matrices when the features outnumber the samples (memory n^2, not d^2)."""
    if len(a) != len(b):
        raise ValueError("CKA compares representations of the same samples: row counts differ.")
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(0)
    b = b - b.mean(0)
    if a.shape[1] + b.shape[1] > 2 * len(a):
        # wide features (a conv layer: tens of thousands per sample): the n x n Gram form,
        # <K, L> / (|K| |L|) with K = a a^T, L = b b^T, equals the d x d form below
        # (|a^T b|^2 = <a a^T, b b^T>) without a d x d matrix
        k, l = a @ a.T, b @ b.T
        return float((k * l).sum() / (k.norm() * l.norm() + EPS))
    hsic = (a.T @ b).norm() ** 2
    return float(hsic / ((a.T @ a).norm() * (b.T @ b).norm() + EPS))


# ----------------------------------------------------------------------------- membership inference


def mia_entropy(model: nn.Module, task: Task, seed: int = 0) -> float:
    """Entropy-based membership inference (SSD / JiT benchmark), in percent.

    A logistic regression on output entropy is fitted on retain-train samples (members)
    against test samples (non-members), class-balanced by subsampling, then applied to
    the forget set; the result is the share of the forget set it calls "member".
    """
    return _mia_entropy(_Logits(model, as_task(task)), seed)


def mia_loss_auc(model: nn.Module, task: Task, seed: int = 0) -> float:
    """Loss-threshold membership inference: AUC of "lower loss ⇒ member" between the forget
    set (members) and unseen samples of the same kind (test-forget; the whole test set when
    the task has none). 0.5: the attacker cannot tell; 1.0: it always can."""
    return _mia_loss_auc(_Logits(model, as_task(task)))


#: The retain set is evaluated on at most this many of its images (:func:`retain_eval_idx`): the
#: size of CIFAR-10's test split, and what the entropy membership attack draws from it anyway. An
#: accuracy near 99 % measured on 10,000 images has a standard error of 0.1 points. The forget
#: set and the test split are always evaluated whole; digits' retain sets are smaller than this.
MAX_RETAIN_EVAL = 10_000


def retain_eval_idx(task: Task) -> torch.Tensor:
    """The retain images :func:`evaluate` scores: all of them, or, when there are more than
    :data:`MAX_RETAIN_EVAL`, a fixed random sample of that many (the same for every model of
    the task, drawn with seed 0), in index order."""
    r = task.retain_idx
    if len(r) <= MAX_RETAIN_EVAL:
        return r
    pick = torch.randperm(len(r), generator=torch.Generator().manual_seed(0))[:MAX_RETAIN_EVAL]
    return r[pick.to(r.device)].sort().values


class _Logits:
    """A model's logits on a task's forget set, its retain set (:func:`retain_eval_idx`) and the
    test split, each predicted once, on demand.

    Every quantity of :func:`evaluate_one` is read from these passes (test-forget and test-retain
    are index subsets of the test split), so the table costs one forward pass over the forget
    set, the retain images it scores and the test split per model.
    """

    def __init__(self, model: nn.Module, task: Task):
        self.model, self.task, self._cache = model, task, {}

    def _split(self, split: str) -> torch.Tensor:
        if split not in self._cache:
            t, d = self.task, self.task.data
            if split == "test":
                self._cache[split] = predict(self.model, d.x_test)
            else:
                idx = t.forget_idx if split == "forget" else retain_eval_idx(t)
                x = d.x_train[idx.to(d.x_train.device)]
                # a sample of a large retain set counts at its planned size (unlearnkit.budget)
                sample = MAX_RETAIN_EVAL if split == "retain" else None
                with budget.sampled(len(idx), sample, self.model):
                    self._cache[split] = (
                        predict(self.model, x) if len(idx) else torch.zeros(0, d.num_classes, device=x.device)
                    )
        return self._cache[split]

    def get(self, which: str):
        """``(logits, labels)`` of ``forget``, ``retain``, ``test_forget``, ``test_retain`` or ``test``."""
        t, d = self.task, self.task.data
        if which in ("forget", "retain"):
            idx = t.forget_idx if which == "forget" else retain_eval_idx(t)
            logits = self._split(which)
            return logits, d.y_train.to(logits.device)[idx.to(logits.device)]
        split, y, idx = {
            "test_forget": ("test", d.y_test, t.test_forget_idx),
            "test_retain": ("test", d.y_test, t.test_retain_idx),
            "test": ("test", d.y_test, None),
        }[which]
        logits = self._split(split)
        if idx is None:
            return logits, y.to(logits.device)
        idx = idx.to(logits.device)
        return logits[idx], y.to(logits.device)[idx]

    def accuracy(self, which: str) -> float:
        logits, y = self.get(which)
        return float("nan") if len(y) == 0 else 100.0 * (logits.argmax(1) == y).float().mean().item()


def _mia_entropy(L: _Logits, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression

    lr_, _ = L.get("retain")
    lt, _ = L.get("test")
    lf, _ = L.get("forget")
    g = np.random.default_rng(seed)
    n = min(len(lr_), len(lt))
    ir = torch.as_tensor(g.choice(len(lr_), n, replace=False)).to(lr_.device)
    it = torch.as_tensor(g.choice(len(lt), n, replace=False)).to(lt.device)
    er = entropy(lr_[ir]).cpu().numpy()
    et = entropy(lt[it]).cpu().numpy()
    feats = np.concatenate([er, et])[:, None]
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs").fit(feats, labels)
    ef = entropy(lf).cpu().numpy()[:, None]
    return 100.0 * float(clf.predict(ef).mean())


def _mia_loss_auc(L: _Logits) -> float:
    from sklearn.metrics import roc_auc_score

    lf, yf = L.get("forget")
    ln, yn = L.get("test_forget")
    if len(yn) == 0:
        ln, yn = L.get("test")
    lossf = F.cross_entropy(lf, yf, reduction="none").cpu().numpy()
    lossn = F.cross_entropy(ln, yn, reduction="none").cpu().numpy()
    labels = np.concatenate([np.ones(len(lossf)), np.zeros(len(lossn))])
    return float(roc_auc_score(labels, -np.concatenate([lossf, lossn])))


# ----------------------------------------------------------------------------- relearn time


@budget.counts("relearn")
def relearn_time(
    model: nn.Module,
    task: Task,
    target: float,
    definition: str = "unsir",
    max_epochs: int = 50,
    lr: float = 0.01,
    batch_size: int = 64,
    n_per_epoch: int = 500,
    seed: int = 0,
    curve: list | None = None,
    check_n: int | None = None,
) -> int:
    """Epochs a copy of ``model`` needs to relearn the forget set; ``max_epochs + 1`` if it never does.

    * ``definition="unsir"``: each epoch trains on ``n_per_epoch`` random training samples
      (all of D, forget set included); stops when forget-train accuracy ≥ ``target`` (%).
    * ``definition="mask"``: each epoch trains on the whole training set; stops when the
      forget-set loss ≤ ``target`` (the original model's forget loss).

    ``check_n``: check the criterion after each epoch on a fixed stratified sample of ``check_n``
    forget images (a pass over all of them every epoch can cost more than the relearning), and
    confirm it on the whole forget set when the sample says done (if the whole set disagrees,
    relearning goes on). ``None``: the whole forget set every epoch.

    Pass a list as ``curve`` to get the relearning curve: one dict per epoch checked
    (``epoch``, ``forget_acc`` in %, ``forget_loss``, on the sample with ``check_n``), from epoch
    0 to the stopping epoch.
    """
    task = as_task(task)
    if definition not in ("unsir", "mask"):
        raise ValueError("definition must be 'unsir' or 'mask'.")
    if check_n is not None and (isinstance(check_n, bool) or not isinstance(check_n, int) or check_n < 1):
        raise ValueError(f"check_n must be a positive number of forget images (or None), got {check_n!r}.")
    planned, max_epochs = max_epochs, profiles.active().cap(max_epochs)
    m = copy.deepcopy(model)
    xf, yf = task.forget_set()
    x, y = task.train_set()
    g = torch.Generator().manual_seed(seed)
    if check_n is not None and check_n < len(xf):
        from .catalog import stratified_indices

        pick = stratified_indices(yf.cpu(), check_n, seed=np.random.default_rng(seed)).to(xf.device)
        xs, ys = xf[pick], yf[pick]
    else:
        xs, ys = xf, yf

    def met(xc, yc) -> bool:
        if definition == "unsir":
            return accuracy(m, xc, yc) >= target
        return per_sample_loss(m, xc, yc).mean().item() <= target

    # a dry run's forget set is cut: the sample's planned size is check_n (unlearnkit.budget)
    def sample():
        return budget.data_scale(check_n / len(xs)) if check_n is not None else contextlib.nullcontext()

    def done(epoch=0):
        with sample():
            if curve is not None:
                curve.append(
                    {
                        "epoch": epoch,
                        "forget_acc": accuracy(m, xs, ys),
                        "forget_loss": per_sample_loss(m, xs, ys).mean().item(),
                    }
                )
            ok = met(xs, ys)
        return ok and (xs is xf or met(xf, yf))

    dry = profiles.active().dry_run
    if done() and not dry:
        return 0
    # a dry run caps the epochs: every epoch it skips, and one that stops early (or would not
    # start), counts: the planned cost is the cap's (unlearnkit.budget)
    ran = [max_epochs]
    with budget.loop(lambda: planned / max(1, min(ran[0], max_epochs))):
        ran[0] = _relearn_epochs(m, x, y, g, done, max_epochs, definition, n_per_epoch, lr, batch_size, seed)
    return ran[0]


def _relearn_epochs(m, x, y, g, done, max_epochs, definition, n_per_epoch, lr, batch_size, seed) -> int:
    for epoch in range(1, max_epochs + 1):
        if definition == "unsir":
            idx = torch.randperm(len(x), generator=g)[:n_per_epoch].to(x.device)
            xe, ye = x[idx], y[idx]
            # a fixed number of samples per epoch, not a share of the data
            fixed = budget.data_scale(n_per_epoch / max(1, len(xe)))
        else:
            xe, ye, fixed = x, y, contextlib.nullcontext()
        with fixed:
            fit(
                m,
                xe,
                ye,
                epochs=1,
                lr=lr,
                batch_size=batch_size,
                schedule="constant",
                weight_decay=0.0,
                progress=False,
                seed=seed + epoch,
            )
        if done(epoch):
            return epoch
    return max_epochs + 1


# ----------------------------------------------------------------------------- the table


def evaluate_one(model: nn.Module, task: Task, mia: bool = True, logits: _Logits | None = None) -> dict:
    """One row of :func:`evaluate`, from one forward pass over each split (``logits``)."""
    task = as_task(task)
    L = logits or _Logits(model, task)
    row = {
        "train_forget": L.accuracy("forget"),
        "train_retain": L.accuracy("retain"),
        "test_forget": L.accuracy("test_forget"),
        "test_retain": L.accuracy("test_retain"),
    }
    forget_acc = row["test_forget"] if not math.isnan(row["test_forget"]) else row["train_forget"]
    row["E_F"] = 100.0 - row["test_forget"] if not math.isnan(row["test_forget"]) else float("nan")
    row["unlearn_score"] = unlearn_score(row["test_retain"], forget_acc)
    if mia:
        row["MIA_entropy_%"] = _mia_entropy(L)
        row["MIA_loss_AUC"] = _mia_loss_auc(L)
    info = getattr(model, "unlearn_info", None)
    row["seconds"] = info["seconds"] if info else float("nan")
    return row


@budget.counts("eval")
def evaluate(models, task: Task, mia: bool = True, reference: str | None = "retrain") -> pd.DataFrame:
    """One row per model: the four accuracies (%), E_F, unlearn score, both MIA variants and the
    method's wall time. With a ``reference`` model in ``models`` (default ``"retrain"``), adds the
    JS divergence of each model's forget-set predictions to it."""
    if isinstance(models, nn.Module):
        models = {"model": models}
    if not isinstance(models, dict) or not models:
        raise TypeError(
            f"evaluate() needs a model or a non-empty dict {{name: model}}, got {type(models).__name__}."
        )
    bad = {k: type(v).__name__ for k, v in models.items() if not isinstance(v, nn.Module)}
    if bad:
        name, kind = next(iter(bad.items()))
        raise TypeError(
            f"evaluate(): {name!r} is a {kind}, not a torch model. Pass {{name: model}}, "
            f"e.g. {{'original': original, 'retrain': retrained}}."
        )
    task = as_task(task)
    logits = {name: _Logits(m, task) for name, m in models.items()}
    rows = {name: evaluate_one(m, task, mia=mia, logits=logits[name]) for name, m in models.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")
    if reference in models:
        ref = F.softmax(logits[reference].get("forget")[0], 1)
        df["JS_to_" + reference] = [
            js_divergence_probs(F.softmax(L.get("forget")[0], 1), ref).mean().item() for L in logits.values()
        ]
    df.index.name = "method"
    return df


# the per-example forget-quality score lives in :mod:`unlearnkit.quality`; its old home keeps the names
from . import quality as _quality  # noqa: E402  (quality imports this module)

add_tug_of_war, attack_rates, confidences = (
    _quality.add_tug_of_war,
    _quality.attack_rates,
    _quality.confidences,
)
epsilon_bins, epsilon_score, example_epsilon = (
    _quality.epsilon_bins,
    _quality.epsilon_score,
    _quality.example_epsilon,
)
final_score, forget_quality, logit_confidence = (
    _quality.final_score,
    _quality.forget_quality,
    _quality.logit_confidence,
)
tug_of_war = _quality.tug_of_war
