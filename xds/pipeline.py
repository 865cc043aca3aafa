"""The pipeline every evaluation follows: load a plan → build its workload → place it → simulate or
replay faults → report. ``xds simulate``, ``xds chaos`` and ``xds gate`` (and a user's own Python)
call these functions, so each step is written once.

Workload options are the CLI's workload flags as keywords (``trace``, ``fmt``, ``rate_scale``,
``duration``, ``requests``, ``rate``, ``arrival``, ``cv``, ``input_len``, ``output_len``,
``input_dist``, ``output_dist``); they override the plan's ``workload:`` block the way the flags do,
and errors name the flag (``--rate-scale``), since that is what a CLI user typed. A gate check's
``workload:`` block is passed whole as ``workload=`` and replaces the plan's block.

Example::

    from xds.pipeline import simulate_plan
    doc, result = simulate_plan("plans/cloudmatrix-infer-pd.yaml", rate=40, input_len=4096,
                                output_len=256, duration=120)
    print(doc["p99_tpot_ms"], doc["output_throughput_per_chip"])
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np
import yaml

from .chaos import POLICIES, Scenario, compile_events, load_scenario, random_scenario, recovery_params
from .cost.bands import add_intervals
from .engine import SimResult, simulate
from .errors import XdsError
from .parallel import Executor
from .plan import place
from .report import (
    build_report,
    chaos_report,
    policies_report,
    random_report,
    requests_csv,
    trial_outcome,
    trials_stats,
    write_plot,
    write_timeline_plot,
)
from .spec.fileio import check_output_path, check_plot_path, write_text_atomic
from .spec.plan import LoadedPlan, load_plan
from .spec.workload import WorkloadSpec
from .spec.yamlio import validate
from .workload import Workload, load_workload, plan_workload
from .workload.source import describe_source

_DIST_EXAMPLE = "{dist: lognormal, mean: 1000, sigma: 1}"


@dataclass(frozen=True)
class WorkloadOptions:
    """The workload flags of ``xds simulate`` / ``xds chaos``; ``None`` means "not given".

    Lengths are tokens, ``rate`` req/s, ``duration`` s; ``input_dist``/``output_dist`` are YAML
    mappings like ``{dist: lognormal, mean: 1000, sigma: 1}``."""

    trace: str | None = None
    fmt: str = "auto"
    rate_scale: float | None = None
    duration: float | None = None
    requests: int | None = None
    rate: float | None = None
    arrival: str | None = None
    cv: float | None = None
    input_len: int | None = None
    output_len: int | None = None
    input_dist: str | None = None
    output_dist: str | None = None

    @classmethod
    def of(cls, options: dict[str, Any]) -> "WorkloadOptions":
        """Options from keywords; an unknown keyword is a usage error naming it."""
        known = {f.name for f in fields(cls)}
        if "format" in options:        # the flag's and the spec's name for ``fmt``
            options = {("fmt" if k == "format" else k): v for k, v in options.items()}
        for key in options:
            if key not in known:
                raise XdsError(f"unknown workload option {key!r} (allowed: {', '.join(sorted(known))})",
                               file=key)
        return cls(**options)

    @property
    def synthetic(self) -> bool:
        """True when any synthetic-workload flag is given (they replace a plan's trace)."""
        return any(v is not None for v in (self.rate, self.input_len, self.output_len,
                                           self.input_dist, self.output_dist))

    def check(self) -> None:
        """Each numeric flag is finite and > 0 (counts whole); the fixed/distribution pairs exclude
        each other."""
        for v, flag, whole in ((self.rate_scale, "--rate-scale", False),
                               (self.duration, "--duration", False), (self.requests, "--requests", True),
                               (self.rate, "--rate", False), (self.cv, "--cv", False),
                               (self.input_len, "--input-len", True),
                               (self.output_len, "--output-len", True)):
            if v is None:
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) or (whole and int(v) != v):
                raise XdsError(f"must be a {'whole number' if whole else 'finite number'} > 0 (got {v})",
                               file=flag)
        if self.input_len is not None and self.input_dist is not None:
            raise XdsError("give --input-len or --input-dist, not both", file="--input-dist")
        if self.output_len is not None and self.output_dist is not None:
            raise XdsError("give --output-len or --output-dist, not both", file="--output-dist")
        if self.trace is None and self.fmt != "auto":
            raise XdsError("--format applies to --trace", file="--format")


