"""Speed benchmark: per-sample diagonal Fisher with ``torch.func.vmap`` against a plain loop.

Not part of the test suite. Run: ``python tests/bench_fisher.py [--model cnn] [--n 256]``, or on
the Fisher-masking chapter's architecture: ``UNLEARNKIT_CIFAR10=data/cifar10-jpeg python
tests/bench_fisher.py --dataset cifar10 --model resnet20 --n 128``.
Both give the same numbers (the unit tests check allclose); this prints how much faster
the vectorised path is, which is why ``uk.diag_fisher`` uses it by default.
"""

from __future__ import annotations

import argparse
import time

import torch

import unlearnkit as uk


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--kind", default="empirical", choices=["empirical", "true"])
    a = ap.parse_args(argv)
    P = uk.profile(seed=0)
    data = uk.load_dataset(a.dataset, device=P.device)
    model = uk.build_model(a.model, data)
    x, y = data.x_train[: a.n], data.y_train[: a.n]
    res = {}
    for method in ("vmap", "loop"):
        if P.on_gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        f = uk.diag_fisher(model, x, y, kind=a.kind, method=method)
        if P.on_gpu:
            torch.cuda.synchronize()
        res[method] = (time.perf_counter() - t0, f)
        print(f"{method:5s}: {res[method][0]:7.2f}s for {a.n} samples ({a.model}, {a.kind} Fisher)")
    same = all(
        torch.allclose(res["vmap"][1][k], res["loop"][1][k], rtol=1e-4, atol=1e-8) for k in res["vmap"][1]
    )
    print(f"same result: {same}; vmap speed-up: {res['loop'][0] / res['vmap'][0]:.1f}x")


if __name__ == "__main__":
    main()
