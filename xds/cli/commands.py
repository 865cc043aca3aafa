"""Registers every subcommand module on the app, in the order ``xds --help`` lists them."""

from __future__ import annotations

import typer

from . import (
    calibrate_cmd,
    chaos_cmd,
    estimate_cmd,
    experts_cmd,
    gate_cmd,
    model_cmd,
    plan_cmd,
    simulate_cmd,
    size_cmd,
    sweep_cmd,
    topo_cmd,
    validate_cmd,
)

MODULES = [topo_cmd, model_cmd, estimate_cmd, calibrate_cmd, validate_cmd, experts_cmd, plan_cmd,
           simulate_cmd, chaos_cmd, gate_cmd, sweep_cmd, size_cmd]


def register(app: typer.Typer) -> None:
    for mod in MODULES:
        mod.register(app)
