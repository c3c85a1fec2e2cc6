"""The report of a run: one HTML page, ``WORK_DIR/report/index.html``, that
opens from disk with no server and no network.

For every notebook of the work directory it shows the time and peak memory of
its last run (``metrics/run.json``, written by :mod:`hm_utils.runner.series`), its
key figures (``metrics/<notebook>.json``, as tables), its PNG figures
(``figures/NN_*.png``, copied to ``report/figures/``; a figure belongs to the
notebook whose two-digit number starts its name) and links to the executed
notebook rendered as HTML (``report/<notebook>.html``, by nbconvert) and to the
executed ``.ipynb``.

``python -m hm_utils.runner.report WORK_DIR`` (re)builds it; the runner does so after
every series.
"""
from __future__ import annotations

import html
import json
import math
import shutil
import sys
from datetime import datetime
from pathlib import Path

from hm_utils.core.config import EXECUTED_DIR, FIGURES_DIR, METRICS_DIR, REPORT_DIR, REPORT_INDEX, RUN_RECORD
from hm_utils.core.storage import atomic_path

MAX_LIST_ITEMS = 12               # longer lists of numbers are shortened in the tables

# nbconvert's lab template without the two scripts it would fetch from a CDN
# (require.js, MathJax, Mermaid): the notebooks use none of them, and the page must open offline.
_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; font-weight: 600; } .failed, .interrupted { color: #c62828; font-weight: 600; }
section { border-top: 2px solid #eee; margin-top: 2rem; padding-top: .5rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid #eee; padding: .4rem; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .8rem; color: #555; margin-top: .3rem; }
.error { background: #fff3f3; border-left: 4px solid #c62828; padding: .4rem .8rem; white-space: pre-wrap; }
h4 { margin: .8rem 0 .2rem; } .scroll { overflow-x: auto; max-width: 100%; }
"""


# ------------------------------------------------------------ formatting ---
def format_value(v) -> str:
    """Text of one key figure: ints with thousands separators, floats to four
    significant digits (large ones as whole numbers), lists of scalars joined
    (shortened past :data:`MAX_LIST_ITEMS`), None as an em dash, nested dicts
    as ``key: value; ...``."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        if v != 0 and abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {format_value(x)}" for k, x in v.items()) or "—"
    if isinstance(v, (list, tuple)):
        if len(v) > MAX_LIST_ITEMS:
            head = ", ".join(format_value(x) for x in v[:MAX_LIST_ITEMS])
            return f"{head}, … ({len(v)} items)"
        return ", ".join(format_value(x) for x in v) or "—"
    return str(v)


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def metrics_tables(metrics) -> list[dict]:
    """Key figures as tables: ``[{"title", "columns", "rows"}]``, each row a list
    of strings whose first item is the row label.

    * scalars and lists of scalars: one two-column table (key, value);
    * a dict of dicts (``{"combined": {...}, "image_only": {...}}``): its own
      table, one row per outer key, one column per inner key;
    * dicts of scalars sharing the same keys (``map12``, ``coverage`` and
      ``seconds``, all keyed by ranker): one table, one row per shared key, one
      column per dict;
    * a list of dicts: one row per item;
    * a dict mixing scalars and dicts (``calibration``: counts beside a table of rows): its own
      tables, by the same rules, titled ``key · inner key``.
    Deeper nesting is written out as ``key: value; ...`` in the cell. A table
    wider than it is long is turned on its side (:func:`_upright`).
    """
    if not isinstance(metrics, dict):
        metrics = {"value": metrics}
    scalars, tables, groups = [], [], {}
    for key, v in metrics.items():
        if _is_scalar(v) or (isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v)) or v in ({}, []):
            scalars.append([str(key), format_value(v)])
        elif isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()) and not all(
                isinstance(x, dict) for x in v.values()):  # scalars beside tables: its own tables, titled key · ...
            tables += [{**t, "title": f"{key} · {t['title']}" if t["title"] else str(key)} for t in metrics_tables(v)]
        elif isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()):
            cols = list(dict.fromkeys(k for x in v.values() for k in x))
            tables.append({"title": str(key), "columns": ["", *cols],
                           "rows": [[str(r), *(format_value(x.get(c)) for c in cols)] for r, x in v.items()]})
        elif isinstance(v, dict):
            groups.setdefault(tuple(v), []).append(key)
        elif isinstance(v, (list, tuple)) and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(k for x in v for k in x))
            tables.append({"title": str(key), "columns": ["#", *cols],
                           "rows": [[str(i), *(format_value(x.get(c)) for c in cols)] for i, x in enumerate(v)]})
        else:  # a list mixing dicts and scalars
            scalars.append([str(key), format_value(v)])
    grouped = []
    for inner, keys in groups.items():
        grouped.append({"title": ", ".join(map(str, keys)), "columns": ["", *map(str, keys)],
                        "rows": [[str(r), *(format_value(metrics[k][r]) for k in keys)] for r in inner]})
    out = [{"title": "", "columns": ["key figure", "value"], "rows": scalars}] if scalars else []
    return out + [_upright(t) for t in grouped + tables]


