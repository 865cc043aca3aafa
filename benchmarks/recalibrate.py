"""Re-fit the shipped efficiency factors from the published targets and rewrite the hardware YAML
in place (run by hand after a cost-model change; tests assert the result is self-consistent).

Usage: python benchmarks/recalibrate.py [ascend-910c]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from xds.cost.calibrate import calibrate

ROOT = Path(__file__).resolve().parent.parent
FITTED = ("compute", "memory", "attention_compute", "scale_up", "comm_latency_us", "comm_log_peers_us",
          "dispatch_quant_us", "step_overhead_ms", "microbatch_overlap", "prefill_compute")


def main(hw: str = "ascend-910c") -> None:
    doc = calibrate(hw, str(ROOT / f"fixtures/calibration/{hw}.csv"), start="defaults")
    eff = doc["efficiency"]
    path = ROOT / f"xds/data/hardware/{hw}.yaml"
    text = path.read_text()
    for k in FITTED:
        text, n = re.subn(rf"^(  {k}: )(\S+)(\s*#.*)?$",
                          lambda m: m.group(1) + str(eff[k]) + (("  " + m.group(3).strip()) if m.group(3) else ""),
                          text, flags=re.M)
        if n != 1:
            raise SystemExit(f"{path}: cannot find efficiency.{k}")
    path.write_text(text)
    print(f"{hw}: MAPE {doc['mape_before_pct']} % -> {doc['mape_after_pct']} %, all within tolerance: "
          f"{doc['all_within_tolerance']}")
    print({k: eff[k] for k in FITTED})


if __name__ == "__main__":
    main(*sys.argv[1:])
