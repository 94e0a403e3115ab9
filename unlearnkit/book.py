"""``python -m unlearnkit.book``: execute every chapter and render the book.

The committed notebooks are never touched unless ``--write-back`` asks for it: the book
sources are copied to ``_build/run``, executed there and rendered with warnings as errors to
``_build/html``. ``--profile`` picks the profile the chapters run (``UNLEARNKIT_PROFILE``;
without it, a CPU box runs ``quick`` on the embedded digits data), ``--seed`` the seed
(``UNLEARNKIT_SEED``). ``--render-only`` renders the committed outputs instead.

``--dry-run`` checks a profile's code path without its cost, e.g. ``--profile full --dry-run``
on a laptop before renting a GPU: every chapter runs on a copy in ``_build/dry-run`` with
``UNLEARNKIT_DRY_RUN=1`` (loops capped at two steps, datasets at 160 images per split, models
cached in a temporary folder, claims skipped); nothing is rendered. Either way every chapter
is run even after one fails, the time per chapter is printed with a summary at the end, and
the exit status is non-zero when any chapter failed.

``--write-back`` stamps each notebook it copies back (metadata ``unlearnkit``): a hash of its
code cells, a hash of the library's source, the profile and the seed it ran. ``--check-stamps``
(and the test suite) fails when a committed notebook's code cells no longer match its stamp: its
stored outputs were made by other code and must be re-executed, never edited by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROFILES = ("smoke", "quick", "full")
DRY_RUN_TIMEOUT = 300  # seconds per chapter in a dry run (two steps per loop) unless --timeout says
CIFAR10_FOLDERS = ("cifar10-jpeg", "cifar10", "CIFAR-10-images")


STAMP_KEY = "unlearnkit"
LIBRARY = Path(__file__).resolve().parent


def code_digest(nb) -> str:
    """sha256 of a notebook's code cells (sources in order; outputs and markdown do not count)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.rstrip().encode())
            h.update(b"\0")
    return h.hexdigest()


def library_digest(folder: Path = LIBRARY) -> str:
    """sha256 of the library's Python sources (every ``*.py`` under ``unlearnkit/``, by path)."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        h.update(str(f.relative_to(folder)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def stamp(nb, profile: str, seed, dry_run: bool = False) -> dict:
    """Write the provenance stamp into ``nb.metadata`` and return it."""
    import torch

    s = {
        "code": code_digest(nb),
        "library": library_digest(),
        "profile": profile,
        "seed": seed,
        "torch": torch.__version__,
        "executed": time.strftime("%Y-%m-%d"),
    }
    nb.metadata[STAMP_KEY] = s
    return s


def stamp_problem(nb_path: Path) -> str | None:
    """Why the committed notebook's stored outputs may not come from its code, or None when they do."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    s = nb.metadata.get(STAMP_KEY)
    if not isinstance(s, dict) or "code" not in s:
        return (
            f"{nb_path.name} has no execution stamp: execute it with `python -m unlearnkit.book "
            f"--only {nb_path.stem} --write-back` (never edit stored outputs by hand)"
        )
    if s["code"] != code_digest(nb):
        return (
            f"{nb_path.name}: its code cells changed after its outputs were stored (stamp "
            f"{s['code'][:12]}, code now {code_digest(nb)[:12]}): re-execute it with `python -m "
            f"unlearnkit.book --only {nb_path.stem} --write-back`"
        )
    return None


def chapters(root: Path) -> list[Path]:
    """The notebooks of ``_toc.yml``'s chapters, in order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [c["file"] for c in toc.get("chapters", [])]
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


@dataclass
class Result:
    """How one chapter's execution went."""

    chapter: str
    seconds: float
    error: str | None = None  # None: it ran through
    cell: int | None = None  # index of the failing cell

    @property
    def ok(self) -> bool:
        return self.error is None


