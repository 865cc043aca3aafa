"""Element names: the grammar of failure targets and path endpoints.

Names are ``kind:I`` (``die:17``, ``chip:3``, ``node:5``, ``rack:2``, ``cpu:7``, ``spine:4``,
``vpc:5``), ``kind:A/B`` (``l1:N/K`` node N's L1 chip of sub-plane K, ``l2:K/S``, ``nvsw:N/J``,
``leaf:R/I``), fabrics (``rdma:fabric``, ``vpc:fabric``) and links ``link:A-B`` between two adjacent
elements. A parsed name is a tuple key: ``('die', 17)``, ``('l2', 3, 12)``, ``('rdma:fabric',)``,
``('link', lower_end, upper_end)``. This module holds the vocabulary of every family; which kinds a
cluster has, and their index ranges, come from its family (:mod:`xds.topology.builders`).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import XdsError

# Every kind any family has (die..cpu and vpc are common). A name of a known kind that the
# cluster's family lacks is "not an element of this cluster", anything else "unknown element".
_SIMPLE = re.compile(r"^(die|chip|node|rack|cpu|spine):(\d+)$")
_PAIR = re.compile(r"^(l1|l2|nvsw|leaf):(\d+)/(\d+)$")
_FABRIC = re.compile(r"^(rdma|vpc):fabric$")
_VPC = re.compile(r"^vpc:(\d+)$")

# Tier of an element kind in a link: a canonical link key names the lower tier first (a family adds
# the tiers of its switches). Kinds without a tier (chip, rack) sort last and have no links.
_LINK_TIER = {"die": 0, "cpu": 0, "node": 0, "vpc": 1, "vpc:fabric": 2}


def element_name(key: tuple) -> str:
    """Canonical name of a non-link key: ``('l2', 3, 12)`` -> ``l2:3/12``."""
    if len(key) == 1:
        return key[0]
    if len(key) == 2:
        return f"{key[0]}:{key[1]}"
    return f"{key[0]}:{key[1]}/{key[2]}"


def key_name(key: tuple) -> str:
    """Canonical name of any key, links included (``link:node:5-l2:3/12``)."""
    if key[0] == "link":
        return f"link:{element_name(key[1])}-{element_name(key[2])}"
    return element_name(key)


def ranges(topo: Any) -> str:
    """The valid element names of a cluster, for error messages."""
    common = (f"die:0..{topo.n_dies - 1}, chip:0..{topo.n_chips - 1}, node:0..{topo.n_nodes - 1}, "
              f"rack:0..{topo.n_racks - 1}, cpu:0..{max(topo.n_cpus - 1, 0)}")
    return f"{common}, {topo.family.ranges_text()}"


def bad(topo: Any, text: str, why: str, where: str) -> XdsError:
    """The user error for a bad element name: what is wrong, and every valid range."""
    return XdsError(f"{why} in {text!r} for cluster {topo.name!r}; valid: {ranges(topo)}", where=where)


def _check(topo: Any, value: int, limit: int, what: str, text: str, where: str) -> int:
    if not 0 <= value < limit:
        raise bad(topo, text, f"{what} {value} out of range 0..{limit - 1}", where)
    return value


def _family_limits(topo: Any, kind: str, text: str, where: str) -> tuple:
    """(limit, label) per index of a family-specific kind; raise if the family lacks the kind."""
    limits = topo.family.elements.get(kind)
    if limits is None:
        hint = topo.family.absent_hints.get(kind, "")
        raise bad(topo, text, f"{kind!r} is not an element of this cluster{hint}", where)
    return limits


def _parse_element(topo: Any, text: str, where: str) -> tuple:
    """Parse one non-link element into a tuple key, e.g. ('die', 17) or ('l2', 3, 12)."""
    m = _SIMPLE.match(text)
    if m:
        kind, i = m.group(1), int(m.group(2))
        common = {"die": topo.n_dies, "chip": topo.n_chips, "node": topo.n_nodes,
                  "rack": topo.n_racks, "cpu": topo.n_cpus}
        limit = common[kind] if kind in common else _family_limits(topo, kind, text, where)[0][0]
        return kind, _check(topo, i, limit, f"{kind} index", text, where)
    m = _PAIR.match(text)
    if m:
        kind = m.group(1)
        (la, what_a), (lb, what_b) = _family_limits(topo, kind, text, where)
        return (kind, _check(topo, int(m.group(2)), la, what_a, text, where),
                _check(topo, int(m.group(3)), lb, what_b, text, where))
    m = _FABRIC.match(text)
    if m:
        if m.group(0) != "vpc:fabric":
            _family_limits(topo, m.group(0), text, where)
        return (m.group(0),)
    m = _VPC.match(text)
    if m:
        return ("vpc", _check(topo, int(m.group(1)), topo.n_nodes, "vpc card (node)", text, where))
    raise bad(topo, text, "unknown element", where)


def _link_key(topo: Any, a: tuple, b: tuple, text: str, where: str) -> tuple:
    """Canonical key ('link', lower, upper) of the fabric link between elements a and b."""
    family = topo.family
    tier = {**_LINK_TIER, **family.link_tiers}
    if tier.get(a[0], 9) > tier.get(b[0], 9):
        a, b = b, a
    ka, kb = a[0], b[0]
    ends = None
    if ka == "die" and kb == "die":
        if a[1] != b[1] and topo.die_chip[a[1]] == topo.die_chip[b[1]] and topo.dies_per_chip > 1:
            ends = (a, b) if a[1] < b[1] else (b, a)
    elif ka in ("die", "cpu") and kb == family.switch_kind:
        node = topo.die_node[a[1]] if ka == "die" else a[1] // max(topo.spec.cpus_per_node, 1)
        ends = (a, b) if node == b[1] else None
    elif ka == "die" and kb == "vpc":
        ends = (a, b) if topo.die_node[a[1]] == b[1] else None
    elif ka == "vpc" and kb == "vpc:fabric":
        ends = (a, b)
    else:
        ends = family.link_ends(a, b)
    if ends is None:
        raise bad(topo, text, f"no link between {element_name(a)} and {element_name(b)}", where)
    return ("link", *ends)


def parse_key(topo: Any, text: str, where: str = "target") -> tuple:
    """Parse an element name of cluster ``topo`` (case and surrounding blanks ignored) into its
    tuple key. Bad names raise :class:`XdsError` listing the valid ranges."""
    if not isinstance(text, str) or not text.strip():
        raise bad(topo, str(text), "empty element name", where)
    t = text.strip().lower()
    if t.startswith("link:"):
        parts = t[len("link:"):].split("-")
        if len(parts) != 2 or not all(parts):
            raise bad(topo, text, "a link is written link:A-B", where)
        a = _parse_element(topo, parts[0], where)
        b = _parse_element(topo, parts[1], where)
        return _link_key(topo, a, b, text, where)
    return _parse_element(topo, t, where)
