"""The topology families by the ``builder:`` name a cluster spec selects them with. A new family is
one module in this folder plus one entry here (and its spec rules in :mod:`xds.spec.cluster`)."""

from __future__ import annotations

from .base import Family
from .cloudmatrix import CloudMatrix
from .rail_fat_tree import RailFatTree

FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (CloudMatrix, RailFatTree)}
