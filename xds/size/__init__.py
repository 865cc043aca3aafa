"""Capacity sizing (``xds size``): chips, nodes and pods for a load, an SLO and a fault class,
verified by simulation. Modules: :mod:`.load` (workload), :mod:`.compose` (pods), :mod:`.verify`
(simulation and bisection), :mod:`.headroom` (``--survive``), :mod:`.output`, :mod:`.run`."""

from __future__ import annotations

from .run import SURVIVE, size

__all__ = ["SURVIVE", "size"]
