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


from .run import chaos_plan, run_chaos, run_random, simulate_plan
from .workload import WorkloadOptions, build_workload

__all__ = ["WorkloadOptions", "build_workload", "chaos_plan", "run_chaos", "run_random", "simulate_plan"]