def _first_line(source: str) -> str:
    line = next((s for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= 70 else line[:69] + "…"


class ChapterFailed(RuntimeError):
    """A chapter did not run through; ``.result`` says where and why."""

    def __init__(self, result: "Result"):
        super().__init__(f"{result.chapter}: {result.error}")
        self.result = result


def execute(nb_path: Path, timeout: float | None = None, out_path: Path | None = None) -> float:
    """Run the notebook at ``nb_path`` in a fresh kernel (working directory: its folder) and
    return the seconds it took.

    The kernel inherits this process's environment. ``timeout`` bounds the whole chapter in
    seconds (``None``: unbounded). The executed notebook, partial when a cell failed, is written
    to ``out_path`` (default: ``nb_path``). Raises :class:`ChapterFailed` naming the failing
    cell and its error.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(nb_path, as_version=4)
    where = {"cell": None}
    t0 = time.monotonic()
    deadline = None if not timeout else t0 + float(timeout)

    def cell_timeout(cell):
        return None if deadline is None else max(1.0, deadline - time.monotonic())

    def on_cell_start(cell, cell_index):
        where["cell"] = cell_index

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout_func=cell_timeout,
        record_timing=False,
        on_cell_start=on_cell_start,
        resources={"metadata": {"path": str(nb_path.parent)}},
    )
    error = None
    try:
        client.execute()
    except CellExecutionError as e:
        error = f"{e.ename}: {e.evalue}" if getattr(e, "ename", None) else str(e).strip().splitlines()[-1]
    except CellTimeoutError:
        error = f"timed out: the chapter ran past its {timeout:.0f}s limit (--timeout)"
    except Exception as e:  # dead kernel, kernel that never starts, ...
        error = f"{type(e).__name__}: {e}"
    seconds = time.monotonic() - t0
    nbformat.write(nb, out_path or nb_path)
    if error:
        cell = where["cell"]
        if cell is not None:
            error = f"cell {cell} `{_first_line(nb.cells[cell].source)}`: {error}"
        raise ChapterFailed(Result(nb_path.stem, seconds, error, cell))
    return seconds


@contextmanager
def environment(env: dict):
    """``os.environ`` is ``env`` inside the block (kernels started there inherit it), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build(src: Path, out: Path) -> None:
    """Render the book at ``src`` to ``out/_build/html`` with warnings as errors."""
    cmd = [
        sys.executable,
        "-m",
        "jupyter_book",
        "build",
        str(src),
        "--path-output",
        str(out),
        "-W",
        "-n",
        "--keep-going",
    ]
    # jupyter-book 1 exposes its CLI as `jupyter-book`; fall back to it when -m is unavailable
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe:
        cmd = [exe] + cmd[3:]
    subprocess.run(cmd, check=True)


def find_cifar10(data: Path) -> Path | None:
    """An unpacked CIFAR-10 ImageFolder (``train/`` and ``test/``) under the data folder, if any."""
    for name in CIFAR10_FOLDERS:
        d = data / name
        if (d / "train").is_dir() and (d / "test").is_dir():
            return d
        # a tarball with a top folder of its own, unpacked into data/<name>/
        subs = [s for s in d.iterdir() if s.is_dir()] if d.is_dir() else []
        if len(subs) == 1 and (subs[0] / "train").is_dir() and (subs[0] / "test").is_dir():
            return subs[0]
    return None


def kernel_env(
    root: Path, profile: str | None = None, seed: int | None = None, dry_run: bool = False
) -> dict:
    """The environment the chapters' kernels run in (the runner's own, plus the run's switches)."""
    env = dict(os.environ)
    env.setdefault("UNLEARNKIT_DATA", str(root / "data"))
    env["UNLEARNKIT_PROGRESS"] = "0"  # progress bars never leak into stored outputs
    if profile:
        env["UNLEARNKIT_PROFILE"] = profile
    if seed is not None:
        env["UNLEARNKIT_SEED"] = str(seed)
    if dry_run:
        env["UNLEARNKIT_DRY_RUN"] = "1"
    else:
        env.pop("UNLEARNKIT_DRY_RUN", None)
    if not env.get("UNLEARNKIT_CIFAR10"):
        roots = dict.fromkeys([Path(env["UNLEARNKIT_DATA"]).expanduser(), root / "data"])
        found = next((f for f in map(find_cifar10, roots) if f is not None), None)
        if found is not None:
            env["UNLEARNKIT_CIFAR10"] = str(found.resolve())
            print(f"CIFAR-10: using the ImageFolder copy at {found} (UNLEARNKIT_CIFAR10)")
    return env


def copy_sources(root: Path, dest: Path) -> None:
    """A fresh copy of the book sources (configuration, table of contents, book/) in ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(root / f, dest / f)
    shutil.copytree(root / "book", dest / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


def summary(results: list[Result], title: str) -> str:
    """The table printed at the end of a run."""
    w = max([len(r.chapter) for r in results] + [len("chapter")])
    lines = [title, f"{'chapter':<{w}}  {'status':<6}  {'time':>8}", f"{'-' * w}  ------  --------"]
    for r in results:
        lines.append(f"{r.chapter:<{w}}  {'ok' if r.ok else 'FAILED':<6}  {_clock(r.seconds):>8}")
    total = sum(r.seconds for r in results)
    failed = [r for r in results if not r.ok]
    lines.append(f"{'total':<{w}}  {f'{len(results) - len(failed)}/{len(results)}':<6}  {_clock(total):>8}")
    for r in failed:
        lines.append(f"FAILED {r.chapter}: {r.error}")
    return "\n".join(lines)


def _clock(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _execute_once(nb: Path, env: dict, timeout: float | None) -> Result:
    # the chapter writes what its model calls cost (unlearnkit.budget) next to the copies
    env = {**env, "UNLEARNKIT_BUDGET": str(nb.parent.parent / "budget" / f"{nb.stem}.json")}
    try:
        with environment(env):
            return Result(nb.stem, execute(nb, timeout=timeout))
    except ChapterFailed as e:
        return e.result


def run_chapters(
    root: Path, work: Path, env: dict, only=None, timeout: float | None = None, write_back: bool = False
) -> list[Result]:
    """Execute the chapters of the copy in ``work`` one after the other, going on after a failure."""
    results = []
    for nb in chapters(work):
        if only and not any(s in nb.stem for s in only):
            continue
        print(f"executing {nb.relative_to(work)} ...", flush=True)
        r = _execute_once(nb, env, timeout)
        if not r.ok and "timed out" in (r.error or ""):
            # a kernel whose reply got lost sits idle until the limit; a slow chapter times out twice
            print(f"  timed out after {_clock(r.seconds)}: running it once more", flush=True)
            r = _execute_once(nb, env, timeout)
        if r.ok:
            print(f"  done in {_clock(r.seconds)}", flush=True)
            if write_back:
                _stamp_file(nb, env)
                shutil.copy(nb, root / nb.relative_to(work))
                print(f"  outputs written back to {nb.relative_to(work)}", flush=True)
        else:
            print(f"  FAILED after {_clock(r.seconds)}: {r.error}", flush=True)
        results.append(r)
    return results


def _stamp_file(nb_path: Path, env: dict) -> None:
    import nbformat

    from .profiles import profile_name

    nb = nbformat.read(nb_path, as_version=4)
    with environment(env):
        name = profile_name()
    stamp(nb, name, int(env.get("UNLEARNKIT_SEED", 0)))
    nbformat.write(nb, nb_path)


def check_stamps(root: Path) -> list[str]:
    """The problems :func:`stamp_problem` finds in the committed chapters (empty: all stamped)."""
    return [p for p in map(stamp_problem, chapters(root)) if p]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m unlearnkit.book",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--root", default=".", help="the repository root (with _config.yml and _toc.yml)")
    ap.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="the profile the chapters run (sets UNLEARNKIT_PROFILE; default: the environment's, "
        "else full with a GPU and quick without)",
    )
    ap.add_argument("--seed", type=int, default=None, help="the seed of every chapter (sets UNLEARNKIT_SEED)")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="check the code path only: loops capped at two steps, small data, no claims, "
        "copies in _build/dry-run, nothing rendered",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds each chapter may run (default: unbounded; {DRY_RUN_TIMEOUT} in a dry run)",
    )
    ap.add_argument(
        "--write-back",
        action="store_true",
        help="copy each successfully executed notebook back into book/ (refreshes the committed outputs)",
    )
    ap.add_argument(
        "--render-only", action="store_true", help="render the committed outputs, execute nothing"
    )
    ap.add_argument(
        "--work",
        default=None,
        help="folder for the executed copies (default _build/run, or _build/dry-run); give each "
        "concurrent run its own",
    )
    ap.add_argument(
        "--no-render", action="store_true", help="execute (and write back) but do not render the book"
    )
    ap.add_argument(
        "--check-stamps",
        action="store_true",
        help="check that every committed chapter's code cells match its execution stamp; execute nothing",
    )
    ap.add_argument(
        "--save-budget",
        action="store_true",
        help="with --profile full --dry-run: save the planned cost per chapter into the package "
        "(unlearnkit/budget_planned.json), where the chapters and the introduction read it",
    )
    ap.add_argument("--only", nargs="*", default=None, help="execute only chapters whose name contains these")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    if not (root / "_toc.yml").exists():
        sys.exit(f"{root} has no _toc.yml: run this from the repository root or pass --root.")
    if a.seed is not None and a.seed < 0:
        ap.error("--seed must be a non-negative integer")
    if a.save_budget and not (a.dry_run and a.profile == "full"):
        sys.exit("--save-budget needs --profile full --dry-run: the planned table is full's.")
    if a.dry_run and (a.write_back or a.render_only):
        ap.error(
            "--dry-run executes throw-away copies: it cannot be combined with --write-back or --render-only"
        )
    if a.check_stamps:
        problems = check_stamps(root)
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(chapters(root)) - len(problems)}/{len(chapters(root))} chapters match their stamps")
        return 1 if problems else 0
    if a.render_only:
        build(root, root)
        print(f"rendered committed outputs to {root / '_build' / 'html'}")
        return 0

    work = Path(a.work).resolve() if a.work else root / "_build" / ("dry-run" if a.dry_run else "run")
    copy_sources(root, work)
    env = kernel_env(root, a.profile, a.seed, a.dry_run)
    if a.dry_run:  # the chapters share one zoo, as a reader's book run does (a model is trained once)
        shutil.rmtree(work / "zoo", ignore_errors=True)
        env["UNLEARNKIT_DRY_RUN_ZOO"] = str(work / "zoo")
    timeout = a.timeout if a.timeout is not None else (DRY_RUN_TIMEOUT if a.dry_run else None)
    mode = "DRY RUN of " if a.dry_run else ""
    print(
        f"{mode}profile {env.get('UNLEARNKIT_PROFILE', '(hardware default)')}, "
        f"seed {env.get('UNLEARNKIT_SEED', '(default)')}, copies in {work}"
        + (f", {timeout:.0f}s per chapter" if timeout else ""),
        flush=True,
    )
    results = run_chapters(root, work, env, a.only, timeout, a.write_back)
    print()
    print(summary(results, f"{mode}profile {env.get('UNLEARNKIT_PROFILE', '(hardware default)')}:"))
    from . import budget

    cost = budget.collect(work / "budget", [r.chapter for r in results])
    if cost:
        budget.save(work / "budget.json", cost)
        what = "planned (this dry run's counts scaled to the loops it capped)" if a.dry_run else "of this run"
        print(f"\nEE (ResNet-18 CIFAR-10 epoch-equivalents) {what}, also in {work / 'budget.json'}:")
        print(budget.table(cost))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\n{len(failed)} chapter(s) failed; the executed copies are in {work}", file=sys.stderr)
        return 1
    full_dry = a.dry_run and env.get("UNLEARNKIT_PROFILE") == "full"
    if full_dry and a.save_budget:
        print(f"planned table saved to {budget.save_planned(cost)}")
        if budget.write_intro_table(root / "book" / "intro.md"):
            print(f"and written into {root / 'book' / 'intro.md'}")
    for n, why in budget.WAIVED.items() if full_dry else ():
        if n in cost and cost[n].get("total", 0.0) > budget.CHAPTER_LIMIT:
            print(f"over budget, waived for now: {n} ({cost[n]['total']:.0f} EE): {why}")
    over = budget.over_limits(cost) if full_dry else []
    if over:
        print(
            "\nover budget: " + "; ".join(over) + ". Cut the chapter's `full` settings (fewer epochs, "
            "seeds or models) or make the extra work opt-in.",
            file=sys.stderr,
        )
        return 1
    if a.dry_run:
        print(f"\ndry run passed: every chapter ran its code path (executed copies in {work})")
        return 0
    if a.no_render:
        print(
            "executed; not rendered (--no-render)"
            + (" (outputs written back to book/)" if a.write_back else "")
        )
        return 0
    build(work, root)
    print(
        f"rendered to {root / '_build' / 'html'}"
        + (" (outputs written back to book/)" if a.write_back else " (committed notebooks untouched)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
