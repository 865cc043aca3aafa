"""Thin Typer CLI: parse flags, call the Python API, render. Every command lives in its own module
(``xds/cli/<command>_cmd.py``) exposing ``register(app)``; the app, its error contract and the
console-script entry point are in :mod:`.app`."""

from .app import app, main

__all__ = ["app", "main"]
