"""The report page of each command (``--report FILE.html``): which figures, plots, placement and
inputs a simulate, chaos, plan or gate page shows. Plots need matplotlib (the ``plot`` extra);
without it the page says so and keeps everything else."""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from .html import Page, grid
from .plots import figure_svg, gate_figure, hbm_figure, simulate_figure, timeline_figure
from .verdict import run_title, verdict_line, why_failed

RUN_FIGURES = [
    ("slo_attainment", "SLO attainment (windows met)", "%"), ("slo.windows_violated", "SLO windows violated", ""),
    ("slo.windows_total", "SLO windows", ""), ("p99_ttft_ms", "p99 TTFT", "ms"),
    ("p99_tpot_ms", "p99 TPOT", "ms"), ("mean_ttft_ms", "mean TTFT", "ms"),
    ("mean_tpot_ms", "mean TPOT", "ms"), ("p99_e2el_ms", "p99 end-to-end latency", "ms"),
    ("output_throughput_per_chip", "output throughput per chip", "tok/s"),
    ("input_throughput_per_chip", "input throughput per chip", "tok/s"),
    ("output_throughput", "output throughput", "tok/s"), ("requests", "requests offered", ""),
    ("completed", "requests completed", ""), ("failed", "requests failed", ""),
    ("recomputed_requests", "requests recomputed", ""), ("duration", "simulated duration", "s"),
    ("chips", "chips", ""), ("concurrency", "closed-loop concurrency", ""),
]
PLAN_FIGURES = [
    ("predicted.meets_slo", "meets the SLO (predicted)", ""),
    ("predicted.decode.tpot_ms", "predicted TPOT", "ms"), ("predicted.slo.tpot_ms", "TPOT target", "ms"),
    ("predicted.slo.tpot_margin", "TPOT margin", "%"), ("predicted.prefill.ttft_ms", "predicted TTFT", "ms"),
    ("predicted.slo.ttft_ms", "TTFT target", "ms"), ("predicted.slo.ttft_margin", "TTFT margin", "%"),
    ("predicted.decode.output_throughput_per_chip", "decode output per chip", "tok/s"),
    ("predicted.prefill.input_throughput_per_chip", "prefill input per chip (full batch)", "tok/s"),
    ("predicted.rate_rps", "request rate", "req/s"), ("chips", "chips", ""), ("dies", "dies", ""),
    ("nodes_used", "nodes used", ""), ("fits", "fits HBM", ""),
]


def _plots(*makers) -> list[tuple[str, str]]:
    """SVG text of each ``(make_figure, caption)``; none when matplotlib is not installed."""
    if find_spec("matplotlib") is None:
        return []
    return [(figure_svg(make()), caption) for make, caption in makers]


def simulate_page(doc: dict[str, Any], res, plan_doc: dict[str, Any], inputs: dict[str, str],
                  files: dict[str, str]) -> Page:
    """``xds simulate --report``: the run's verdict, figures, the simulate figure, placement."""
    return Page(kind="simulate", title=f"xds simulate: {run_title(doc)}",
                subtitle=f"{doc['model']} on {doc['chips']:,} chips / {doc['dies']:,} dies",
                passed=bool(doc["passed"]), verdict=verdict_line(doc, reasons=False).split(": ", 1)[1],
                reasons=why_failed(doc), doc=doc, figures=RUN_FIGURES,
                plots=_plots((lambda: simulate_figure(doc, res),
                              "TTFT and TPOT per SLO window against their SLO (violated windows "
                              "shaded), throughput per pool, latency distributions and queues.")),
                placement=plan_doc, inputs=inputs, files=files)


