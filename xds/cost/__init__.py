"""Cost: what one prefill or decode iteration of a layout costs (µs) and the HBM it needs (GB),
from per-operator rooflines; ``xds estimate`` and ``xds calibrate`` as functions.

- :mod:`.layout` — :class:`Layout`, :class:`Fabric`, message sizes, layout checks
- :mod:`.fabric` — the topology → :class:`Fabric` adapter (``fabric_for``, ``fabric_on``, ``default_cluster``)
- :mod:`.operators` — a model step's operators, each priced by its roofline
- :mod:`.decode`, :mod:`.prefill`, :mod:`.memory` — a decode step, a prefill batch, the HBM budget
- :mod:`.costmodel` — :class:`CostModel`, which prices them for one layout
- :mod:`.estimate` — ``xds estimate`` (``EstimateArgs``, ``prepare``, ``price``, ``estimate``)
- :mod:`.calibrate` — ``xds calibrate`` (fit the efficiency factors to measured points)
"""

from .costmodel import CostModel
from .fabric import default_cluster, fabric_for, fabric_on
from .layout import (
           KV_DTYPES,
           WEIGHT_BYTES,
           Fabric,
           Layout,
           check_layout,
           combine_bytes_per_copy,
           dispatch_bytes_per_copy,
)

__all__ = ["CostModel", "Fabric", "Layout", "KV_DTYPES", "WEIGHT_BYTES", "check_layout",
           "combine_bytes_per_copy", "default_cluster", "dispatch_bytes_per_copy", "fabric_for",
           "fabric_on"]
