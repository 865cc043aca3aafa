"""``xds topo``: summary of a cluster's interconnect, and ``xds topo path SRC DST`` path queries."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from ..topology import build_topology
from .output import console, emit_json

CLUSTER_HELP = "Built-in cluster name (cloudmatrix384, h800-ib) or path to a cluster YAML file."
NODES_HELP = "Resize the cluster to N nodes (as a plan does); default: the spec's node count."


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items()) or "none"
    if isinstance(v, list):
        return " -> ".join(str(x) for x in v) if v else "-"
    return "-" if v is None else str(v)


def _render(title: str, doc: dict) -> None:

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("field")
    table.add_column("value", overflow="fold")
    _rows(table, doc, "")
    console().print(table)


def _rows(table: Table, doc: dict, indent: str) -> None:
    """One row per field; a section (a mapping of mappings or lists, such as ``after_failure``)
    gets a heading row and one indented row per field, not one cell."""
    for key, value in doc.items():
        if isinstance(value, dict) and any(isinstance(x, (dict, list)) for x in value.values()):
            table.add_row(f"{indent}[bold]{key}[/]", "")
            _rows(table, value, indent + "  ")
        else:
            table.add_row(f"{indent}{key}", _fmt(value))


def register(app: typer.Typer) -> None:
    topo = typer.Typer(
        name="topo",
        invoke_without_command=True,
        no_args_is_help=False,
        help="Summary of a cluster's interconnect (counts, switches, per-die bandwidth GB/s, "
        "latency µs); --fail ELEMENT shows what a failure costs; 'xds topo path SRC DST' answers a "
        "path query.\n\n"
        "Example: xds topo --cluster cloudmatrix384 --fail l1:4/0 --json",
    )

    @topo.callback()
    def topo_summary(
        ctx: typer.Context,
        cluster: str = typer.Option("cloudmatrix384", "--cluster", help=CLUSTER_HELP),
        nodes: Optional[int] = typer.Option(None, "--nodes", min=1, help=NODES_HELP),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
        export: Optional[str] = typer.Option(
            None, "--export", help="Also write the graph to FILE (.graphml or node-link .json)."
        ),
        fail: Optional[list[str]] = typer.Option(
            None, "--fail", help="Remove an element (die:N, chip:N, node:N, l1:N/K, l2:K/S, "
            "link:A-B; repeatable) and report what is lost: dies cut off, per-die UB/RDMA bandwidth."
        ),
    ) -> None:
        """Summary of the interconnect.

        Example: xds topo --cluster h800-ib --export h800.graphml
        """
        if ctx.invoked_subcommand is not None:
            return

        t = build_topology(cluster, nodes)
        doc = t.summary()
        if fail:
            doc["after_failure"] = t.degrade([t.parse_target(f, where="--fail") for f in fail]).summary()
        if export:
            t.export(export)
            doc["exported"] = export
        if json_out:
            emit_json(doc)
        else:
            fleet = doc.pop("fleet", None)
            _render(f"xds topo: {doc['cluster']}" + (" (one pod)" if fleet else ""), doc)
            if fleet:
                _render(f"fleet: {fleet['pods']} pods of {doc['cluster']}", fleet)

    @topo.command(
        "path",
        help="Bandwidth (GB/s, max-flow over the plane), latency (µs) and hops between two "
        "elements: die:N, chip:N or node:N (a chip/node is the aggregate of its dies).\n\n"
        "Example: xds topo path die:0 die:17 --plane ub --json",
    )
    def topo_path(
        src: str = typer.Argument(..., metavar="SRC", help="Source element: die:N, chip:N or node:N."),
        dst: str = typer.Argument(..., metavar="DST", help="Destination element: die:N, chip:N or node:N."),
        cluster: str = typer.Option("cloudmatrix384", "--cluster", help=CLUSTER_HELP),
        nodes: Optional[int] = typer.Option(None, "--nodes", min=1, help=NODES_HELP),
        plane: str = typer.Option(
            "ub", "--plane", help="ub (scale-up: UB, or NVLink on h800-ib), rdma (RoCE / InfiniBand), "
            "vpc, or d2d (two dies of one chip)."
        ),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    ) -> None:

        t = build_topology(cluster, nodes)
        doc = t.path(src, dst, plane=plane)
        if json_out:
            emit_json(doc)
        else:
            _render(f"xds topo path: {doc['src']} -> {doc['dst']} ({doc['plane']})", doc)

    app.add_typer(topo, name="topo")