def _dist(text: str | dict[str, Any], flag: str) -> dict[str, Any]:
    """A length distribution flag's YAML mapping (Python callers may pass the mapping itself)."""
    if isinstance(text, dict):
        return dict(text)
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise XdsError(f"not a mapping like '{_DIST_EXAMPLE}' ({exc.__class__.__name__})",
                       file=flag) from None
    if not isinstance(d, dict):
        raise XdsError(f"expected a mapping like '{_DIST_EXAMPLE}'", file=flag)
    return d


def _block_from_options(loaded: LoadedPlan, o: WorkloadOptions) -> dict[str, Any]:
    """The workload block the flags describe, on top of the plan's own block where they keep it."""
    data: dict[str, Any] = {}
    plan_w = loaded.spec.workload
    if o.trace is None and plan_w is not None:
        data = plan_w.model_dump(exclude_unset=True)
        if o.synthetic and "trace" in data:
            data = {}          # synthetic flags replace a plan trace entirely
    if o.trace is not None:
        data = {"trace": o.trace}
        if o.fmt != "auto":
            data["format"] = o.fmt
    overrides = {"rate_scale": o.rate_scale, "duration_s": o.duration, "requests": o.requests,
                 "rate_rps": o.rate}
    if o.trace is None:
        overrides["input"] = ({"dist": "fixed", "value": int(o.input_len)} if o.input_len is not None
                              else _dist(o.input_dist, "--input-dist") if o.input_dist is not None
                              else None)
        overrides["output"] = ({"dist": "fixed", "value": int(o.output_len)} if o.output_len is not None
                               else _dist(o.output_dist, "--output-dist") if o.output_dist is not None
                               else None)
    overrides.update(arrival=o.arrival, cv=o.cv)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return data


#: The flag a CLI user typed for each workload field (errors name the flag, not the field).
_FLAG_OF = {"trace": "--trace", "format": "--format", "rate_scale": "--rate-scale",
            "duration_s": "--duration", "requests": "--requests", "rate_rps": "--rate",
            "arrival": "--arrival", "cv": "--cv"}


def _flags_spec(data: dict[str, Any], o: WorkloadOptions) -> WorkloadSpec:
    """Validate the block the flags built; an error names the flag that set the bad field."""
    try:
        return validate(WorkloadSpec, data, file="workload flags")
    except XdsError as exc:
        field, _, inner = (exc.where or "").partition(".")
        flag = _FLAG_OF.get(field)
        if field in ("input", "output"):
            flag = f"--{field}-dist" if getattr(o, f"{field}_dist") is not None else f"--{field}-len"
        if flag is None:
            raise
        raise XdsError(exc.message, file=flag, where=inner or None) from None


def _as_flag_error(exc: XdsError) -> XdsError:
    """An error the workload builder located at a field the flags set (``duration_s``), renamed to
    the flags the user typed (``--duration``), fields named in the message too."""
    flag = _FLAG_OF.get(exc.where or "")
    if flag is None or exc.file not in (None, "workload flags"):
        return exc
    msg = exc.message
    for field, f in _FLAG_OF.items():
        if "_" in field:     # field names that are not also plain words
            msg = re.sub(rf"\b{field}\b", f, msg)
    return XdsError(msg, file=flag)


