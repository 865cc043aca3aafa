"""Failure domains: which dies an element holds, and which die / chip / node / rack contains it."""

from __future__ import annotations

from typing import Any

from .names import key_name


def die_range(topo: Any, key: tuple) -> tuple[int, int] | None:
    """Global die ids ``[lo, hi)`` inside a die / chip / node / rack key; None for other kinds.
    A communication rack (switches only) gives an empty range."""
    kind = key[0]
    if kind == "die":
        return key[1], key[1] + 1
    if kind == "chip":
        return key[1] * topo.dies_per_chip, (key[1] + 1) * topo.dies_per_chip
    if kind == "node":
        return key[1] * topo.dies_per_node, (key[1] + 1) * topo.dies_per_node
    if kind == "rack":
        per = topo.spec.nodes_per_rack * topo.dies_per_node
        lo = min(key[1] * per, topo.n_dies)
        return lo, min((key[1] + 1) * per, topo.n_dies)
    return None


def domain(topo: Any, key: tuple) -> dict:
    """Containing domains of an element key: ``{die, chip, node, rack}`` as applicable, the family's
    switch coordinates (``sub_plane`` / ``switch`` / ``rail``) and ``ends`` for links."""
    kind = key[0]
    npr = topo.spec.nodes_per_rack
    out: dict[str, Any] = {"element": key_name(key), "kind": kind}
    if kind == "die":
        d = key[1]
        out.update(die=d, chip=int(topo.die_chip[d]), node=int(topo.die_node[d]),
                   rack=int(topo.die_rack[d]))
    elif kind == "chip":
        n = key[1] // topo.chips_per_node
        out.update(chip=key[1], node=n, rack=n // npr)
    elif kind in ("node", "vpc"):
        out.update(node=key[1], rack=key[1] // npr)
    elif kind == "cpu":
        n = key[1] // topo.spec.cpus_per_node
        out.update(node=n, rack=n // npr)
    elif kind == "rack":
        out.update(rack=key[1], compute=key[1] < topo.n_compute_racks)
    elif kind == topo.family.switch_kind:
        out.update(node=key[1], rack=key[1] // npr)
        out[topo.family.switch_index] = key[2]
    elif kind == "link":
        out.update(ends=[domain(topo, key[1]), domain(topo, key[2])])
    else:
        out.update(topo.family.domain(key))
    return out
