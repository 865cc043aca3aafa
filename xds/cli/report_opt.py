"""``--report FILE.html`` on simulate, chaos, plan and gate: the option, the inputs that reproduce
the run (the command line, xds version, seed, the input files' text) and writing the page."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from .. import __version__
from ..errors import XdsError
from ..report.html import Page, write_html
from ..spec.fileio import check_output_path

REPORT = typer.Option(None, "--report", help="Also write a self-contained HTML report (verdict, key "
                      "figures, plots, placement, the inputs to reproduce the run) to FILE.html.")


def check_report_path(path: str | None) -> None:
    """Before the run: the report's folder exists and its name ends in .html."""
    if not path:
        return
    if Path(path).suffix.lower() not in (".html", ".htm"):
        raise XdsError(f"the report is HTML: give a FILE.html (got {path!r})", file="--report")
    check_output_path(path, "--report")


def command_line(ctx: typer.Context) -> str:
    """The command that produced this run, rebuilt from the parsed parameters (defaults left out),
    so a reader can run it again."""
    words = ctx.command_path.split()
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if v is None or v is False or v == p.default or p.name in ("report",):
            continue
        if p.param_type_name == "argument":
            words.append(str(v))
        elif v is True:
            words.append(p.opts[0])
        else:
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                words += [p.opts[0], f"{x:g}" if isinstance(x, float) else str(x)]
    return shlex.join(words)


def _read(path: str | None) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8") if path else None
    except OSError:
        return None


def inputs(ctx: typer.Context, *, seed: int | None = None, files: dict[str, str | None] | None = None,
           **more: Any) -> tuple[dict[str, str], dict[str, str]]:
    """``(inputs, file texts)`` of a report: the command line, xds version, seed, the named input
    files (label → path) and ``more`` label → text; each file's text is embedded."""
    rows = {"command": command_line(ctx), "xds version": __version__}
    if seed is not None:
        rows["seed"] = str(seed)
    texts: dict[str, str] = {}
    for label, path in (files or {}).items():
        if path:
            rows[label] = str(path)
            text = _read(path)
            if text is not None:
                texts[f"{label}: {path}"] = text
    rows.update({k: str(v) for k, v in more.items() if v is not None})
    return rows, texts


def write(path: str | None, page: Page) -> None:
    if path:
        write_html(path, page)
