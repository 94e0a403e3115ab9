"""The book: every chapter is in the table of contents, carries committed outputs that say
where they came from, and the whole book renders with warnings as errors."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for c in toc["chapters"]]


def test_every_chapter_is_in_the_toc():
    files = _toc_files()
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in files, f"{nb.name} is not listed in _toc.yml"
    for f in files:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f"_toc.yml names missing {f}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_committed_outputs_have_provenance_and_no_errors(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, f"{nb.name} has no committed outputs"
    assert not [o for o in outputs if o["output_type"] == "error"], f"{nb.name} has stored errors"
    text = json.dumps(outputs)
    assert "profile=" in text, f"{nb.name}: outputs do not carry the provenance line"
    assert "colab-badge" in "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_config_renders_committed_outputs():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert "book/references.bib" in cfg["bibtex_bibfiles"]


def test_book_builds_with_warnings_as_errors(tmp_path):
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    assert exe, "jupyter-book is not installed: pip install -e '.[test]'"
    res = subprocess.run([exe, "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert (tmp_path / "_build" / "html" / "index.html").exists()
