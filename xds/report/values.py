"""Result documents as plain values: JSON-safe conversion and dotted-field lookup, shared by the
CLI's JSON output, gate thresholds and sweep cells."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain(obj: Any) -> Any:
    """JSON-safe and exact: NumPy scalars/arrays to Python, NaN/inf to None, keys to str."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def field(doc: dict[str, Any], key: str) -> Any:
    """A dotted field of a result document (``slo.windows_violated``), or None when absent."""
    cur: Any = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur
