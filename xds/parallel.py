"""One executor for every many-run job (sweep cells, random chaos trials, gate checks): map a pure,
module-level function over independent cells and yield the outcomes as they finish.

Backends:
- in-process (``workers=1``): what tests use for exactness; no pickling.
- a local process pool (``workers=N``, default all cores).
- Ray (``ray="auto"`` joins a running cluster, ``ray="local"`` starts a private local instance,
  ``ray="HOST:PORT"`` a given one). Ray is the optional ``ray`` extra, imported only here and only
  when asked for. A task whose worker process dies is retried by Ray (``max_retries``).

Outcomes are keyed by the cell's index, never by the worker, so callers that order by index get
the same bytes on every backend and worker count. A cell that raises :class:`XdsError` (bad input
in that cell) or any other exception is recorded with its error instead of stopping the others;
Ctrl-C stops the whole map.

Cheap cells are sent in batches (``batch``): one task runs several cells, so a 200-cell estimate
sweep pays the per-task overhead ~``workers × 4`` times, not 200 times.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .errors import XdsError

#: Ray retries a task this many times when its worker process dies.
RAY_MAX_RETRIES = 3


@dataclass(frozen=True)
class Outcome:
    """What one cell gave: its ``value``, or ``error`` (one line) when it raised."""

    index: int
    value: Any = None
    error: str | None = None


def _run_one(fn: Callable[[Any], Any], index: int, cell: Any) -> Outcome:
    try:
        return Outcome(index, value=fn(cell))
    except XdsError as exc:
        return Outcome(index, error=str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one broken cell must not abort the others
        return Outcome(index, error=f"internal error: {type(exc).__name__}: {exc}")


def run_batch(fn: Callable[[Any], Any], batch: list[tuple[int, Any]]) -> list[Outcome]:
    """Run ``fn`` on each ``(index, cell)`` of a batch (in a worker)."""
    return [_run_one(fn, i, cell) for i, cell in batch]


@dataclass(frozen=True)
class Executor:
    """Where the cells run: ``workers`` processes on this machine (``1``: in this process;
    ``None``: all cores), or a Ray cluster (``ray``: ``auto``, ``local`` or an address)."""

    workers: int | None = None
    ray: str | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise XdsError(f"must be a whole number >= 1 (got {self.workers})", file="--workers")
        if self.ray is not None and self.workers is not None:
            raise XdsError("give --workers N or --ray, not both", file="--ray")
        if self.ray is not None and not str(self.ray).strip():
            raise XdsError("expected auto, local or a cluster address HOST:PORT", file="--ray")
        if self.ray is not None:
            _import_ray()              # a missing extra is a one-line error before any work

    @property
    def label(self) -> str:
        """A short description for progress lines and summaries."""
        if self.ray is not None:
            return f"ray ({self.ray})"
        n = self.workers or os.cpu_count() or 1
        return "in-process" if n == 1 else f"{n} local processes"

    def map(self, fn: Callable[[Any], Any], cells: Sequence[Any], *, batch: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> Iterator[Outcome]:
        """Yield one :class:`Outcome` per cell, in the order they finish. ``fn`` must be a
        module-level function (it is pickled to the workers); ``progress(done, total)`` is called
        after each finished cell."""
        items = list(enumerate(cells))
        if not items:
            return
        if self.ray is not None:
            outcomes = _ray_map(self.ray, fn, items, batch)
        else:
            n = min(self.workers or os.cpu_count() or 1, len(items))
            outcomes = (_local_map(fn, items) if n == 1
                        else _pool_map(n, fn, items, batch))
        done = 0
        for out in outcomes:
            done += 1
            if progress is not None:
                progress(done, len(items))
            yield out


def _batches(items: list[tuple[int, Any]], parallel: int, batch: int | None) -> list[list]:
    """Split the cells into batches: ``batch`` cells each, or ~4 batches per worker."""
    size = batch or max(1, math.ceil(len(items) / (parallel * 4)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _local_map(fn, items) -> Iterator[Outcome]:
    for i, cell in items:
        yield _run_one(fn, i, cell)


def _pool_map(n: int, fn, items, batch: int | None) -> Iterator[Outcome]:
    with ProcessPoolExecutor(max_workers=n) as ex:
        pending = {ex.submit(run_batch, fn, b) for b in _batches(items, n, batch)}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield from fut.result()
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _import_ray():
    try:
        import ray
    except ImportError:
        raise XdsError("Ray is not installed: install the ray extra (pip install 'xds[ray]', or "
                       "pip install '.[ray]' in the xds checkout)", file="--ray") from None
    return ray


def _ray_map(address: str, fn, items, batch: int | None) -> Iterator[Outcome]:
    """Run the batches as Ray tasks. A task whose worker process dies is re-run by Ray
    (``RAY_MAX_RETRIES``); a batch that still cannot finish becomes one error per cell, so the
    other cells are kept. A Ray instance this map started is shut down when it ends."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        _ray_init(ray, address)
    try:
        parallel = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(run_batch)
        fn_ref = ray.put(fn)
        batches = {}
        for b in _batches(items, parallel, batch):
            batches[remote.remote(fn_ref, b)] = b
        pending = list(batches)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                yield from _ray_result(ray, ref, batches[ref])
    finally:
        if started:
            ray.shutdown()


def _ray_result(ray, ref, batch: list[tuple[int, Any]]) -> list[Outcome]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        msg = f"ray: {type(exc).__name__}: {first[:200]}"
        return [Outcome(i, error=msg) for i, _ in batch]


def _local_cpus() -> int:
    """CPUs of a private ``--ray local`` instance: all cores, or ``XDS_RAY_NUM_CPUS`` (CI sets 2)."""
    text = os.environ.get("XDS_RAY_NUM_CPUS", "").strip()
    if not text:
        return os.cpu_count() or 1
    if not text.isdigit() or int(text) < 1:
        raise XdsError(f"must be a whole number >= 1 (got {text!r})", file="XDS_RAY_NUM_CPUS")
    return int(text)


def _ray_init(ray, address: str) -> None:
    """Join (``auto``, an address) or start (``local``) a Ray instance; quiet, no dashboard."""
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                              logging_level="ERROR", configure_logging=True)
    try:
        if address == "local":
            ray.init(address="local", num_cpus=_local_cpus(), **kw)
        else:
            _check_reachable(address)
            ray.init(address=address, **kw)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise XdsError(f"cannot reach a Ray cluster at {address!r}: {msg} (start one with "
                       "`ray start --head`, or use --ray local)", file="--ray") from None


def _check_reachable(address: str) -> None:
    """Fail fast on a cluster address nothing listens on (Ray itself retries for minutes).
    ``auto`` is checked only when ``RAY_ADDRESS`` names the address."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "auto").strip() or "auto"
        if address == "auto":
            return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise XdsError(f"expected auto, local or a cluster address HOST:PORT (got {address!r})",
                       file="--ray")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise XdsError(f"cannot reach a Ray cluster at {address!r}: {exc.strerror or exc} (start one "
                       "with `ray start --head`, or use --ray local)", file="--ray") from None
