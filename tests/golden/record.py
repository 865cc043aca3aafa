"""Record (or check) the golden set: the ``--json`` output of the README's commands, the gate
checks, one chaos run per fault fixture, and ``balance()`` layouts over a spread of shapes.

Run ``python tests/golden/record.py`` to rewrite the files (only in a commit that changes behaviour
on purpose and says so in CHANGELOG under Fixed); ``tests/test_golden.py`` checks them.
Wall-clock fields are dropped; large outputs are kept as a SHA-256 digest of canonical JSON plus
their scalar top-level fields, so a mismatch still says which figure moved."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WALL_CLOCK = {"seconds", "seconds_total", "candidates_per_s", "wall_s", "timing"}
FULL_LIMIT = 40_000          # canonical JSON longer than this is stored as a digest + scalars

FAULTS = ["chip_down", "die_down", "hbm_uce", "l1_down", "link_degraded", "link_down",
          "network_glitch", "node_down", "rdma_glitch_long", "straggler", "switch_down"]

CASES: dict[str, list[str]] = {
    "simulate_pd": ["simulate", "plans/cloudmatrix-infer-pd.yaml"],
    "simulate_h800_synthetic": ["simulate", "plans/deepseek-h800.yaml", "--rate", "30",
                                "--input-len", "2048", "--output-len", "200", "--duration", "60"],
    "simulate_ep288_concurrency": ["simulate", "plans/xdeepserve-ep288.yaml", "--concurrency",
                                   "400", "--requests", "2000", "--input-len", "1024",
                                   "--output-len", "128"],
    "simulate_ma_mooncake": ["simulate", "plans/xdeepserve-ma.yaml", "--trace",
                             "fixtures/traces/mooncake_conversation_trace_head3000.jsonl",
                             "--rate-scale", "4"],
    "chaos_pd_die_all": ["chaos", "plans/cloudmatrix-infer-pd.yaml", "--scenario",
                         "fixtures/faults/die_down.yaml", "--policy", "all", "--duration", "150"],
    "chaos_random": ["chaos", "plans/cloudmatrix-infer-pd.yaml", "--random",
                     "--rate-per-1000-chip-days", "500", "--hours", "0.03", "--trials", "2",
                     "--policy", "fine-grained"],
    "plan_pd": ["plan", "plans/cloudmatrix-infer-pd.yaml"],
    "plan_ma": ["plan", "plans/xdeepserve-ma.yaml"],
    "plan_production": ["plan", "plans/xdeepserve-production.yaml"],
    "plan_h800": ["plan", "plans/deepseek-h800.yaml"],
    "plan_search": ["plan", "--search", "--model", "deepseek-r1", "--input-len", "4096",
                    "--output-len", "256", "--tpot-ms", "50"],
    "estimate_decode": ["estimate", "--chips", "160", "--batch-per-chip", "96", "--mtp", "1",
                        "--shared-expert-dies", "32", "--redundant-experts", "32"],
    "estimate_decode_mb1": ["estimate", "--chips", "160", "--batch-per-chip", "96", "--mtp", "1",
                            "--shared-expert-dies", "32", "--redundant-experts", "32",
                            "--microbatches", "1"],
    "estimate_prefill": ["estimate", "--phase", "prefill", "--chips", "16",
                         "--tokens-per-chip", "16384", "--input-len", "4096"],
    "estimate_h800": ["estimate", "--hardware", "h800", "--chips", "144", "--batch-per-chip", "64"],
    "estimate_qwen": ["estimate", "--model", "qwen3-235b-a22b", "--chips", "32",
                      "--batch-per-chip", "32"],
    "calibrate_910c": ["calibrate", "--hardware", "ascend-910c", "--points",
                       "fixtures/calibration/ascend-910c.csv"],
    "calibrate_h800": ["calibrate", "--hardware", "h800", "--points",
                       "fixtures/calibration/h800.csv"],
    "experts_readme": ["experts", "--loads", "synthetic:58x256:30", "--slots", "288", "--ranks",
                       "32", "--nodes", "4", "--groups", "8"],
    "topo": ["topo"],
    "topo_h800": ["topo", "--cluster", "h800-ib"],
    "topo_fail": ["topo", "--fail", "node:5", "--fail", "l2:3/12"],
    "topo_path": ["topo", "path", "die:0", "die:17"],
    "topo_path_rdma": ["topo", "path", "chip:3", "node:40", "--plane", "rdma"],
    "model_v3": ["model", "deepseek-v3"],
    "model_kimi": ["model", "kimi-k2"],
    "model_minimax": ["model", "minimax-m2"],
    "gate_ci": ["gate", "gates/ci.yaml"],
}
# Faults every policy answers alike (traffic re-routed or slowed, nothing restarted): the three policy
# runs of these were identical but for the policy's name and parameters (checked 2026-12-08), so
# their golden case replays one policy; test_chaos.py compares the policies where they differ.
SAME_UNDER_EVERY_POLICY = {"l1_down", "link_degraded", "link_down", "straggler", "switch_down"}
for _f in FAULTS:
    CASES[f"chaos_{_f}"] = ["chaos", "plans/cloudmatrix-infer-pd.yaml", "--scenario",
                            f"fixtures/faults/{_f}.yaml", "--policy",
                            "fine-grained" if _f in SAME_UNDER_EVERY_POLICY else "all",
                            "--duration", "120", "--rate-scale", "20"]

# balance() shapes: (layers, experts, hot, seed, kind, slots, ranks, nodes, groups)
BALANCE_SHAPES = [
    (58, 256, 30, 0, kind, P, G, N, K)
    for kind in ("zipf", "lognormal")
    for P, G, N, K in [(288, 32, 1, 1), (288, 144, 1, 1), (288, 288, 1, 1), (320, 32, 1, 1),
                       (320, 64, 1, 1), (320, 160, 1, 1), (320, 320, 1, 1), (288, 32, 4, 8),
                       (320, 32, 4, 8), (320, 64, 8, 8), (384, 32, 4, 8), (512, 32, 4, 8),
                       (512, 64, 8, 8), (256, 32, 4, 8), (256, 256, 1, 1)]
] + [
    (8, 64, 10, 1, "zipf", 72, 8, 1, 1), (8, 64, 10, 2, "lognormal", 80, 8, 2, 4),
    (4, 32, 5, 3, "zipf", 48, 16, 4, 4), (4, 32, 20, 4, "zipf", 64, 4, 1, 1),
    (3, 16, 2, 5, "lognormal", 16, 16, 1, 1), (6, 128, 50, 6, "zipf", 160, 20, 4, 8),
    (5, 384, 30, 7, "zipf", 416, 32, 4, 8), (2, 8, 1, 8, "zipf", 12, 4, 2, 2),
]


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in WALL_CLOCK}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def canonical(doc) -> str:
    return json.dumps(_strip(doc), sort_keys=True, separators=(",", ":"))


def compact(doc) -> dict:
    """What is stored for one output: the whole document, or its digest and scalar fields."""
    text = canonical(doc)
    if len(text) <= FULL_LIMIT:
        return {"full": json.loads(text)}
    scalars = {k: v for k, v in _strip(doc).items()
               if isinstance(v, (int, float, str, bool)) or v is None} if isinstance(doc, dict) else {}
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "scalars": scalars}


def run_cli(argv: list[str]) -> tuple[int, dict]:
    from typer.testing import CliRunner

    from xds.cli import app

    res = CliRunner().invoke(app, [*argv, "--json"], catch_exceptions=False)
    return res.exit_code, json.loads(res.stdout)


def balance_case(shape) -> dict:
    from xds.experts import balance, synthetic_loads

    L, E, hot, seed, kind, P, G, N, K = shape
    w = synthetic_loads(L, E, hot_ratio=hot, seed=seed, kind=kind)
    lay = balance(w, P, G, nodes=N, groups=K)
    phy = np.ascontiguousarray(np.asarray(lay.phy2log, dtype=np.int64))
    return {"phy2log_sha256": hashlib.sha256(phy.tobytes()).hexdigest(),
            "balancedness_mean": round(float(np.mean(lay.balancedness)), 12),
            "balancedness_worst": round(float(np.max(lay.balancedness)), 12)}


def balance_key(shape) -> str:
    return "_".join(str(s) for s in shape)


def main() -> None:
    import os
    os.chdir(ROOT)
    only = set(sys.argv[1:])
    for name, argv in CASES.items():
        if only and name not in only:
            continue
        code, doc = run_cli(argv)
        out = {"argv": argv, "exit_code": code, **compact(doc)}
        (HERE / f"{name}.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(name, code, "full" if "full" in out else "digest")
    if not only or "balance" in only:
        table = {balance_key(s): balance_case(s) for s in BALANCE_SHAPES}
        (HERE / "balance.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        print("balance", len(table))


if __name__ == "__main__":
    main()
