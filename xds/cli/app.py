"""Thin Typer CLI: parse flags, call the Python API, render. Every command lives in its own module
(``xds/cli/<command>.py``) exposing ``register(app)``; the work itself is a function elsewhere.

Error contract: a user error (:class:`~xds.errors.XdsError` or a bad flag) is one stderr line and exit
code 2; ``--debug`` shows the traceback. Ctrl-C exits 130.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

try:  # recent typer vendors click as typer._click; its exceptions are what commands raise
    from typer._click import exceptions as cx  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - typer with an external click
    from click import exceptions as cx  # type: ignore[no-redef]
from typer.core import TyperGroup

from .. import __version__
from ..errors import XdsError
from . import commands
from .malloc import keep_freed_memory

STATE = {"debug": False}
_NoArgsIsHelp = getattr(cx, "NoArgsIsHelpError", ())
# typer >= 0.16 defines Exit/Abort in typer.exceptions, not in its vendored click
_Exit = getattr(cx, "Exit", typer.Exit)
_Abort = getattr(cx, "Abort", typer.Abort)


def _err_line(text: str) -> None:
    sys.stderr.write("xds: error: " + " ".join(str(text).split()) + "\n")
    sys.stderr.flush()


class XdsGroup(TyperGroup):
    """Top-level click group that renders user errors as one line and maps them to exit codes."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        STATE["debug"] = "--debug" in argv or os.environ.get("XDS_DEBUG") == "1"
        try:
            rv = super().main(args=argv, prog_name=prog_name or "xds", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except XdsError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            _err_line(str(exc))
            sys.exit(2)
        except _NoArgsIsHelp as exc:
            ctx = getattr(exc, "ctx", None)
            sys.stdout.write((ctx.get_help() if ctx else "") + "\n")
            sys.exit(2)
        except cx.UsageError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            cmd = exc.ctx.command_path if exc.ctx is not None else "xds"
            _err_line(f"{cmd}: {exc.format_message()} (see '{cmd} --help')")
            sys.exit(2)
        except _Exit as exc:
            sys.exit(exc.exit_code)
        except (_Abort, KeyboardInterrupt):
            sys.stderr.write("xds: interrupted\n")
            sys.exit(130)
        except cx.ClickException as exc:
            _err_line(exc.format_message())
            sys.exit(2)
        except BrokenPipeError:
            sys.exit(0)
        if isinstance(rv, int):
            sys.exit(rv)
        sys.exit(0)


app = typer.Typer(
    cls=XdsGroup,
    name="xds",
    help="Capacity planning, simulation and chaos replay for MoE serving on SuperPod hardware "
    "(reference: Huawei CloudMatrix384 + xDeepServe).\n\n"
    "Example: xds simulate plans/cloudmatrix-infer-pd.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xds {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """xds: plan, simulate and chaos-test MoE serving on SuperPod hardware."""
    STATE["debug"] = STATE["debug"] or debug


commands.register(app)


def main() -> None:
    """Console-script entry point: tunes the allocator for this process (a CLI run is one process
    that owns its heap; a library user's process is not ours to change), then runs the command."""
    keep_freed_memory()
    typer.main.get_command(app).main(prog_name="xds")
