"""Where the runs of a sweep execute: in this process, or fanned out on Ray.

Part of :mod:`unlearnkit.sweep`. The driver writes each run's rows as it finishes; a worker that
dies loses only its own run, which is reported and left for the next resume.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable

from ..results import REFERENCE, SweepError, append_rows
from .config import SweepConfig

ENGINES = ("local", "ray")


def progress_bar(total: int, progress: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="run", file=sys.stderr)


def _env_vars() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith("UNLEARNKIT_")}


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the duration of a ``with`` block: join ``address`` (a cluster) or start a local Ray
    with ``num_cpus``; an already running session is reused and left running. The workers get
    the ``UNLEARNKIT_*`` environment variables of this process (profile, data folder, ...)."""
    try:
        import ray
    except ImportError:
        raise SweepError(
            "The ray engine needs Ray: pip install 'unlearnkit[scale]' (or pip install "
            "'ray>=2.9'). The default engine (in-process) needs nothing extra."
        ) from None
    if ray.is_initialized():
        yield ray
        return
    if address:  # a cluster's workers do not share this process's environment: hand it on
        ray.init(address=address, runtime_env={"env_vars": _env_vars()}, log_to_driver=False)
    else:  # local workers inherit it
        ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_map(
    fn: Callable,
    items: list,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_item: float = 1,
    gpus_per_item: float = 0,
    on_result: Callable | None = None,
    on_error: Callable | None = None,
) -> list:
    """``[fn(item) for item in items]`` on Ray, results in the order of ``items``.

    ``on_result(i, result)`` is called as each finishes (in completion order); a task whose worker
    raised or died calls ``on_error(i, exception)`` (or re-raises without one) and leaves ``None``.
    Also used for the many models of the forget-quality score (the showdown chapter).
    """
    with ray_session(address, num_cpus) as ray:
        remote = ray.remote(num_cpus=cpus_per_item, num_gpus=gpus_per_item, max_retries=0)(fn)
        refs = {remote.remote(it): i for i, it in enumerate(items)}
        out = [None] * len(items)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            try:
                out[i] = ray.get(ready[0])
            except Exception as e:  # a worker error or a dead worker
                if on_error is None:
                    raise
                on_error(i, e)
                continue
            if on_result is not None:
                on_result(i, out[i])
        return out


def _ray_run(args):
    from .run import run_one

    cfg, run = args
    return run_one(cfg, run)


def run_all(
    cfg: SweepConfig,
    todo: list,
    out: Path,
    engine: str,
    run_one: Callable,
    *,
    address=None,
    num_cpus=None,
    gpus_per_run=None,
    progress: bool = True,
    log: Callable = print,
    append: Callable = append_rows,
) -> list:
    """Do the runs ``todo`` with ``run_one(cfg, run)`` (in-process) or on Ray, writing each
    one's rows to ``out`` with ``append(out, rows)`` as it finishes; returns the failed runs,
    with their exceptions."""
    if engine not in ENGINES:
        raise SweepError(f"Unknown engine {engine!r}: 'local' (in-process, the default) or 'ray'.")
    bar = progress_bar(len(todo), progress, "bench")
    failed = []

    def lost(run, e, where=""):
        failed.append((run, e))
        log(
            f"[bench] run {run.key} failed{where} ({type(e).__name__}: {e}); it is not in {out}: "
            f"resume to retry it"
        )

    try:
        if engine == "local":
            for r in todo:
                if bar is not None:
                    bar.set_postfix_str(f"{r.task} {r.forget} s{r.seed} {r.method}")
                try:
                    rows = run_one(cfg, r)
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # one failed run; the others go on
                    lost(r, e)
                else:
                    append(out, rows)
                if bar is not None:
                    bar.update()
            return failed
        if gpus_per_run is None:
            gpus_per_run = 1 if cfg.profile == "full" and not cfg.dry_run else 0
        # reference runs first: they train the zoo's models that the method runs then load
        with ray_session(address, num_cpus):
            for batch in (
                [r for r in todo if r.method == REFERENCE],
                [r for r in todo if r.method != REFERENCE],
            ):
                if not batch:
                    continue

                def got(i, rows):
                    append(out, rows)
                    if bar is not None:
                        bar.update()

                ray_map(
                    _ray_run,
                    [(cfg.as_dict(), r.__dict__) for r in batch],
                    gpus_per_item=gpus_per_run,
                    on_result=got,
                    on_error=lambda i, e, batch=batch: lost(batch[i], e, " on its worker"),
                )
    finally:
        if bar is not None:
            bar.close()
    return failed
