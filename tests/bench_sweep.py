"""Wall time of the showdown sweep in-process against local Ray with 2 workers, and where it goes.

Not part of the test suite (pytest does not collect ``bench_*.py``). Run it by hand:

    python tests/bench_sweep.py                          # quick, seed 0, every task and method
    python tests/bench_sweep.py --seeds 0-2 --out book/data/bench_sweep.json

Each engine starts from an empty data folder (its own zoo: the original and retrained models are
trained inside the timed sweep, as on a first run) and runs the same sweep as the showdown chapter
(``book/09_showdown.ipynb``): every registered method on every task it fits, the chapter's forget
items, the profile's preset hyper-parameters. The JSON records both wall times, the sum of each
run's parts (zoo training or loading, the method, the evaluation with both MIAs, the relearn
time; the columns ``time_*`` of the results file), whether Ray's table equals the in-process one,
and the machine and its load average.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

# the chapter's forget items in quick: three classes, one sub-class (see its CONFIGS)
FORGET = {
    "quick": {"full-class": ["0", "3", "8"], "sub-class": ["3"]},
    "smoke": {"full-class": ["0"], "sub-class": ["3"]},
}
METRICS = ["train_forget", "train_retain", "test_forget", "test_retain", "MIA_entropy_%", "MIA_loss_AUC"]


def one(engine: str, args, methods, root: Path) -> dict:
    import unlearnkit as uk
    from unlearnkit import sweep as sw

    data = root / engine
    os.environ["UNLEARNKIT_DATA"] = str(data)
    uk.profile(args.profile, quiet=True)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    res = sw.sweep(
        methods,
        sw.TASKS,
        args.seeds,
        data / "results.csv",
        forget=FORGET[args.profile],
        engine=engine,
        num_cpus=args.workers if engine == "ray" else None,
        progress=False,
        skip_inapplicable=True,
        log=lambda m: print(m, flush=True),
    )
    wall = time.perf_counter() - t0
    ref = res[res["method"] == "original"]  # one row per reference run
    per = res[~res["method"].isin(["original", "retrain"])]
    parts = {
        k: float(per[f"time_{k}"].sum() + ref[f"time_{k}"].sum())
        for k in ("zoo", "method", "eval", "relearn", "run")
    }
    return {
        "wall_s": wall,
        "runs": int(len(per) + len(ref)),
        "rows": int(len(res)),
        "failed": len(res.attrs.get("failed", [])),
        "load_avg_before": load0,
        "load_avg_after": os.getloadavg(),
        "parts_s": parts,
        "results": res,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick"))
    ap.add_argument("--seeds", default="0", help="seeds of the sweep (default 0; the chapter runs 0-2)")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (default 2)")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--out", default="book/data/bench_sweep.json")
    args = ap.parse_args(argv)
    os.environ["UNLEARNKIT_PROGRESS"] = "0"
    os.environ.pop("UNLEARNKIT_DRY_RUN", None)
    import torch

    import unlearnkit as uk
    from unlearnkit import sweep as sw

    methods = [
        m
        for m in uk.methods.REGISTRY
        if m != "retrain" and any(sw.applicable(m, t) is None for t in sw.TASKS)
    ]
    out = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads_in_process": torch.get_num_threads(),
            "torch": torch.__version__,
            "unlearnkit": uk.__version__,
        },
        "profile": args.profile,
        "seeds": sw.parse_seeds(args.seeds),
        "forget": FORGET[args.profile],
        "methods": methods,
        "ray_workers": args.workers,
        "note": "each engine starts from an empty zoo; the machine's other jobs are in the load "
        "averages (1, 5, 15 min)",
    }
    tables = {}
    with tempfile.TemporaryDirectory() as d:
        for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
            r = one(engine, args, methods, Path(d))
            tables[engine] = r.pop("results")
            out[engine] = r
            print(engine, json.dumps({k: v for k, v in r.items()}, default=float), flush=True)
    if {"local", "ray"} <= set(tables):
        a, b = (
            tables[e].sort_values(sw.KEYS).reset_index(drop=True)[sw.KEYS + METRICS] for e in ("local", "ray")
        )
        out["same_table"] = bool(
            a.shape == b.shape
            and (a[sw.KEYS] == b[sw.KEYS]).all().all()
            and ((a[METRICS] - b[METRICS]).abs().fillna(0) < 1e-6).all().all()
        )
        out["speedup"] = out["local"]["wall_s"] / out["ray"]["wall_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
