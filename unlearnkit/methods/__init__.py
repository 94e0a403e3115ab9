"""Unlearning methods: one signature, ``new_model = method(model, task, **hp)``, each
registered with the access level its paper allows (see ``_registry``)."""
from ._registry import REGISTRY, get_method, register, runtime
from .baselines import finetune, fisher_forgetting, neggrad, random_labels, retrain

__all__ = ["REGISTRY", "get_method", "register", "runtime", "retrain", "finetune", "neggrad",
           "random_labels", "fisher_forgetting"]
