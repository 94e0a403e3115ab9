"""``python -m unlearnkit.book``: execute every chapter in the active profile and render the book.

The committed notebooks are never touched: the book sources are copied to
``_build/run``, executed there (``UNLEARNKIT_PROFILE`` picks the profile; a CPU box
runs ``quick`` on the embedded digits data), and rendered with warnings as errors to
``_build/html``. ``--render-only`` renders the committed outputs instead.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def chapters(root: Path) -> list[Path]:
    import yaml
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [c["file"] for c in toc.get("chapters", [])]
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def execute(nb_path: Path, timeout: int | None = None) -> float:
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(nb_path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    nbformat.write(nb, nb_path)
    return time.perf_counter() - t0


def build(src: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "jupyter_book", "build", str(src), "--path-output", str(out), "-W", "-n",
           "--keep-going"]
    # jupyter-book 1 exposes its CLI as `jupyter-book`; fall back to it when -m is unavailable
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe:
        cmd = [exe] + cmd[3:]
    subprocess.run(cmd, check=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m unlearnkit.book", description=__doc__)
    ap.add_argument("--root", default=".", help="the repository root (with _config.yml and _toc.yml)")
    ap.add_argument("--render-only", action="store_true", help="render the committed outputs, execute nothing")
    ap.add_argument("--only", nargs="*", default=None, help="execute only chapters whose name contains these")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    if not (root / "_toc.yml").exists():
        sys.exit(f"{root} has no _toc.yml: run this from the repository root or pass --root.")
    if a.render_only:
        build(root, root)
        print(f"rendered committed outputs to {root / '_build' / 'html'}")
        return
    run = root / "_build" / "run"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(root / f, run / f)
    shutil.copytree(root / "book", run / "book", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    os.environ.setdefault("UNLEARNKIT_DATA", str(root / "data"))
    print(f"profile: {os.environ.get('UNLEARNKIT_PROFILE', '(hardware default)')}")
    for nb in chapters(run):
        if a.only and not any(s in nb.stem for s in a.only):
            continue
        print(f"executing {nb.relative_to(run)} ...", flush=True)
        print(f"  done in {execute(nb):.0f}s", flush=True)
    build(run, root)
    print(f"rendered to {root / '_build' / 'html'} (committed notebooks untouched)")


if __name__ == "__main__":
    main()
