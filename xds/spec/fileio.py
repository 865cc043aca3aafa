"""Atomic output files: write to a temporary sibling, then rename, so a reader (or Ctrl-C) never
sees a partial file."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import XdsError


def check_output_path(path: str | os.PathLike | None, flag: str) -> None:
    """Fail fast (before minutes of simulation) when an output file cannot be written: its folder
    must exist and it must not be a folder itself."""
    if not path:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise XdsError(f"output folder {str(parent)!r} does not exist", file=flag)
    if target.is_dir():
        raise XdsError(f"{str(target)!r} is a folder; give a file name", file=flag)
    if not os.access(parent, os.W_OK):
        raise XdsError(f"output folder {str(parent)!r} is not writable", file=flag)


def check_plot_path(path: str | os.PathLike | None) -> None:
    """``--plot``: the folder exists, the format is one matplotlib writes, and matplotlib (the
    ``plot`` extra) is installed — checked before the run, not after it."""
    if not path:
        return
    check_output_path(path, "--plot")
    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    if suffix not in ("png", "svg", "pdf"):
        raise XdsError(f"unsupported plot format .{suffix} (allowed: .png, .svg, .pdf)", file="--plot")

    if importlib.util.find_spec("matplotlib") is None:
        raise XdsError("plotting needs matplotlib: install the plot extra (pip install '.[plot]' in the "
                       "xds checkout, or pip install matplotlib)", file="--plot")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is
    left untouched.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise XdsError(f"output folder {str(parent)!r} does not exist", file=str(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise XdsError(f"cannot write to {str(parent)!r}: {exc.strerror}", file=str(target)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise XdsError(f"cannot write the file: {exc.strerror}", file=str(target)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def resolve_relative(base: Path, rel: str, what: str, file: str, where: str) -> str:
    """A path named inside ``file`` (a suite or sweep): from ``base`` (that file's folder) first,
    then the current directory; a missing file is an error at ``where``."""
    p = Path(rel)
    if not p.is_absolute():
        cand = base / p
        p = cand if cand.exists() else p
    if not p.exists():
        raise XdsError(f"{what} file {rel!r} not found (looked in {base} and the current directory)",
                       file=file, where=where)
    return str(p)
