"""The sweep's table as CSV (columns: the axes, then the collected fields, then ``error``) and a plot
of one collected field against one axis (one line per combination of the other axes)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ..errors import XdsError
from ..spec.fileio import atomic_path


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def csv_text(doc: dict[str, Any]) -> str:
    """One CSV row per cell, in cell order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    axes, fields = list(doc["axes"]), list(doc["collect"])
    w.writerow(["cell", *axes, *fields, "error"])
    for row in doc["rows"]:
        res = row["result"] or {}
        w.writerow([row["cell"], *(_cell_text(row["axes"][a]) for a in axes),
                    *(_cell_text(res.get(f)) for f in fields), _cell_text(row["error"])])
    return buf.getvalue()


def check_plot_args(axes: list[str], fields: list[str], x: str | None, y: str | None) -> tuple[str, str]:
    """``--x`` names an axis and ``--y`` a collected field (defaults: the first of each)."""
    x = x or axes[0]
    y = y or fields[0]
    if x not in axes:
        raise XdsError(f"{x!r} is not an axis of this sweep (axes: {', '.join(axes)})", file="--x")
    if y not in fields:
        raise XdsError(f"{y!r} is not a collected field (collect: {', '.join(fields)})", file="--y")
    return x, y


def _series(doc: dict[str, Any], x: str, y: str) -> dict[str, list[tuple[Any, Any]]]:
    """Points (x, y) per combination of the other axes, in cell order; failed cells are left out."""
    others = [a for a in doc["axes"] if a != x]
    lines: dict[str, list[tuple[Any, Any]]] = {}
    for row in doc["rows"]:
        label = ", ".join(f"{a}={row['axes'][a]}" for a in others) or y
        pts = lines.setdefault(label, [])
        v = (row["result"] or {}).get(y)
        if row["error"] is None and isinstance(v, (int, float)):
            pts.append((row["axes"][x], float(v)))
    return lines


def write_plot(doc: dict[str, Any], path: str, x: str, y: str) -> None:
    """Draw collected field ``y`` against axis ``x`` (needs matplotlib: the ``plot`` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc["axes"][x])
    ticks = [str(v) for v in doc["axes"][x]]
    for label, pts in _series(doc, x, y).items():
        if not pts:
            continue
        xs = [p[0] if numeric else ticks.index(str(p[0])) for p in pts]
        ax.plot(xs, [p[1] for p in pts], marker="o", label=label)
    if not numeric:
        ax.set_xticks(range(len(ticks)), ticks)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"sweep {doc['name']}: {y} vs {x}")
    if len(doc["axes"]) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    suffix = path.rsplit(".", 1)[-1].lower()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix)
    plt.close(fig)
