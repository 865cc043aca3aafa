"""xds: capacity planning, simulation and chaos replay for MoE serving on SuperPod hardware.

Data flows one way: spec -> topology / model -> plan -> cost -> engine -> chaos -> report -> cli.

Importing xds keeps freed heap memory in the process (glibc only; ``XDS_MALLOC_TUNING=0`` opts out):
see :mod:`xds.memory` for why.
"""

from .memory import keep_freed_memory

__version__ = "0.1.0"

keep_freed_memory()