def build_workload(loaded: LoadedPlan, *, workload: dict[str, Any] | None = None, seed: int = 0,
                   **options: Any) -> Workload:
    """The workload a run uses: ``workload`` (a whole block, as in a gate check) if given, else the
    plan's block with the option keywords applied (see the module docstring)."""
    o = WorkloadOptions.of(options)
    if workload is not None:
        if o != WorkloadOptions():
            raise XdsError("give a workload block or workload options, not both", file="workload")
        return load_workload(validate(WorkloadSpec, workload, file="workload"), base_dir=None,
                             seed=seed)
    o.check()
    data = _block_from_options(loaded, o)
    if not data:
        raise XdsError("the plan has no workload: block; give --trace FILE or synthetic flags "
                       "(--rate R --input-len I --output-len O --requests N)", file=loaded.path)
    if o.trace is not None or o.synthetic:
        try:
            return load_workload(_flags_spec(data, o), base_dir=None, seed=seed)
        except XdsError as exc:
            raise _as_flag_error(exc) from None
    # the plan's own block, maybe rescaled or cut by flags: paths and errors stay the plan file's
    return plan_workload(loaded, seed, spec=validate(WorkloadSpec, data, file=loaded.path))


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise XdsError(f"must be >= 0 (got {seed})", file="--seed")


def _loaded(plan: str | LoadedPlan) -> LoadedPlan:
    return plan if isinstance(plan, LoadedPlan) else load_plan(plan)


def _flags_given(options: dict[str, Any]) -> list[str]:
    """The workload flags among ``options`` that were given, in the flags' fixed order (``--format``
    only when not auto): the same run from Python or the CLI says the same."""
    flags = []
    for f in fields(WorkloadOptions):
        v = options.get(f.name, options.get("format") if f.name == "fmt" else None)
        if v is None or (f.name == "fmt" and v == "auto"):
            continue
        flags.append("--format" if f.name == "fmt" else "--" + f.name.replace("_", "-"))
    return flags


def _closed_loop_requests(loaded: LoadedPlan, w: Workload, seed: int, options: dict[str, Any],
                          notes: list[str]) -> Workload:
    """Closed loop with ``--requests M`` runs M requests: arrival times are ignored, so a plan's
    ``duration_s`` must not cut the set short. Lengthen the workload (a trace loops) until it holds
    M requests, and say so in ``notes``."""
    want = options.get("requests")
    if not want or options.get("duration") is not None or len(w) >= want:
        return w
    first = len(w)
    for _ in range(8):
        if len(w) >= want:
            break
        grow = max(w.span_s, 1.0) * (want / max(len(w), 1)) * 1.25 + 1.0
        w = build_workload(loaded, seed=seed, **{**options, "duration": grow})
    notes.append(f"closed loop: the workload's duration ({first:,} requests) was lengthened to run the "
                 f"{len(w):,} requests --requests asked for (arrival times do not matter here)")
    return w


def simulate_plan(plan: str | LoadedPlan, *, workload: dict[str, Any] | None = None, seed: int = 0,
                  concurrency: int | None = None, progress: Callable | None = None,
                  timing: bool = False, timeline: bool = True, requests_out: str | None = None,
                  plot: str | None = None, **options: Any) -> tuple[dict[str, Any], SimResult]:
    """``xds simulate`` as a function: ``(document, result)``.

    ``concurrency`` N runs closed loop (N requests in flight, arrival times ignored);
    ``progress(sim_t_s, done, total)`` is called as the run advances; ``timing`` adds wall-clock
    fields; ``requests_out`` (CSV) and ``plot`` (png/svg) are written atomically."""
    _check_seed(seed)
    check_output_path(requests_out, "--requests-out")
    check_plot_path(plot)
    if concurrency is not None and concurrency < 1:
        raise XdsError(f"must be a whole number >= 1 (got {concurrency})", file="--concurrency")
    loaded = _loaded(plan)
    flags = _flags_given(options)
    if concurrency is not None and options.get("trace") is None and options.get("rate") is None and (
            options.get("input_len") or options.get("input_dist")):
        # closed loop ignores arrival times; a synthetic workload still needs a rate to be built
        options["rate"] = float(concurrency)
    w = build_workload(loaded, workload=workload, seed=seed, **options)
    notes: list[str] = []
    if concurrency is not None and workload is None:
        w = _closed_loop_requests(loaded, w, seed, options, notes)
    placed = place(loaded)
    t0 = time.perf_counter()
    res = simulate(placed, w, seed=seed, concurrency=concurrency, progress=progress)
    wall = time.perf_counter() - t0
    doc = build_report(res, placed, workload=w, wall_seconds=wall if timing else None,
                       timeline=timeline)
    _model_bands(doc, placed)
    plan_block = loaded.spec.workload.model_dump(exclude_unset=True) if loaded.spec.workload else None
    doc["workload_source"] = {**describe_source(plan_block, flags, check_block=workload is not None),
                              "mode": "closed loop" if concurrency is not None else "open loop",
                              "notes": notes}
    if requests_out:
        write_text_atomic(requests_out, requests_csv(res))
    if plot:
        write_plot(res, plot, doc if timeline else build_report(res, placed, workload=w))
    return doc, res


