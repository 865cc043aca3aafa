"""xds: capacity planning, simulation and chaos replay for MoE serving on SuperPod hardware.

Importing xds has no process-wide side effects (the CLI's ``main`` tunes the allocator; see
:mod:`xds.cli.malloc`). The folder map and the data flow are in README.md, "Architecture".
"""

__version__ = "0.1.0"
