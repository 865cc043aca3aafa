"""xds: capacity planning, simulation and chaos replay for MoE serving on SuperPod hardware.

Data flows one way: spec -> topology / model -> plan -> cost -> engine -> chaos -> report -> cli.
"""

__version__ = "0.1.0"
