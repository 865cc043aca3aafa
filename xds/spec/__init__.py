"""Spec layer: validated, typed input objects (hardware, cluster, model, plan, workload, scenario,
suite) and their I/O (safe YAML, atomic files). Built-in specs are package data under
``xds/data/<kind>/``; a user may pass a file path wherever a built-in name is accepted
(:mod:`.builtins`)."""

from .builtins import DATA_ROOT, builtin_names, resolve

__all__ = ["DATA_ROOT", "builtin_names", "resolve"]
