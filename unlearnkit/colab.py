"""The way into a chapter on Colab: its badge and its first code cell, built from one place.

Every chapter opens with a Colab badge (markdown, in its first cell) and a code cell that, on
Colab only, installs this version of unlearnkit from its repository
(:data:`unlearnkit._version.REPOSITORY`, tag ``v`` + :data:`unlearnkit.__version__`). The
package's own dependencies are everything a chapter imports (torch, torchvision, numpy, scipy,
scikit-learn, pandas, matplotlib, seaborn, tqdm, ipywidgets), so the cell installs nothing else;
``myst_nb`` (the book's renderer) is optional, :func:`unlearnkit.chapter` works without it.

* :func:`install_cell` and :func:`badge` are the text the chapters must carry;
  :func:`problems` says where a chapter differs and :func:`sync` rewrites it
  (``python -m unlearnkit.colab --sync``).
* ``python -m unlearnkit.colab --fresh-env DIR --chapter 01`` checks the path a reader takes: a
  new virtual environment with only what the install cell installs (from this checkout instead of
  the repository, which a machine without internet cannot reach) plus a Jupyter kernel, in which
  the chapter runs in ``smoke``. ``.ci/run`` runs it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ._version import REPOSITORY, __version__

COLAB = "https://colab.research.google.com/github"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def requirement(source: str | None = None) -> str:
    """The pip requirement of this version: from the repository at tag ``v<version>``, or from
    ``source`` (a local checkout) when given."""
    if source is not None:
        return f"unlearnkit @ {Path(source).resolve().as_uri()}"
    return f"unlearnkit @ git+{REPOSITORY}@v{__version__}"


def install_cell() -> str:
    """The source of every chapter's first code cell."""
    return (
        f'import sys\n\nif "google.colab" in sys.modules:\n    !pip install -q "{requirement()}"\n'
        "    # to keep the trained models on Drive (a chapter then resumes after a disconnect):\n"
        '    # from google.colab import drive; drive.mount("/content/drive")\n'
        "    # %env UNLEARNKIT_DATA=/content/drive/MyDrive/unlearnkit"
    )


def badge(stem: str) -> str:
    """The "Open in Colab" badge of the chapter ``book/<stem>.ipynb`` (main branch)."""
    path = REPOSITORY.removeprefix("https://github.com/")
    return f"[![Open In Colab]({BADGE_IMAGE})]({COLAB}/{path}/blob/main/book/{stem}.ipynb)"


def _first_code(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def problems(nb_path: Path) -> list[str]:
    """What differs from the badge and install cell this version would write (empty: nothing)."""
    import nbformat

    nb_path = Path(nb_path)
    nb = nbformat.read(nb_path, as_version=4)
    out = []
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or badge(nb_path.stem) not in first.source:
        out.append(f"{nb_path.name}: the first cell does not carry the Colab badge {badge(nb_path.stem)}")
    code = _first_code(nb)
    if code is None or code.source.strip() != install_cell():
        out.append(f"{nb_path.name}: the first code cell is not the install cell of version {__version__}")
    return out


def sync(nb_path: Path) -> bool:
    """Rewrite the chapter's badge and install cell to this version's; ``True`` if it changed.
    (The install cell is a code cell: re-execute the chapter afterwards, its stamp covers it.)"""
    import re

    import nbformat

    nb_path = Path(nb_path)
    if not problems(nb_path):
        return False
    nb = nbformat.read(nb_path, as_version=4)
    first = nb.cells[0]
    pattern = r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)"
    if re.search(pattern, first.source):
        first.source = re.sub(pattern, lambda _: badge(nb_path.stem), first.source, count=1)
    else:
        head, _, rest = first.source.partition("\n")
        first.source = f"{head}\n\n{badge(nb_path.stem)}\n{rest}"
    _first_code(nb).source = install_cell()
    nbformat.write(nb, nb_path)
    return True


def fresh_env(env_dir: Path, chapter: Path, source: Path, timeout: float = 900) -> float:
    """Create a virtual environment in ``env_dir`` with only the install cell's requirement (from
    ``source``) and a Jupyter kernel, then execute ``chapter`` in it with the ``smoke`` profile.
    Returns the seconds the chapter took; raises ``RuntimeError`` saying what failed."""
    env_dir, chapter = Path(env_dir), Path(chapter).resolve()
    py = env_dir / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", str(env_dir)],
        [str(py), "-m", "pip", "install", "-q", requirement(source), "ipykernel", "nbclient", "nbformat"],
    ]
    for cmd in steps:
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeError(f"could not build the fresh environment: {' '.join(cmd[:4])} ... failed")
    script = (
        "import sys, nbformat\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name='python3',\n"
        "               resources={'metadata': {'path': sys.argv[3]}}).execute()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARNKIT_")}
    env.update(  # a fresh zoo too: a reader's first run trains its models
        UNLEARNKIT_PROFILE="smoke",
        UNLEARNKIT_DATA=str(env_dir / "data"),
        PATH=f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    run = subprocess.run(
        [str(py), "-c", script, str(chapter), str(int(timeout)), str(chapter.parent)],
        env=env,
        cwd=env_dir,  # not the checkout: the chapter must import the installed package
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{chapter.name} failed in the fresh environment:\n{run.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unlearnkit.colab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the repository (default: here)")
    ap.add_argument("--sync", action="store_true", help="rewrite every chapter's badge and install cell")
    ap.add_argument("--fresh-env", metavar="DIR", help="run one chapter in a new environment in DIR")
    ap.add_argument("--chapter", default="01", help="with --fresh-env: the chapter whose name starts so")
    a = ap.parse_args(argv)
    root = Path(a.root).resolve()
    chapters = sorted((root / "book").glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        print(f"No chapters under {root / 'book'}: give the repository with --root.", file=sys.stderr)
        return 2
    if a.fresh_env:
        pick = [c for c in chapters if c.name.startswith(a.chapter)]
        if not pick:
            print(f"No chapter starts with {a.chapter!r}.", file=sys.stderr)
            return 2
        try:
            s = fresh_env(Path(a.fresh_env), pick[0], root)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{pick[0].name} ran in a fresh environment ({requirement(root)}) in {s:.0f} s")
        return 0
    if a.sync:
        changed = [c.name for c in chapters if sync(c)]
        print("rewrote: " + (", ".join(changed) if changed else "nothing (every chapter is current)"))
        return 0
    found = [p for c in chapters for p in problems(c)]
    print("\n".join(found) or f"every chapter carries the badge and install cell of {__version__}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