def chaos_page(doc: dict[str, Any], plan_doc: dict[str, Any], inputs: dict[str, str],
               files: dict[str, str]) -> Page:
    """``xds chaos --report``: one scenario (one policy or all side by side) or random trials."""
    extra: list[str] = []
    plots: list[tuple[str, str]] = []
    if "policies" in doc and "summary" in doc:          # --policy all
        first = next(iter(doc["policies"].values()))
        rows = [[p, "PASS" if s["passed"] else "FAIL", f"{(s['slo_attainment'] or 0):.1%}",
                 s["p99_ttft_ms"], s["p99_tpot_ms"], s["failed"], s["recomputed"]["requests"]]
                for p, s in doc["summary"].items()]
        extra.append(grid(["policy", "verdict", "SLO attainment", "p99 TTFT ms", "p99 TPOT ms",
                           "failed", "recomputed"], rows, ' id="policies"'))
        verdict = "; ".join(f"{p} {'passes' if s['passed'] else 'fails'}" for p, s in doc["summary"].items())
        reasons = [f"{p}: {r}" for p, d in doc["policies"].items() for r in why_failed(d)]
        title, figures = run_title({**first, "policy": None}), []
        plots = _plots((lambda: timeline_figure(doc), "Each recovery policy over time."))
    elif "timeline" in doc:                              # one scenario, one policy
        verdict, reasons, title = verdict_line(doc, reasons=False).split(": ", 1)[1], why_failed(doc), run_title(doc)
        figures = RUN_FIGURES + [("recomputed.tokens", "tokens recomputed", "")]
        rows = [[r["event"], r["fault"], r.get("target", ""), r["at_s"], r.get("recovered_at_s"),
                 r.get("requests_affected")] for r in doc.get("recovery", [])]
        extra.append(grid(["event", "fault", "target", "at (s)", "recovered at (s)",
                           "requests affected"], rows, ' id="faults"'))
        plots = _plots((lambda: timeline_figure(doc), "TTFT, TPOT and throughput over time; "
                        "faults (solid) and recoveries (dashed) coloured by kind."))
    else:                                                # --random trials
        title = f"{doc['plan']} × random faults ({doc['rate_per_1000_chip_days']:g} per 1,000 chip-days)"
        verdict = (f"{sum(p['trials_passing'] for p in doc['policies'].values())} of "
                   f"{doc['trials'] * len(doc['policies'])} policy-trials pass")
        reasons = list(doc.get("warnings", []))
        figures = [("trials", "trials", ""), ("hours", "hours per trial", "h"),
                   ("expected_faults_per_trial", "expected faults per trial", "")]
        rows = [[p, s["trials_passing"], s["slo_attainment"]["mean"], s["slo_attainment"]["min"],
                 s["failed"]["mean"]] for p, s in doc["policies"].items()]
        extra.append(grid(["policy", "trials passing", "mean attainment", "min attainment",
                           "mean failed"], rows, ' id="policies"'))
    return Page(kind="chaos", title=f"xds chaos: {title}",
                subtitle=f"scenario {inputs['scenario']}" if inputs.get("scenario") else "random faults",
                passed=bool(doc["passed"]), verdict=verdict, reasons=reasons, doc=doc,
                figures=figures, plots=plots, placement=plan_doc, inputs=inputs, files=files,
                extra_tables=extra)


def plan_page(plan_doc: dict[str, Any], inputs: dict[str, str], files: dict[str, str]) -> Page:
    """``xds plan --report``: the predicted verdict, figures, HBM per die plot, placement."""
    pred = plan_doc["predicted"]
    s = pred["slo"]
    verdict = f"predicted TPOT {pred['decode']['tpot_ms']:,.1f} ms against {s['tpot_ms']:g} ms" + (
        f", TTFT {pred['prefill']['ttft_ms']:,.0f} ms against {s['ttft_ms']:g} ms"
        if pred.get("prefill", {}).get("ttft_ms") is not None else "")
    reasons = [] if pred["meets_slo"] else [
        f"{k.upper()} misses its target by {-s[f'{k}_margin']:.1%}" for k in ("tpot", "ttft")
        if s.get(f"{k}_margin") is not None and s[f"{k}_margin"] < 0]
    return Page(kind="plan", title=f"xds plan: {plan_doc['plan']}",
                subtitle=f"{plan_doc['model']} on {plan_doc['hardware']} / {plan_doc['cluster']}",
                passed=bool(pred["meets_slo"]), verdict=verdict, reasons=reasons, doc=plan_doc,
                figures=PLAN_FIGURES, plots=_plots((lambda: hbm_figure(plan_doc),
                                                    "HBM per die of each pool: what fills it.")),
                placement=plan_doc, inputs=inputs, files=files)


def gate_page(doc: dict[str, Any], inputs: dict[str, str], files: dict[str, str]) -> Page:
    """``xds gate --report``: the suite's verdict, each check's thresholds and margins."""
    rows, figures = [], []
    for c in doc["checks"]:
        if c["error"]:
            rows.append([c["name"], "ERROR", "", "", "", c["error"]])
        for k, th in c["thresholds"].items():
            v = c["measured"].get(k)
            lim = " ".join(f"{n} {x:g}" for n, x in th.items() if x is not None)
            met = v is not None and (th.get("max") is None or v <= th["max"]) and \
                (th.get("min") is None or v >= th["min"])
            rows.append([c["name"], "met" if met else "MISSED", k, lim, v,
                         "; ".join(x for x in c["violations"] if x.startswith(f"{k}:") or
                                   x.startswith(f"{k} "))])
    figures.append(("passed", "all checks passed", ""))
    n_fail = len(doc["failed_checks"])
    return Page(kind="gate", title=f"xds gate: {doc['suite']}",
                subtitle=f"{len(doc['checks'])} checks", passed=bool(doc["passed"]),
                verdict=(f"all {len(doc['checks'])} checks passed" if doc["passed"] else
                         f"{n_fail} of {len(doc['checks'])} checks failed"),
                reasons=[f"{c['name']}: {'; '.join(c['violations']) or c['error']}" for c in doc["checks"]
                         if not c["passed"]],
                doc=doc, figures=figures,
                plots=_plots((lambda: gate_figure(doc), "Each threshold's headroom as a fraction "
                              "of its limit: green bars are met, red bars (below 0) fail.")),
                inputs=inputs, files=files,
                extra_tables=[grid(["check", "threshold met", "field", "threshold", "measured", "violation"],
                                   rows, ' id="checks"')])
