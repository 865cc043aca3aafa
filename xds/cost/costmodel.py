"""The cost model: the time of one prefill or decode iteration, and the HBM it needs, from first
principles — the operators of :mod:`.operators` composed into a decode step (:mod:`.decode`), a
prefill batch (:mod:`.prefill`) and the HBM budget (:mod:`.memory`).

The efficiency factors are the hardware spec's (``HardwareSpec.efficiency``), one set per chip,
fitted by ``xds calibrate`` to published measurements. All step-time methods broadcast over NumPy
arrays: the engine prices every iteration's per-rank state and the planner thousands of layouts in
one call.

Units: times in µs inside, ms at the interface (``*_ms``); bytes; GB/s = 1e9 bytes/s.
"""

from __future__ import annotations

from .decode import decode_step_us
from .memory import hbm_gb, max_batch_per_die
from .operators import Operators
from .prefill import prefill_batch_us


class CostModel(Operators):
    """Prices iterations of one instance layout of ``model`` on ``hw``.

    Construct once per layout; call :meth:`decode_step_us` / :meth:`prefill_batch_us` as often as
    needed (vectorised). ``fabric`` is the per-die all-to-all bandwidth from the topology.
    """

    def decode_step_us(self, batch, ctx_sum, *, detail: bool = False):
        """Time of one decode iteration (µs); see :func:`.decode.decode_step_us`."""
        return decode_step_us(self, batch, ctx_sum, detail=detail)

    def prefill_batch_us(self, new_tokens, attn_pairs, seqs, *, detail: bool = False):
        """Time (µs) for one die to prefill a batch; see :func:`.prefill.prefill_batch_us`."""
        return prefill_batch_us(self, new_tokens, attn_pairs, seqs, detail=detail)

    def hbm_gb(self, batch_per_die: float, context: float, *, phase: str = "decode",
               prefill_tokens: float = 0.0) -> dict[str, float]:
        """HBM use per die (GB) by what fills it; see :func:`.memory.hbm_gb`."""
        return hbm_gb(self, batch_per_die, context, phase=phase, prefill_tokens=prefill_tokens)

    def max_batch_per_die(self, context: float) -> int:
        """Largest decode batch per die that fits HBM (0 if none)."""
        return max_batch_per_die(self, context)
