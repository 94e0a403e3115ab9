"""Unlearning methods: one signature, ``new_model = method(model, task, *, seed=None, **hp)``,
each registered with one record (access level, tasks, presets, colour; see ``_registry``)."""

from ._registry import REGISTRY, Method, applicable, get_method, record, register, report, runtime
from .baselines import finetune, fisher_forgetting, neggrad, random_labels, retrain
from .boundary import boundary_shrink, nearest_false_labels, relabel, runner_up_labels
from .codes import mnemonic_codes, mnemonic_hook, train_with_codes
from .instance import continual_unlearn, instance_unlearn
from .jit import jit, jit_loss, model_information, sample_information
from .l1_sparse import l1_sparse
from .masking import (
    fisher_noise,
    mask,
    mask_classifier,
    mask_forget_only,
    mask_retain_subset,  # noqa: F401
    replay_finetune,
)
from .mnemonic import (
    average_fisher,
    class_fisher,
    importance_ratio,
    mnemonic,
    mnemonic_with_data,
    step_sizes,
)
from .salun import saliency_mask, salun
from .scrub import neggrad_plus, scrub
from .ssd import ssd
from .unsir import error_maximizing_noise, impair_set, unsir

__all__ = [
    "REGISTRY",
    "Method",
    "applicable",
    "get_method",
    "record",
    "register",
    "report",
    "runtime",
    "retrain",
    "finetune",
    "neggrad",
    "random_labels",
    "fisher_forgetting",
    "jit",
    "jit_loss",
    "sample_information",
    "model_information",
    "boundary_shrink",
    "nearest_false_labels",
    "runner_up_labels",
    "relabel",
    "mnemonic",
    "mnemonic_with_data",
    "mnemonic_codes",
    "mnemonic_hook",
    "train_with_codes",
    "class_fisher",
    "average_fisher",
    "importance_ratio",
    "step_sizes",
    "unsir",
    "error_maximizing_noise",
    "impair_set",
    "instance_unlearn",
    "continual_unlearn",
]
__all__ += [
    "mask",
    "mask_forget_only",
    "mask_retain_subset",
    "mask_classifier",
    "replay_finetune",
    "fisher_noise",
]
__all__ += ["scrub", "neggrad_plus", "salun", "saliency_mask", "l1_sparse", "ssd"]