WIDE = 6  # a table with more value columns than this and than rows is turned on its side


def _upright(t: dict) -> dict:
    """The table turned on its side when it is wide and short (more than
    :data:`WIDE` value columns and more columns than rows): a page stays narrow."""
    n_cols, n_rows = len(t["columns"]) - 1, len(t["rows"])
    if n_cols <= max(WIDE, n_rows):
        return t
    rows = [[t["columns"][j + 1], *(r[j + 1] for r in t["rows"])] for j in range(n_cols)]
    title = "" if t["title"] == ", ".join(t["columns"][1:]) else t["title"]  # its keys are the row labels now
    return {"title": title, "columns": [t["columns"][0], *(r[0] for r in t["rows"])], "rows": rows}


# -------------------------------------------------------------- notebooks ---
def _static_widgets(nb) -> None:
    """Replace ipywidgets outputs (tqdm bars) by static HTML of their final state,
    in place, and drop the widget state: offline, a widget shows nothing."""
    state = (nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
             .get("state", {}))

    def model(ref):
        return state.get(str(ref).removeprefix("IPY_MODEL_"), {})

    def text(m) -> str:
        name, s = m.get("model_name", ""), m.get("state", {})
        if name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
            return str(s.get("value", ""))
        if name in ("FloatProgressModel", "IntProgressModel"):
            return f'<progress value="{s.get("value", 0)}" max="{s.get("max", 1)}"></progress>'
        if name in ("HBoxModel", "VBoxModel", "BoxModel"):
            return " ".join(text(model(c)) for c in s.get("children", []))
        return ""

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            view = data.pop("application/vnd.jupyter.widget-view+json", None)
            if view is None:
                continue
            static = text(model(view.get("model_id")))
            if static.strip():
                data["text/html"] = f'<div class="hm-widget">{static}</div>'
            elif "text/plain" not in data:
                data["text/plain"] = ""
    nb.metadata.pop("widgets", None)


def render_notebook(executed: str | Path, out_html: str | Path) -> Path:
    """Render an executed notebook as a standalone HTML page (nbconvert's lab
    template, images inline, no CDN scripts, progress bars as static HTML);
    written atomically. Returns ``out_html``."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter


    nb = nbformat.read(str(executed), as_version=4)
    _static_widgets(nb)
    exporter = HTMLExporter(extra_loaders=[DictLoader({"hm_report.html.j2": _TEMPLATE})],
                            template_file="hm_report.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": Path(executed).stem}})
    with atomic_path(out_html) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return Path(out_html)


def _title(executed: Path) -> str:
    """First markdown heading of a notebook, without the ``#`` (empty if none)."""
    try:
        nb = json.loads(executed.read_text())
    except (OSError, ValueError):
        return ""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
            return ""
    return ""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------- page ---
