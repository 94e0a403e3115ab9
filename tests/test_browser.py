"""The rendered book as a reader sees it: every page of the table of contents, from the build
that ``test_book.py`` makes (built once per test run into ``_build/test-html``).

* every local image the page shows exists and is a valid, non-empty image file;
* a page with an interactive widget (a cell tagged ``widget``) also carries its static twin
  (a cell tagged ``static-twin`` with an image or an animation), which is what a reader of the
  static book sees;
* no page shows an error output (a traceback, an error block, a stderr traceback);
* headless Chromium opens the page, loads every image on it without a JavaScript error, and
  takes a screenshot, saved as ``_build/screenshots/NN.png``.

The Chromium checks skip, saying why, when no ``chromium`` is installed
(``apt-get install chromium``).
"""

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_book import ROOT, built_book  # noqa: E402,F401  (the shared session fixture)

SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium): the rendering checks need it",
)


def _pages():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]


PAGES = _pages()


def _shot_name(page: str) -> str:
    stem = Path(page).name
    m = re.match(r"(\d\d)_", stem)
    return f"{m.group(1) if m else stem}.png"


# ----------------------------------------------------------------------------- a small DOM

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
    "param",
}


class Node:
    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, dict(attrs), parent, [], []

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    def iter(self):
        yield self
        for c in self.children:
            yield from c.iter()

    def find_all(self, tag=None, cls=None):
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]

    def all_text(self):
        return "".join(t for n in self.iter() for t in n.text)


