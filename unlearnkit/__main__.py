"""``python -m unlearnkit``: run baselines on one class-forgetting task and print the table."""
from __future__ import annotations

import argparse

import unlearnkit as uk


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m unlearnkit", description=__doc__)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--forget-class", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--methods", default="finetune,neggrad,random_labels,fisher_forgetting")
    ap.add_argument("--profile", default=None)
    a = ap.parse_args(argv)
    P = uk.profile(a.profile)
    data = uk.load_dataset(a.dataset)
    task = uk.forget_classes(data, a.forget_class)
    kw = dict(model=a.model, epochs=a.epochs, lr=a.lr)
    original = uk.train_or_load(task, "original", **kw)
    retrained = uk.train_or_load(task, "retrain", **kw)
    methods = [m for m in a.methods.split(",") if m]
    df, _ = uk.run_methods(methods, original, task, {"original": original, "retrain": retrained})
    print(df.round(2).to_string())


if __name__ == "__main__":
    main()
