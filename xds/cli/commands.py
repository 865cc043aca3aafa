"""Registers every subcommand module on the app, in the order ``xds --help`` lists them."""

from __future__ import annotations

import importlib
import importlib.util

import typer

MODULES = ["topo", "model", "estimate", "calibrate", "experts", "plan", "simulate", "chaos", "gate"]


def register(app: typer.Typer) -> None:
    for name in MODULES:
        mod = f"xds.cli.{name}_cmd"
        if importlib.util.find_spec(mod) is None:  # command not shipped in this build
            continue
        importlib.import_module(mod).register(app)