def _model_bands(doc: dict[str, Any], placed: Any) -> None:
    """Add the cost model's 90 % bands (xds.cost.bands) next to the simulated TPOT, TTFT and
    throughput: the uncertainty of the model that priced every iteration, NOT sampling noise."""
    dec = (doc.get("pools") or {}).get("decode") or {}
    batch = dec.get("mean_batch_per_rank")          # the batch the run actually decoded at
    batch = float(placed.decode.batch_cap_per_rank) if batch is None else float(batch)
    add_intervals(doc, placed.hw, "decode", batch,
                  ("mean_tpot_ms", "p99_tpot_ms", "output_throughput_per_chip"))
    if placed.prefill is not None:
        add_intervals(doc, placed.hw, "prefill", None,
                      ("mean_ttft_ms", "p99_ttft_ms", "input_throughput_per_chip"))
    if any(k.endswith("_interval") for k in doc):
        doc["interval_note"] = ("90 % band of the cost model (xds validate leave-one-out residuals), "
                                "not sampling noise")


def chaos_plan(plan: str | LoadedPlan, *, scenario: str | None = None, policy: str | None = None,
               random: bool = False, rate_per_1000_chip_days: float | None = None,
               hours: float | None = None, trials: int = 10, workload: dict[str, Any] | None = None,
               seed: int = 0, plot: str | None = None, workers: int | None = None,
               ray: str | None = None, progress: Callable[[int, int], None] | None = None,
               **options: Any) -> dict[str, Any]:
    """``xds chaos`` as a function: the result document of one scenario (``scenario`` file) or of
    ``trials`` random fault timelines (``random``: ``rate_per_1000_chip_days`` over ``hours`` h),
    run on ``workers`` local processes (default all cores) or a Ray cluster (``ray``)."""
    _check_seed(seed)
    executor = Executor(workers=workers, ray=ray)
    if policy is not None and policy != "all" and policy not in POLICIES:
        raise XdsError(f"unknown policy {policy!r} (allowed: {', '.join(POLICIES)}, all)", file="--policy")
    check_plot_path(plot)
    if random:
        if scenario:
            raise XdsError("give --scenario FILE or --random, not both", file="--random")
        if rate_per_1000_chip_days is None or hours is None:
            raise XdsError("--random needs --rate-per-1000-chip-days R and --hours H", file="--random")
        if not (math.isfinite(hours) and hours > 0):
            raise XdsError(f"must be a finite number > 0 (got {hours})", file="--hours")
        if not (math.isfinite(rate_per_1000_chip_days) and rate_per_1000_chip_days > 0):
            raise XdsError(f"must be > 0 (got {rate_per_1000_chip_days})", file="--rate-per-1000-chip-days")
        if not 1 <= trials <= 10_000:
            raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
        if plot:
            raise XdsError("--plot draws one scenario's timeline; it does not apply to --random",
                           file="--plot")
    elif not scenario:
        raise XdsError("give --scenario FILE (or --random with rates)", file="--scenario")
    loaded = _loaded(plan)
    if random and options.get("duration") is None and workload is None:
        options["duration"] = hours * 3600.0
    w = build_workload(loaded, workload=workload, seed=seed, **options)
    placed = place(loaded)
    if random:
        return run_random(placed, w, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                          trials=trials, policy=policy, seed=seed, progress=progress,
                          executor=executor)
    doc = run_chaos(placed, w, load_scenario(scenario), policy=policy, seed=seed)
    if plot:
        write_timeline_plot(doc, plot)
    return doc