def _table_html(t: dict) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in t["columns"])
    body = []
    for row in t["rows"]:
        cells = [f"<th>{e(row[0])}</th>"] + [
            f'<td class="num">{e(c)}</td>' if _numeric_text(c) else f"<td>{e(c)}</td>" for c in row[1:]]
        body.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<h4>{e(t['title'])}</h4>" if t["title"] else ""
    return (f'{title}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></div>")


def _numeric_text(s: str) -> bool:
    return bool(s) and s.replace(",", "").replace(".", "", 1).replace("e-", "").replace("e+", "").lstrip("-").isdigit()


def build_report(work_dir: str | Path, render: bool = True) -> Path:
    """Write ``WORK_DIR/report/index.html`` (and the rendered notebooks and the
    figure copies beside it) from what the work directory holds. ``render=False``
    skips nbconvert (the links then point at pages rendered earlier, if any).
    Returns the path of ``index.html``."""

    work_dir = Path(work_dir).resolve()
    if not work_dir.is_dir():
        raise FileNotFoundError(f"work directory {work_dir} does not exist")
    report = work_dir / REPORT_DIR
    fig_out = report / FIGURES_DIR
    fig_out.mkdir(parents=True, exist_ok=True)
    executed_dir, metrics_dir = work_dir / EXECUTED_DIR, work_dir / METRICS_DIR

    runs = {e.get("notebook"): e for e in (_read_json(metrics_dir / RUN_RECORD) or []) if isinstance(e, dict)}
    names = {p.stem for p in executed_dir.glob("[0-9][0-9]_*.ipynb")}
    names |= {p.stem for p in metrics_dir.glob("[0-9][0-9]_*.json")}
    names |= {n for n in runs if isinstance(n, str)}
    notebooks = sorted(names)

    figures = sorted((work_dir / FIGURES_DIR).glob("*.png"))
    kept = set()
    for f in figures:  # copy (only when changed), so report/ can be moved or zipped whole
        dst = fig_out / f.name
        kept.add(f.name)
        if not dst.exists() or dst.stat().st_mtime_ns < f.stat().st_mtime_ns or dst.stat().st_size != f.stat().st_size:
            shutil.copy2(f, dst)
    for stale in fig_out.glob("*.png"):
        if stale.name not in kept:
            stale.unlink()

    def owner(fig: Path) -> str | None:
        prefix = fig.name[:3]
        if not (prefix[:2].isdigit() and prefix.endswith("_")):
            return None
        return next((n for n in notebooks if n.startswith(prefix)), None)

    by_nb: dict[str | None, list[Path]] = {}
    for f in figures:
        by_nb.setdefault(owner(f), []).append(f)

    e = html.escape
    summary_rows, sections = [], []
    total = 0.0
    for name in notebooks:
        run = runs.get(name, {})
        executed = executed_dir / f"{name}.ipynb"
        page = report / f"{name}.html"
        if executed.is_file() and render:
            if not page.exists() or page.stat().st_mtime_ns < executed.stat().st_mtime_ns:
                render_notebook(executed, page)
        title = _title(executed) if executed.is_file() else name
        status = run.get("status", "not recorded")
        seconds, peak = run.get("seconds"), run.get("peak_rss_gb")
        total += seconds or 0.0
        t_txt = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "—"
        m_txt = f"{peak:.2f} GB" if isinstance(peak, (int, float)) else "—"
        figs = by_nb.get(name, [])
        metrics = _read_json(metrics_dir / f"{name}.json")
        link = f'<a href="{e(page.name)}">{e(name)}</a>' if page.exists() else e(name)
        summary_rows.append(
            f'<tr><td><a href="#{e(name)}">{e(name[:2])}</a></td><td>{link}</td>'
            f'<td class="{e(status)}">{e(status)}</td><td class="num">{t_txt}</td><td class="num">{m_txt}</td>'
            f'<td class="num">{len(figs)}</td><td>{"yes" if metrics is not None else "—"}</td></tr>')

        links = []
        if page.exists():
            links.append(f'<a href="{e(page.name)}">rendered notebook</a>')
        if executed.is_file():
            links.append(f'<a href="../{EXECUTED_DIR}/{e(executed.name)}">executed .ipynb</a>')
        if (metrics_dir / f"{name}.json").is_file():
            links.append(f'<a href="../{METRICS_DIR}/{e(name)}.json">key figures (JSON)</a>')
        log = executed_dir / f"{name}.kernel.log"
        if log.is_file():
            links.append(f'<a href="../{EXECUTED_DIR}/{e(log.name)}">kernel log</a>')
        started = run.get("started", "")
        parts = [f'<section id="{e(name)}"><h2>{e(title or name)}</h2>',
                 f'<p class="meta"><span class="{e(status)}">{e(status)}</span> · {t_txt} · peak memory {m_txt}'
                 + (f" · started {e(str(started))}" if started else "") + " · " + " · ".join(links) + "</p>"]
        if run.get("error"):
            parts.append(f'<div class="error">{e(str(run["error"]))}</div>')
        if metrics is not None:
            parts.append("<h3>Key figures</h3>" + "".join(_table_html(t) for t in metrics_tables(metrics)))
        if figs:
            parts.append("<h3>Figures</h3>" + _figures_html(figs))
        parts.append("</section>")
        sections.append("".join(parts))

    if by_nb.get(None):
        sections.append('<section id="other-figures"><h2>Other figures</h2>' + _figures_html(by_nb[None])
                        + "</section>")

    profiles = sorted({str(r.get("profile")) for r in runs.values() if r.get("profile")})
    meta = (f"work directory <code>{e(str(work_dir))}</code> · built {datetime.now():%Y-%m-%d %H:%M}"
            + (f" · profile {e(', '.join(profiles))}" if profiles else "")
            + (f" · notebooks ran for {total:.0f} s in all" if runs else ""))
    page_html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hm-embeddings · run report</title>
<style>{_CSS}</style></head>
<body>
<h1>hm-embeddings · run report</h1>
<p class="meta">{meta}</p>
<table class="summary"><thead><tr><th>#</th><th>notebook</th><th>status</th><th>time</th><th>peak memory</th>
<th>figures</th><th>key figures</th></tr></thead><tbody>
{''.join(summary_rows)}
</tbody></table>
<p class="meta">Time and peak memory are those of each notebook's kernel in its last run
(<a href="../{METRICS_DIR}/{RUN_RECORD}">run.json</a>; memory: largest sum of RSS over the kernel's process tree,
GB of 10<sup>9</sup> bytes).</p>
{''.join(sections)}
</body></html>
"""
    index = report / REPORT_INDEX
    with atomic_path(index) as tmp:
        tmp.write_text(page_html, encoding="utf-8")
    return index


def _figures_html(figs: list[Path]) -> str:
    e = html.escape
    items = "".join(
        f'<figure><a href="{FIGURES_DIR}/{e(f.name)}"><img src="{FIGURES_DIR}/{e(f.name)}" alt="{e(f.stem)}" '
        f'></a><figcaption>{e(f.stem)}</figcaption></figure>' for f in figs)
    return f'<div class="figures">{items}</div>'


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m hm_utils.runner.report WORK_DIR", file=sys.stderr)
        return 2
    try:
        index = build_report(argv[0])
    except FileNotFoundError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
