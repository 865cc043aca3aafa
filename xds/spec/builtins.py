"""Built-in specs (package data under ``xds/data/<kind>/``) by name, or a user's file by path."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from ..errors import XdsError

DATA_ROOT = Path(str(resources.files("xds") / "data"))


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in specs of ``kind`` ('hardware', 'clusters', 'models')."""
    folder = DATA_ROOT / kind
    return sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".json"))


def resolve(kind: str, name_or_path: str, *, label: str, flag: str | None = None) -> tuple[Path, bool]:
    """Find a built-in spec by name, or accept a path to a file.

    Returns ``(path, is_builtin)``. An unknown name raises :class:`XdsError` listing the built-ins
    with a "did you mean" hint.
    """
    folder = DATA_ROOT / kind
    for ext in (".yaml", ".json"):
        candidate = folder / f"{name_or_path}{ext}"
        if candidate.is_file():
            return candidate, True
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml", ".json") or "/" in name_or_path or p.exists():
        if not p.exists():
            raise XdsError(f"{label} file not found", file=name_or_path)
        return p, False
    names = builtin_names(kind)
    hint = difflib.get_close_matches(name_or_path, names, n=1, cutoff=0.5)
    msg = f"unknown {label} {name_or_path!r}"
    if hint:
        msg += f"; did you mean {hint[0]!r}?"
    msg += f" (built-in: {', '.join(names)}; or a path to a file)"
    if flag is None and label in ("hardware", "cluster", "model"):
        flag = f"--{label}"
    raise XdsError(msg, file=flag)