def run_chaos(placed, workload, scenario: Scenario, *, policy: str | None = None, seed: int = 0,
              progress=None) -> dict[str, Any]:
    """Replay ``scenario`` on ``placed`` with ``workload`` under one policy (or ``"all"``).

    Returns the ``xds chaos --json`` document: the simulate fields plus ``requests_total``,
    ``recomputed``, ``failed`` with reasons, ``recovery``, ``timeline``, ``slo`` and ``passed``; with
    ``policy="all"``, ``{"policies": {name: that}}`` plus a side-by-side ``summary``.
    """
    if policy == "all":
        docs = {p: run_chaos(placed, workload, scenario, policy=p, seed=seed, progress=progress)
                for p in POLICIES}
        return policies_report(placed, scenario, docs)
    params = recovery_params(placed.spec.recovery, scenario.spec.recovery, policy)
    events, records = compile_events(placed, scenario, params)
    res = simulate(placed, workload, seed=seed, events=events, progress=progress)
    return chaos_report(res, placed, workload, scenario, params, records)


def _trial(cell: tuple) -> dict[str, Any]:
    """One random-chaos trial (a cell for the executor): its SLO attainment and failures."""
    placed, workload, scenario, policy, seed = cell
    return trial_outcome(run_chaos(placed, workload, scenario, policy=policy, seed=seed))


def run_random(placed, workload, *, rate_per_1000_chip_days: float, hours: float, trials: int,
               policy: str | None = None, seed: int = 0, executor: Executor | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Monte Carlo over ``trials`` random fault timelines of ``hours`` at ``rate_per_1000_chip_days``:
    distribution of SLO attainment and failed requests (one policy, or every policy with ``"all"``).
    Timelines are drawn here from ``seed``; the trials run on ``executor`` (default: in this
    process), so the result is the same on every backend."""
    if trials < 1 or trials > 10_000:
        raise XdsError(f"must be 1..10000 (got {trials})", file="--trials")
    pols = POLICIES if policy == "all" else (policy or placed.spec.recovery.policy,)
    rng = np.random.default_rng(seed)
    scenarios = [random_scenario(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                                 rng=rng) for _ in range(trials)]
    cells = [(placed, workload, sc, pol, seed) for pol in pols for sc in scenarios if sc.spec.events]
    runs = sorted((executor or Executor(workers=1)).map(_trial, cells, progress=progress),
                  key=lambda o: o.index)
    bad = next((o.error for o in runs if o.error is not None), None)
    if bad is not None:
        raise XdsError(bad)
    quiet: dict[str, Any] | None = None      # a trial with no fault: one fault-free run serves all
    if any(not sc.spec.events for sc in scenarios):
        doc = build_report(simulate(placed, workload, seed=seed), placed, workload=workload,
                           timeline=False)
        doc["recomputed"] = {"requests": doc["recomputed_requests"]}
        quiet = trial_outcome(doc)
    done = iter(o.value for o in runs)
    stats = {pol: trials_stats([next(done) if sc.spec.events else quiet for sc in scenarios],
                               placed.spec.slo.attainment, hours) for pol in pols}
    return random_report(placed, rate_per_1000_chip_days=rate_per_1000_chip_days, hours=hours,
                         trials=trials, seed=seed, faults_per_trial=[len(s.spec.events) for s in scenarios],
                         stats=stats)
