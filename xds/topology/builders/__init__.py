"""Topology families: one class per family behind the :class:`Family` interface."""

from .base import Family
from .cloudmatrix import CloudMatrix
from .rail_fat_tree import RailFatTree
from .registry import FAMILIES

__all__ = ["FAMILIES", "CloudMatrix", "Family", "RailFatTree"]
