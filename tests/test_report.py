"""The run report: key-figure tables, links that resolve, figures per notebook,
offline rendering of executed notebooks, and (marker ``browser``) the page as a
real headless browser shows it."""
from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from hm_utils.runner.report import build_report, format_value, metrics_tables

RED, MAGENTA = (255, 0, 0), (255, 0, 255)  # colours the page itself does not use


def test_format_value():
    assert format_value(1234567) == "1,234,567"
    assert format_value(0.15049395049395048) == "0.1505"
    assert format_value(19.49) == "19.49"
    assert format_value(31788324.0) == "31,788,324"
    assert format_value(8.344650268554688e-06) == "8.345e-06"
    assert format_value(None) == "—"
    assert format_value(True) == "true"
    assert format_value([96, 64]) == "96, 64"
    assert format_value(list(range(15))) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, … (15 items)"
    assert format_value({"pop": 1.0, "rep": 4}) == "pop: 1; rep: 4"


def test_metrics_tables_group_dicts_by_their_keys():
    metrics = {
        "profile": "tiny", "n_articles": 300, "image_size": [96, 64],
        "map12": {"popularity": 0.0896, "repurchase": 0.16475885},
        "coverage": {"popularity": 0.0, "repurchase": 0.42307},
        "precision": {"combined": "float32", "image_only": "float32"},
        "models": {"combined": {"epochs": 2, "trained_accuracy": 0.71666},
                   "image_only": {"epochs": 2, "loss": "triplet"}},
        "runs": [{"week": "2020-09-16", "map12": 0.1}, {"week": "2020-09-09", "map12": 0.2}],
    }
    tables = metrics_tables(metrics)
    assert tables[0] == {"title": "", "columns": ["key figure", "value"],
                         "rows": [["profile", "tiny"], ["n_articles", "300"], ["image_size", "96, 64"]]}
    assert tables[1] == {"title": "map12, coverage", "columns": ["", "map12", "coverage"],
                         "rows": [["popularity", "0.0896", "0"], ["repurchase", "0.1648", "0.4231"]]}
    assert tables[2] == {"title": "precision", "columns": ["", "precision"],
                         "rows": [["combined", "float32"], ["image_only", "float32"]]}
    assert tables[3] == {"title": "models", "columns": ["", "epochs", "trained_accuracy", "loss"],
                         "rows": [["combined", "2", "0.7167", "—"], ["image_only", "2", "—", "triplet"]]}
    assert tables[4] == {"title": "runs", "columns": ["#", "week", "map12"],
                         "rows": [["0", "2020-09-16", "0.1"], ["1", "2020-09-09", "0.2"]]}
    assert len(tables) == 5


def test_wide_short_tables_are_turned_on_their_side():
    metrics = {f"m{i}": {"combined": i, "image_only": 10 * i} for i in range(7)}  # 7 columns, 2 rows
    (table,) = metrics_tables(metrics)
    assert table["title"] == "" and table["columns"] == ["", "combined", "image_only"]
    assert table["rows"] == [[f"m{i}", f"{i}", f"{10 * i}"] for i in range(7)]
    narrow = {f"m{i}": {"a": i, "b": i, "c": i} for i in range(3)}  # 3 columns: kept as it is
    assert metrics_tables(narrow)[0]["columns"] == ["", "m0", "m1", "m2"]


def _png(path: Path, colour, size=(120, 80)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _widget_notebook(title: str, text: str) -> nbformat.NotebookNode:
    """A small executed notebook: a title, a stream output and a finished tqdm widget."""
    bar = new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "hbox1", "version_major": 2, "version_minor": 0},
        "text/plain": "work:   0%|          | 0/3"})
    code = new_code_cell("print('x')", outputs=[new_output("stream", name="stdout", text=text), bar],
                         execution_count=1)
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}\n\nGoal: test."), code],
                      metadata={"kernelspec": {"name": "python3", "display_name": "py", "language": "python"}})
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0,
        "state": {
            "hbox1": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_h1", "IPY_MODEL_p1", "IPY_MODEL_h2"]}},
            "h1": {"model_name": "HTMLModel", "state": {"value": "work: 100%"}},
            "p1": {"model_name": "FloatProgressModel", "state": {"value": 3.0, "max": 3.0}},
            "h2": {"model_name": "HTMLModel", "state": {"value": " 3/3 [00:01&lt;00:00]"}},
        }}}
    return nb


