"""``python -m unlearnkit``: run baselines on one class-forgetting task and print the table.

``python -m unlearnkit bench ...``: a headless sweep of methods × tasks × seeds into a results
file (see ``python -m unlearnkit bench --help`` and :mod:`unlearnkit.sweep`).
"""

from __future__ import annotations

import argparse
import json
import sys

import unlearnkit as uk

BENCH_HELP = """\
Run every given method on identical unlearning tasks, over seeds, and print the tables
(mean ± std per method, the retrain row beside them, ranked by distance to retrain).

Each finished run (one method × task × forget item × seed) is appended to --out at once;
run the same command again to resume: runs already in the file are skipped, and runs made by
older code (the method's module, or the shared training and evaluation code, has changed since)
are redone. A file written by another configuration (dataset, model, training, task sizes,
hyper-parameters, profile) is refused, and so is an existing file that is not a results file
or is damaged: it is left as it is. While a sweep runs it owns --out (the lock file
--out.lock beside it); a second sweep on the same file is refused. Methods run only on tasks
their access level fits; asking for another is an error (or use --skip-inapplicable).

tasks:  full-class  forget one whole class (--forget picks them; preset per profile)
        sub-class   forget one fine class inside its super-class (digits-super / cifar20)
        random      forget a random --fraction of the training set (drawn per seed)
        instances   forget --k single training instances (drawn per seed)

examples:
  python -m unlearnkit bench --task full-class --methods jit,unsir,mask --seeds 0-4 \\
      --out results.csv
  python -m unlearnkit bench --task full-class,random --methods finetune,jit --seeds 0-2 \\
      --out results.jsonl --engine ray --address ray://head-node:10001
"""


def classic(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m unlearnkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--forget-class", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--methods", default="finetune,neggrad,random_labels,fisher_forgetting")
    ap.add_argument("--profile", default=None)
    a = ap.parse_args(argv)
    P = uk.profile(a.profile)  # noqa: F841
    data = uk.load_dataset(a.dataset)
    task = uk.forget_classes(data, a.forget_class)
    kw = dict(model=a.model, epochs=a.epochs, lr=a.lr)
    original = uk.train_or_load(task, "original", **kw)
    retrained = uk.train_or_load(task, "retrain", **kw)
    methods = [m for m in a.methods.split(",") if m]
    df, _ = uk.run_methods(methods, original, task, {"original": original, "retrain": retrained})
    print(df.round(2).to_string())


def bench_parser() -> argparse.ArgumentParser:
    from . import sweep as sw

    ap = argparse.ArgumentParser(
        prog="python -m unlearnkit bench",
        description=BENCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--task",
        default="full-class",
        help=f"comma-separated tasks from {', '.join(sw.TASKS)} (default: full-class)",
    )
    ap.add_argument(
        "--methods",
        required=True,
        help="comma-separated registered method names, e.g. jit,unsir,mask "
        f"(registered: {', '.join(sorted(uk.methods.REGISTRY))})",
    )
    ap.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-4 or 0,2,5 (default: 0-2)")
    ap.add_argument("--out", required=True, help="results file: .csv, .jsonl or .parquet (needs pyarrow)")
    ap.add_argument(
        "--profile",
        default=None,
        help="smoke, quick or full: the preset for dataset, model and training "
        "(default: UNLEARNKIT_PROFILE, else quick)",
    )
    ap.add_argument(
        "--forget",
        action="append",
        default=[],
        metavar="TASK=ITEMS",
        help="forget items of a task, e.g. full-class=0,3,8 or sub-class=3,7 (repeatable)",
    )
    ap.add_argument("--dataset", default=None, help="override the preset's dataset (e.g. digits, cifar10)")
    ap.add_argument("--model", default=None, help="override the preset's architecture")
    ap.add_argument(
        "--model-kwargs",
        default=None,
        help="architecture options as JSON, e.g. '{\"width\": 32}' (default: the preset's, "
        "or none with --model)",
    )
    ap.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    ap.add_argument("--lr", type=float, default=None, help="override the training learning rate")
    ap.add_argument("--fraction", type=float, default=None, help="share of D forgotten by 'random' (0.1)")
    ap.add_argument("--k", type=int, default=None, help="number of instances forgotten by 'instances' (16)")
    ap.add_argument(
        "--hp", default=None, help='per-method hyper-parameters as JSON, e.g. \'{"jit": {"lr": 1e-4}}\''
    )
    ap.add_argument("--no-mia", action="store_true", help="skip both membership-inference attacks")
    ap.add_argument("--no-relearn", action="store_true", help="skip the relearn-time column")
    ap.add_argument(
        "--skip-inapplicable",
        action="store_true",
        help="leave out a method on tasks it does not fit instead of stopping",
    )
    ap.add_argument(
        "--paired",
        action="store_true",
        help="on the class tasks run seed i with forget item i (as many seeds as items) instead of "
        "every seed with every item",
    )
    ap.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: in-process, one run after another (default, nothing extra needed); "
        "ray: fan the runs out on Ray (pip install 'unlearnkit[scale]')",
    )
    ap.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the cluster to join (e.g. ray://head:10001 or auto); "
        "without it Ray starts locally",
    )
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    ap.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        help="GPUs each Ray run reserves (default: 1 in the full profile, else 0)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def bench(argv=None) -> int:
    import os

    from . import sweep as sw

    a = bench_parser().parse_args(argv)
    os.environ.setdefault("UNLEARNKIT_PROGRESS", "0")  # one bar for the sweep, none per run
    try:
        forget = {}
        for f in a.forget:
            if "=" not in f:
                raise sw.SweepError(f"--forget takes TASK=ITEMS, e.g. full-class=0,3,8; got {f!r}.")
            t, items = f.split("=", 1)
            forget[t.strip()] = [i.strip() for i in items.split(",") if i.strip()]
        try:
            hp = json.loads(a.hp) if a.hp else {}
        except json.JSONDecodeError as e:
            raise sw.SweepError(f"--hp is not valid JSON ({e}).") from None
        try:
            mkw = json.loads(a.model_kwargs) if a.model_kwargs else ({} if a.model else None)
        except json.JSONDecodeError as e:
            raise sw.SweepError(f"--model-kwargs is not valid JSON ({e}).") from None
        settings = dict(
            dataset=a.dataset,
            model=a.model,
            model_kwargs=mkw,
            epochs=a.epochs,
            lr=a.lr,
            fraction=a.fraction,
            k=a.k,
            hp=hp or None,
            mia=False if a.no_mia else None,
            relearn={} if a.no_relearn else None,
        )
        uk.profile(a.profile, quiet=True)
        res = sw.sweep(
            a.methods,
            a.task,
            a.seeds,
            a.out,
            forget=forget,
            engine=a.engine,
            address=a.address,
            num_cpus=a.num_cpus,
            gpus_per_run=a.gpus_per_run,
            progress=not a.no_progress,
            skip_inapplicable=a.skip_inapplicable,
            paired=a.paired,
            log=lambda m: print(m, file=sys.stderr),
            **settings,
        )
    except sw.SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for t, tab in sw.ranking(res).items():
            print(f"\n== {t} (ranked by distance to retrain) ==")
            print(tab.to_string())
    failed = res.attrs.get("failed", [])
    if failed:
        print(
            f"\n{len(failed)} runs failed (see above); run the same command again to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return bench(argv[1:])
    return classic(argv)


if __name__ == "__main__":
    sys.exit(main())
