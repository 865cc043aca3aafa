"""A self-contained HTML report (``--report FILE.html``): verdict first, the key figures, the plots
(inline SVG), the plan's placement and the inputs that produced the run, then the whole JSON
document. The page is :data:`PAGE` (``templates/report.html``, package data) filled with
:class:`string.Template`; the pieces below fill small templates too. No network, no scripts.

Each key figure cell carries ``data-key`` (the JSON field, dotted) and ``data-value`` (its JSON
value), so a reader's tools, and the tests, can check the page against the JSON."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from importlib.resources import files
from string import Template
from typing import Any

from .. import __version__
from ..spec.fileio import write_text_atomic
from .tables import pool_nodes
from .values import field as lookup
from .values import plain

PAGE = Template(files("xds.report").joinpath("templates", "report.html").read_text(encoding="utf-8"))
ROW = Template('<tr><th>$label</th><td class="num$cls" data-key="$key" data-value="$value">'
               '$shown</td></tr>')
TABLE = Template('<table$attrs>\n<tr>$head</tr>\n$rows\n</table>')
PLOT = Template('<figure class="plot">\n$svg\n<figcaption>$caption</figcaption>\n</figure>')
OPTIONAL = {"concurrency"}      # figures left out when null (an open-loop run has no concurrency)
FILE = Template('<details><summary>$name</summary>\n<pre>$text</pre>\n</details>')


@dataclass
class Page:
    """What a report page says: ``kind`` (simulate, chaos, plan, gate), the verdict, figure rows
    ``(key, label, unit)`` looked up in ``doc``, SVG plots with captions, the placement (a
    ``xds plan --json`` document), the inputs (label → text) and input files (name → text)."""

    kind: str
    title: str
    subtitle: str
    passed: bool
    verdict: str
    reasons: list[str]
    doc: dict[str, Any]
    figures: list[tuple[str, str, str]]
    plots: list[tuple[str, str]] = field(default_factory=list)
    placement: dict[str, Any] | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    extra_tables: list[str] = field(default_factory=list)


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def shown(v: Any, unit: str = "") -> str:
    """A value as a reader sees it: thousands separators, 2 decimals at most, the unit."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        text = f"{v:,.1%}" if unit == "%" else f"{v:,.2f}".rstrip("0").rstrip(".")
    elif isinstance(v, int):
        text = f"{v:,}"
    else:
        text = str(v)
    return text + (f" {unit}" if unit and unit != "%" else "")


def figure_rows(doc: dict[str, Any], figures: list[tuple[str, str, str]]) -> str:
    """The key figures table: one row per ``(key, label, unit)`` present in ``doc``."""
    rows = []
    for key, label, unit in figures:
        v = lookup(doc, key)
        if v is None and (key not in doc or key in OPTIONAL):
            continue
        rows.append(ROW.substitute(label=esc(label), key=esc(key), value=esc(json.dumps(plain(v))),
                                   shown=esc(shown(v, unit)), cls=""))
    return TABLE.substitute(attrs=' id="figures"', head="<th>figure</th><th>value</th>",
                            rows="\n".join(rows))


def _cell(v: Any) -> str:
    """A table cell's text: floats to 3 significant decimals at most, None as a dash."""
    return shown(round(v, 3)) if isinstance(v, float) else shown(v)


def grid(head: list[str], rows: list[list[Any]], attrs: str = "") -> str:
    """A plain table: a header row and rows of cells (escaped)."""
    return TABLE.substitute(attrs=attrs, head="".join(f"<th>{esc(h)}</th>" for h in head),
                            rows="\n".join("<tr>" + "".join(f"<td>{esc(_cell(c))}</td>" for c in r) + "</tr>"
                                           for r in rows))


def placement_table(plan_doc: dict[str, Any] | None) -> str:
    """Each pool of a ``xds plan --json`` document: instances, chips, layout, the nodes it sits on,
    HBM per die and the batch cap."""
    if not plan_doc:
        return "<p>No placement (this run has no single plan).</p>"
    rows = []
    for p in plan_doc["pools"]:
        lay = p["instances"][0]["layout"]
        cap = (f"{p['batch_cap_per_rank']} requests / DP rank" if p["role"] == "decode"
               else f"{p['token_budget_per_die']:,} tokens / die")
        rows.append([p["role"], f"{len(p['instances'])} x {p['chips'] // len(p['instances'])} chips",
                     "DP{dp} TP{tp} EP{ep}".format(**lay), pool_nodes(p),
                     f"{p['hbm_gb_per_die']['total']:.1f} / {p['hbm_gb_per_die']['free']:.1f}", cap])
    head = (f"<p>{esc(plan_doc['model'])} on {esc(plan_doc['hardware'])} / {esc(plan_doc['cluster'])}: "
            f"{plan_doc['nodes_used']} of {plan_doc['cluster_nodes']} nodes, {plan_doc['chips']:,} chips, "
            f"{plan_doc['dies']:,} dies.</p>\n")
    return head + grid(["pool", "instances", "layout", "on nodes (instance)", "HBM used / free per die (GB)",
                        "batch cap"], rows, ' id="placement"')


def render(page: Page) -> str:
    """The page as HTML text."""
    reasons = ("<ul>" + "".join(f"<li>{esc(r)}</li>" for r in page.reasons) + "</ul>"
               if page.reasons else "")
    plots = "\n".join(PLOT.substitute(svg=svg, caption=esc(cap)) for svg, cap in page.plots) \
        or "<p>No plots for this run (install the plot extra: pip install 'xds[plot]').</p>"
    inputs = grid(["input", "value"], [[k, v] for k, v in page.inputs.items()], ' id="inputs"')
    inputs += "\n" + "\n".join(FILE.substitute(name=esc(n), text=esc(t)) for n, t in page.files.items())
    return PAGE.substitute(
        title=esc(page.title), subtitle=esc(page.subtitle), version=esc(__version__),
        verdict_class="pass" if page.passed else "fail", verdict_word="PASS" if page.passed else "FAIL",
        verdict_text=esc(page.verdict), reasons=reasons,
        figures=figure_rows(page.doc, page.figures) + '\n<div class="after-figures">\n'
        + "\n".join(page.extra_tables) + '\n</div>\n<div style="clear: both"></div>',
        plots=plots, placement=placement_table(page.placement), inputs=inputs,
        document=esc(json.dumps(plain(page.doc), indent=2, allow_nan=False)))


def write_html(path: str, page: Page) -> None:
    """Write :func:`render` of ``page`` to ``path`` atomically."""
    write_text_atomic(path, render(page))