@pytest.fixture()
def work(tmp_path) -> Path:
    """A hand-made work directory: two notebooks (one failed), their key figures,
    three figures (one belongs to no notebook) and the run record."""
    w = tmp_path / "work"
    (w / "executed").mkdir(parents=True)
    nbformat.write(_widget_notebook("01 · Alpha", "hello report\n"), w / "executed" / "01_alpha.ipynb")
    nbformat.write(_widget_notebook("02 · Beta", "beta output\n"), w / "executed" / "02_beta.ipynb")
    (w / "executed" / "02_beta.kernel.log").write_text("a kernel line\n")
    (w / "metrics").mkdir()
    (w / "metrics" / "01_alpha.json").write_text(json.dumps(
        {"n_articles": 1234, "map12": {"a": 0.123456, "b": 0.5}, "coverage": {"a": 1.0, "b": 0.25}}))
    (w / "metrics" / "run.json").write_text(json.dumps([
        {"notebook": "01_alpha", "seconds": 5.3, "peak_rss_gb": 0.4213, "status": "ok", "profile": "tiny",
         "started": "2026-01-01T10:00:00+00:00"},
        {"notebook": "02_beta", "seconds": 1.25, "peak_rss_gb": 0.06, "status": "failed", "profile": "tiny",
         "error": "notebook 02_beta failed in code cell 1: KeyError: 'zz'"},
    ]))
    _png(w / "figures" / "01_alpha_plot.png", RED)
    _png(w / "figures" / "02_beta_hist.png", MAGENTA, size=(90, 60))
    _png(w / "figures" / "zz_orphan.png", (0, 160, 0), size=(50, 50))
    return w


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.imgs, self.ids, self.order = [], [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
            self.order.append(("id", a["id"]))
        if tag == "a" and "href" in a:
            self.refs.append(a["href"])
        if tag == "img":
            self.imgs.append(a["src"])
            self.order.append(("img", a["src"]))


def test_report_links_resolve_and_figures_sit_with_their_notebook(work):
    index = build_report(work)
    assert index == work / "report" / "index.html"
    page = index.read_text()
    parser = _Links()
    parser.feed(page)
    for ref in parser.refs + parser.imgs:
        assert not ref.startswith(("http:", "https:", "/")), ref  # opens from disk, no server
        if ref.startswith("#"):
            assert ref[1:] in parser.ids, ref
        else:
            assert (index.parent / ref).resolve().is_file(), ref
    assert sorted(parser.imgs) == ["figures/01_alpha_plot.png", "figures/02_beta_hist.png", "figures/zz_orphan.png"]
    order = parser.order
    pos = {v: i for i, (_, v) in enumerate(order)}
    assert pos["01_alpha"] < pos["figures/01_alpha_plot.png"] < pos["02_beta"] < pos["figures/02_beta_hist.png"]
    assert pos["other-figures"] < pos["figures/zz_orphan.png"]
    for ref in ("01_alpha.html", "02_beta.html", "../executed/01_alpha.ipynb", "../metrics/01_alpha.json",
                "../executed/02_beta.kernel.log", "../metrics/run.json"):
        assert ref in parser.refs, ref
    # time, peak memory, status, error and key figures from the run record and metrics
    assert "5.3 s" in page and "0.42 GB" in page and "1.2 s" in page
    assert 'class="failed">failed' in page and "KeyError: &#x27;zz&#x27;" in page
    assert "<th>a</th><td class=\"num\">0.1235</td><td class=\"num\">1</td>" in page
    assert "<th>n_articles</th><td class=\"num\">1,234</td>" in page
    assert "<h2>01 · Alpha</h2>" in page

    rendered = (work / "report" / "01_alpha.html").read_text()
    assert "hello report" in rendered
    assert 'work: 100% <progress max="3.0" value="3.0"></progress>  3/3 [00:01&lt;00:00]' in rendered
    assert "<script src=\"http" not in rendered and "unpkg.com" not in rendered  # nothing fetched from a CDN
    assert (work / "report" / "figures" / "01_alpha_plot.png").read_bytes() == \
        (work / "figures" / "01_alpha_plot.png").read_bytes()


def test_report_drops_stale_figure_copies_and_cli(work, tmp_path):
    build_report(work, render=False)
    (work / "figures" / "02_beta_hist.png").unlink()
    out = subprocess.run([sys.executable, "-m", "hm_utils.runner.report", str(work)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"report: {work / 'report' / 'index.html'}"
    assert not (work / "report" / "figures" / "02_beta_hist.png").exists()
    assert "02_beta_hist" not in (work / "report" / "index.html").read_text()
    bad = subprocess.run([sys.executable, "-m", "hm_utils.runner.report", str(tmp_path / "nope")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars"]

# appended to a copy of the page: after load, every image's state goes into the DOM
_IMG_PROBE = """<script>
window.addEventListener('load', () => {
  const s = Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]);
  document.body.setAttribute('data-img-check', JSON.stringify(s));
});
</script>"""


@pytest.mark.browser
def test_report_page_renders_in_headless_chromium(work, tmp_path):
    """The page loads in a real browser with no server, every <img> decodes at its
    file's size, and the figures are visible in a screenshot (their colours)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium/Chrome installed (apt-get install chromium; .ci/run tries it)")
    index = build_report(work)
    probe = index.parent / "probe.html"
    probe.write_text(index.read_text().replace("</body>", _IMG_PROBE + "</body>"))
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('data-img-check="') + len('data-img-check="')
    check = json.loads(html.unescape(dom.stdout[start:dom.stdout.index('"', start)]))
    assert sorted(check) == [["figures/01_alpha_plot.png", True, 120, 80], ["figures/02_beta_hist.png", True, 90, 60],
                             ["figures/zz_orphan.png", True, 50, 50]]

    shot = tmp_path / "shot.png"
    run = subprocess.run([browser, *CHROMIUM_FLAGS, "--virtual-time-budget=5000", "--window-size=1280,2200",
                          f"--screenshot={shot}", index.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    near = lambda ref: int((np.abs(px - np.array(ref)).max(axis=2) <= 30).sum())  # noqa: E731 - colour management
    n_red, n_magenta = near(RED), near(MAGENTA)
    assert n_red >= 0.9 * 120 * 80, n_red      # the figures are drawn at their size
    assert n_magenta >= 0.9 * 90 * 60, n_magenta
    n_dark = int((px.max(axis=2) < 80).sum())
    assert n_dark > 2000, n_dark               # and so is the text (not a blank page)


def test_a_dict_of_counts_beside_a_table_gets_its_own_tables():
    """notebook 01's ``calibration``: counts and a list beside a dict of row dicts. The rows become one
    table (a row per statistic), the counts a key/value table, both titled under ``calibration``."""
    from hm_utils.runner.report import metrics_tables

    metrics = {"profile": "demo", "calibration": {
        "n_pass": 2, "failed": ["top12"],
        "rows": {"age_median": {"real": 32.0, "value": 33.0, "pass": True},
                 "top12": {"real": 0.028, "value": 0.064, "pass": False}}}}
    tables = metrics_tables(metrics)
    assert [t["title"] for t in tables] == ["", "calibration", "calibration · rows"]
    assert tables[0]["rows"] == [["profile", "demo"]]
    assert [r[0] for r in tables[1]["rows"]] == ["n_pass", "failed"]
    rows = tables[2]
    assert rows["columns"] == ["", "real", "value", "pass"]
    assert [r[0] for r in rows["rows"]] == ["age_median", "top12"]