class _Tree(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.cur = Node("#document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:  # unmatched end tags are ignored
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.text.append(data)


def parse(path: Path) -> Node:
    p = _Tree()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p.root


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def html_dir(built_book):  # noqa: F811  (the fixture imported above)
    html = Path(built_book["html"])
    if not (html / "index.html").exists():
        pytest.fail(
            "the book did not build (see test_book_builds_with_warnings_as_errors):\n" + built_book["log"]
        )
    return html


def _page(html_dir: Path, page: str) -> Path:
    path = html_dir / f"{page}.html"
    assert path.exists(), f"{page} is in _toc.yml but the build has no {path.relative_to(html_dir)}"
    return path


# ----------------------------------------------------------------------------- structure


def _check_image_bytes(data: bytes, what: str):
    assert data, f"{what} is empty"
    if data.lstrip()[:5] in (b"<?xml", b"<svg ") or b"<svg" in data[:512]:
        import xml.etree.ElementTree as ET

        ET.fromstring(data)  # raises on a broken SVG
        return
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as im:
        im.verify()
    with Image.open(BytesIO(data)) as im:
        assert im.size[0] > 0 and im.size[1] > 0, f"{what} has no pixels"


@pytest.mark.parametrize("page", PAGES)
def test_every_image_exists_and_is_valid(html_dir, page):
    path = _page(html_dir, page)
    for img in parse(path).find_all("img"):
        src = img.attrs.get("src") or ""
        if not src and (img.attrs.get("id") or "").startswith("_anim_img"):
            continue  # matplotlib's JS animation: its script sets the frames (checked in Chromium)
        assert src, f"{page}: an <img> without src"
        url = urlparse(src)
        if url.scheme in ("http", "https"):
            continue  # remote badges: not part of the build
        if url.scheme == "data":
            head, _, payload = src.partition(",")
            data = base64.b64decode(payload) if head.endswith(";base64") else unquote(payload).encode()
            _check_image_bytes(data, f"{page}: inline image {head}")
            continue
        file = (path.parent / unquote(url.path)).resolve()
        assert file.is_file(), f"{page}: image {src} is missing from the build"
        _check_image_bytes(file.read_bytes(), f"{page}: image {src}")


def _has_media(node: Node) -> bool:
    if node.find_all("img") or node.find_all("svg") or node.find_all(cls="animation"):
        return True
    return any("Animation" in n.all_text() for n in node.find_all("script"))


def widget_problems(tree: Node) -> list:
    """Why a page breaks the widget rule: a cell tagged ``widget`` needs a ``static-twin`` cell
    with an image or an animation on the same page (what the static book shows instead)."""
    widgets = tree.find_all(cls="tag_widget")
    if not widgets or any(_has_media(t) for t in tree.find_all(cls="tag_static-twin")):
        return []
    return [
        f"{len(widgets)} widget cell(s) (tag 'widget') but no static twin: a cell tagged 'static-twin' "
        "whose output is an image or an animation (e.g. matplotlib's to_jshtml)"
    ]


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*[A-Za-z_][\w.]*(Error|Exception): ", re.M)


def error_problems(tree: Node) -> list:
    """The error outputs a page shows: tracebacks, error blocks, tracebacks printed to stderr."""
    problems = []
    for n in tree.find_all(cls="cell_output"):
        for o in n.find_all("div"):
            cls = set(o.classes)
            if "output" in cls and ("error" in cls or any("traceback" in c for c in cls)):
                problems.append("an error output: " + o.all_text().strip()[:300])
            elif "output" in cls and "stderr" in cls and TRACEBACK.search(o.all_text()):
                problems.append("a traceback on stderr: " + o.all_text().strip()[:300])
        if not problems and (
            '"ename"' in n.all_text() or "Traceback (most recent call last)" in n.all_text()
        ):
            problems.append("a traceback in an output: " + n.all_text().strip()[:300])
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_widget_cells_have_a_static_twin(html_dir, page):
    problems = widget_problems(parse(_page(html_dir, page)))
    assert not problems, f"{page}: " + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_no_page_shows_an_error(html_dir, page):
    problems = error_problems(parse(_page(html_dir, page)))
    assert not problems, f"{page} shows errors:\n" + "\n".join(problems)


def _html(body: str) -> Node:
    p = _Tree()
    p.feed(f"<html><body>{body}</body></html>")
    return p.root


def _cell(tags: str, output: str) -> str:
    return (
        f'<div class="cell {tags} docutils container"><div class="cell_input"><pre>x</pre></div>'
        f'<div class="cell_output docutils container">{output}</div></div>'
    )


def test_the_page_checks_catch_what_they_should():
    widget = _cell("tag_widget", '<script type="application/vnd.jupyter.widget-view+json">{}</script>')
    png = '<img alt="a" src="../_images/a.png" />'
    anim = '<div class="animation"><img id="_anim_img"></div><script>new Animation(frames)</script>'
    assert widget_problems(_html(widget))
    assert widget_problems(_html(widget + _cell("tag_static-twin", "<pre>no picture</pre>")))
    assert not widget_problems(_html(widget + _cell("tag_static-twin tag_hide-input", png)))
    assert not widget_problems(_html(_cell("tag_static-twin", anim) + widget))
    assert not widget_problems(_html(_cell("tag_hide-input", png)))
    tb = '<div class="output traceback highlight-ipythontb notranslate"><pre>ValueError: x</pre></div>'
    err = (
        '<div class="output stderr highlight-myst-ansi notranslate"><pre>Traceback (most recent call last):\n'
        '  File "x"\nKeyError: 1</pre></div>'
    )
    warn = '<div class="output stderr highlight-myst-ansi notranslate"><pre>UserWarning: slow</pre></div>'
    assert error_problems(_html(_cell("", tb))) and error_problems(_html(_cell("", err)))
    assert not error_problems(
        _html(_cell("", warn) + _cell("", '<div class="output text_plain"><pre>ok</pre></div>'))
    )


# ----------------------------------------------------------------------------- Chromium

PROBE = """<script>
window.__ukErrors = [];
window.addEventListener("error", function (e) {
  if (e instanceof ErrorEvent && String(e.filename || "").startsWith("file:")) {
    window.__ukErrors.push(e.message + " (" + e.filename + ":" + e.lineno + ")");
  }
});
window.addEventListener("load", function () { setTimeout(function () {   // animations set their first frame
  var imgs = Array.prototype.slice.call(document.images).filter(function (i) {
    return !/^https?:/.test(i.getAttribute("src") || "");
  });
  var broken = imgs.filter(function (i) {
    return !i.getAttribute("src") || !i.complete
      || (i.naturalWidth === 0 && !/[.]svg/i.test(i.getAttribute("src")));
  }).map(function (i) { return (i.getAttribute("src") || "(no src) #" + i.id).slice(0, 120); });
  var pre = document.createElement("pre");
  pre.id = "uk-probe";
  pre.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: window.__ukErrors});
  document.body.appendChild(pre);
}, 500); });
</script>"""


# Jupyter Book 1 puts sphinx-thebe's inline `const THEBE_JS_URL = ...` into every book page twice; the
# second declaration throws before anything of the book's runs, and the live-code button (thebe,
# loaded on click) re-reads the value from the first, so the page works. Nothing else is tolerated.
KNOWN_JS_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)


def _chromium(*args, timeout=120):
    with tempfile.TemporaryDirectory(prefix="unlearnkit-chromium-") as profile:
        cmd = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # the book is read offline: every host but this machine is unreachable at once
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_chromium_renders_the_page(html_dir, page):
    path = _page(html_dir, page)
    # a copy next to the page (so relative links resolve) that reports image loads and JS errors
    probe = path.with_name(f".probe-{path.name}")
    source = path.read_text(encoding="utf-8")
    probe.write_text(
        re.sub(r"<head([^>]*)>", lambda m: m.group(0) + PROBE, source, count=1), encoding="utf-8"
    )
    try:
        res = _chromium("--virtual-time-budget=15000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    assert res.returncode == 0, f"chromium failed on {page}:\n{res.stderr[-3000:]}"
    m = re.search(r'<pre id="uk-probe"[^>]*>(.*?)</pre>', res.stdout, re.S)
    assert m, f"{page}: the page never finished loading in chromium:\n{res.stderr[-3000:]}"
    import html as _html

    report = json.loads(_html.unescape(m.group(1)))
    assert not report["broken"], f"{page}: chromium could not load these images: {report['broken']}"
    errors = [e for e in report["errors"] if not any(k in e for k in KNOWN_JS_ERRORS)]
    assert not errors, f"{page}: JavaScript errors: {errors}"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / _shot_name(page)
    shot.unlink(missing_ok=True)
    res = _chromium(
        f"--screenshot={shot}", "--window-size=1280,4000", "--virtual-time-budget=5000", path.as_uri()
    )
    assert res.returncode == 0 and shot.is_file() and shot.stat().st_size > 0, (
        f"chromium took no screenshot of {page}:\n{res.stderr[-3000:]}"
    )
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 4000), f"{page}: screenshot is {im.size}"
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 32, f"{page}: the screenshot is blank"
