"""The reader's way in: every chapter's Colab badge and install cell come from one place
(unlearnkit/_version.py), and the publishing workflow runs the README's commands."""

import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

import unlearnkit as uk
from unlearnkit import colab
from unlearnkit._version import REPOSITORY

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_every_chapter_carries_this_versions_badge_and_install_cell(nb):
    assert colab.problems(nb) == []


def test_the_install_cell_pins_this_version_and_installs_only_the_package():
    cell = colab.install_cell()
    assert f"git+{REPOSITORY}@v{uk.__version__}" in cell
    (line,) = [x for x in cell.splitlines() if "pip install" in x]
    # one requirement: the package's own dependencies cover every import of a chapter
    assert re.fullmatch(r'\s*!pip install -q "unlearnkit @ [^"]+"', line)
    assert 'if "google.colab" in sys.modules' in cell  # a local kernel installs nothing


def test_the_repository_is_written_once():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["repository"]["url"] == REPOSITORY


def test_sync_rewrites_an_old_badge_and_cell_and_leaves_a_current_chapter_alone(tmp_path):
    nb_path = tmp_path / "09_x.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# X\n\n[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            "(https://colab.research.google.com/github/someone/old/blob/main/book/09_x.ipynb)\n\ntext"
        ),
        nbformat.v4.new_code_cell('!pip install -q "unlearnkit==0.0.1"'),
        nbformat.v4.new_code_cell("import unlearnkit as uk"),
    ]
    nbformat.write(nb, nb_path)
    assert len(colab.problems(nb_path)) == 2
    assert colab.sync(nb_path) is True
    assert colab.problems(nb_path) == [] and colab.sync(nb_path) is False
    again = nbformat.read(nb_path, as_version=4)
    assert again.cells[0].source.count("colab-badge") == 1 and again.cells[0].source.endswith("text")
    assert again.cells[2].source == "import unlearnkit as uk"


def test_the_command_line_reports_a_stale_chapter(tmp_path, capsys):
    (tmp_path / "book").mkdir()
    shutil.copy(NOTEBOOKS[0], tmp_path / "book" / NOTEBOOKS[0].name)
    assert colab.main(["--root", str(tmp_path)]) == 0
    nb_path = tmp_path / "book" / NOTEBOOKS[0].name
    nb = nbformat.read(nb_path, as_version=4)
    next(c for c in nb.cells if c.cell_type == "code").source = "!pip install unlearnkit"
    nbformat.write(nb, nb_path)
    capsys.readouterr()
    assert colab.main(["--root", str(tmp_path)]) == 1
    assert "install cell" in capsys.readouterr().out
    assert colab.main(["--root", str(tmp_path / "nowhere")]) == 2


def _readme_commands() -> set:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return {part.strip() for b in blocks for line in b.splitlines() for part in line.split("&&")}


def test_the_publishing_workflow_renders_the_committed_outputs_with_the_readmes_commands():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"]
    steps = wf["jobs"]["render"]["steps"]
    runs = [part.strip() for s in steps if "run" in s for part in s["run"].split("&&")]
    readme = _readme_commands()
    assert runs and all(r in readme for r in runs), set(runs) - readme
    assert ".venv/bin/python -m unlearnkit.book --render-only" in runs  # renders, executes nothing
    upload = [s for s in steps if "upload-pages-artifact" in s.get("uses", "")]
    assert upload and upload[0]["with"]["path"] == "_build/html"
    assert wf["jobs"]["deploy"]["needs"] == "render"
