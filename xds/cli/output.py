"""Rendering helpers shared by commands: JSON on stdout, rich tables, atomic ``--out`` files."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

from ..report.values import plain
from ..spec.fileio import write_text_atomic


def to_json(doc: Any) -> str:
    """Serialise a result document: sorted keys are NOT used (field order is part of the view),
    NaN/inf become null, output ends with a newline."""
    return json.dumps(plain(doc), indent=2, allow_nan=False) + "\n"


def emit_json(doc: Any, out: str | None = None) -> None:
    """Print ``doc`` as the single JSON document on stdout (and write it to ``out`` atomically)."""
    text = to_json(doc)
    if out:
        write_text_atomic(out, text)
    sys.stdout.write(text)
    sys.stdout.flush()


def write_out(doc: Any, out: str | None) -> None:
    """Write ``doc`` as JSON to ``out`` atomically (no stdout)."""
    if out:
        write_text_atomic(out, to_json(doc))


def _color_system() -> str | None:
    # rich's own NO_COLOR handling drops colours but keeps bold/italic escapes; NO_COLOR means none
    return None if os.environ.get("NO_COLOR") else "auto"


def _width() -> int | None:
    # rich assumes 80 columns when stdout is not a terminal, which wraps or cuts the wide tables
    # (gate, chaos); a pipe or file has no width, so give them room unless COLUMNS says otherwise
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return None
    return 160


def console() -> Console:
    """A stdout console: no styling when NO_COLOR is set or stdout is not a terminal."""
    return Console(highlight=False, soft_wrap=False, color_system=_color_system(), width=_width())


def err_console() -> Console:
    return Console(stderr=True, highlight=False, color_system=_color_system())
