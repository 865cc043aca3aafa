"""A fleet: ``pods`` identical pods of one cluster type, joined by the scale-out plane.

The per-pod tables are the pod's :class:`~xds.topology.Topology` (built once, whatever the pod
count); fleet figures are closed-form from them, so a 100-pod fleet costs what one pod costs.
Element names address a pod's elements (``die:N`` ...) inside any pod; a pod is the failure domain
``pod:K`` (0 ≤ K < pods). Bandwidths GB/s per direction, latencies µs.
"""

from __future__ import annotations

from typing import Any

from ..errors import XdsError


def fleet_summary(topo: Any) -> dict[str, Any]:
    """Counts over the fleet and the planes between pods: a pod's UB domain (dies), its scale-out
    injection bandwidth (per die, chip, node and pod), the fleet's scale-out bisection (half the pods
    sending to the other half on a non-blocking fabric) and the inter-pod latency."""
    spec = topo.spec
    pods = int(spec.pods)
    rdma_die = float(topo.derived.scale_out[0])
    per_pod = rdma_die * topo.n_dies
    return {"pods": pods, "pod_nodes": topo.n_nodes, "pod_chips": topo.n_chips, "pod_dies": topo.n_dies,
            "nodes": topo.n_nodes * pods, "chips": topo.n_chips * pods, "dies": topo.n_dies * pods,
            "ub_domain_dies": topo.n_dies, "inter_pod_plane": spec.scale_out.plane,
            "inter_pod_gb_s_per_die": rdma_die, "inter_pod_gb_s_per_chip": rdma_die * topo.dies_per_chip,
            "inter_pod_gb_s_per_node": rdma_die * topo.dies_per_node, "inter_pod_gb_s_per_pod": per_pod,
            "scale_out_bisection_gb_s": per_pod * (pods // 2),
            "inter_pod_latency_us": spec.scale_out.latency_us,
            "vpc_gb_s_per_pod": spec.vpc.gb_s_per_node * topo.n_nodes}


def parse_pod(topo: Any, text: str, *, where: str = "target") -> int:
    """The pod index of ``pod:K`` (a fleet's pod failure domain)."""
    kind, _, num = text.strip().partition(":")
    pods = int(topo.spec.pods)
    if kind != "pod" or not num.isdigit() or not int(num) < pods:
        raise XdsError(f"expected pod:K with 0 <= K < {pods} (got {text!r})", where=where)
    return int(num)
