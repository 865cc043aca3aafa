"""Expert load matrices: validate them, read them from ``.npy`` / ``.csv``, or generate realistic
synthetic ones (``synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]]``). A load matrix is float64
[layers, experts] of token counts routed to each logical expert (non-negative, finite)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XdsError

MAX_LOADS_BYTES = 256 * 1024 * 1024
#: Largest token total per layer: float32 sums of loads (as EPLB packs them) must stay finite.
MAX_LAYER_LOAD = 1e38
SYNTHETIC_SPEC = "synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]]"


def check_loads(loads: Any, *, file: str | None = "--loads") -> np.ndarray:
    """Validate a load matrix and return it as float64 [L, E]."""
    arr = np.asarray(loads)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise XdsError(f"loads must be numeric token counts, got dtype {arr.dtype}", file=file)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise XdsError(f"loads must have shape [layers, experts] or [experts], got {list(arr.shape)}",
                       file=file)
    if arr.size == 0:
        raise XdsError(f"loads are empty (shape {list(arr.shape)}); need at least one layer and expert",
                       file=file)
    arr = arr.astype(np.float64)
    if arr.min() >= 0 and arr.max() < np.inf:       # (NaN fails the first test)
        arr += 0.0                                  # -0.0 -> +0.0: loads print and sum as zeros
        return arr
    bad = ~np.isfinite(arr)
    if bad.any():
        l, e = np.argwhere(bad)[0]
        raise XdsError(f"load is {arr[l, e]} (must be a finite non-negative token count)",
                       file=file, where=f"layer {l} expert {e}")
    neg = arr < 0
    if neg.any():
        l, e = np.argwhere(neg)[0]
        raise XdsError(f"load is {arr[l, e]:g} (must be a non-negative token count)",
                       file=file, where=f"layer {l} expert {e}")
    return arr


def check_float32_sums(w: np.ndarray, file: str | None = "--loads") -> None:
    """The balancer sums loads in float32, as EPLB does: refuse layers whose total would overflow."""
    total = w.sum(1)
    if (total > MAX_LAYER_LOAD).any():
        l = int(np.argmax(total > MAX_LAYER_LOAD))
        raise XdsError(f"loads sum to {total[l]:.3g} tokens; at most {MAX_LAYER_LOAD:g} per layer is "
                       f"supported (the balancer sums in float32, as EPLB does)",
                       file=file, where=f"layer {l}")


def _synthetic_spec(text: str, label: str) -> np.ndarray:
    """``synthetic:58x256:30:1`` → :func:`synthetic_loads` (58 layers, 256 experts, hottest 30×, seed 1)."""
    parts = text.split(":")[1:]
    try:
        layers, experts = (int(x) for x in parts[0].lower().split("x"))
        hot = float(parts[1]) if len(parts) > 1 and parts[1] else 30.0
        seed = int(parts[2]) if len(parts) > 2 else 0
        if len(parts) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise XdsError(f"cannot read {text!r}; expected {SYNTHETIC_SPEC}, e.g. synthetic:58x256:30",
                       file=label) from None
    if not (1 <= layers <= 1000 and 2 <= experts <= 100_000):
        raise XdsError(f"{text!r}: layers must be 1..1000 and experts 2..100000", file=label)
    try:
        return synthetic_loads(layers, experts, hot_ratio=hot, seed=seed).astype(np.float64)
    except XdsError as exc:
        raise XdsError(f"{text!r}: {exc.message}", file=label) from None


def load_loads(path: str | Path, *, label: str = "--loads") -> np.ndarray:
    """Read a load matrix from ``.npy`` or ``.csv`` (one layer per line, comma-separated token counts;
    an optional non-numeric header line and ``#`` comments are skipped), or generate a realistic one
    with ``synthetic:LAYERSxEXPERTS[:HOT_RATIO[:SEED]]``. Returns float64 [L, E]."""
    if isinstance(path, str) and path.startswith("synthetic:"):
        return _synthetic_spec(path, label)
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise XdsError(f"{label} file not found", file=name)
    if p.is_dir():
        raise XdsError(f"{label} must be a .npy or .csv file, got a folder", file=name)
    size = p.stat().st_size
    if size == 0:
        raise XdsError("file is empty; expected a [layers, experts] array of token counts", file=name)
    if size > MAX_LOADS_BYTES:
        raise XdsError(f"file is {size / 1e6:.0f} MB; at most {MAX_LOADS_BYTES / 1e6:.0f} MB accepted",
                       file=name)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise XdsError(f"not a valid .npy array ({' '.join(str(exc).split())[:120]})", file=name) from None
        if not isinstance(arr, np.ndarray):
            raise XdsError("expected a single .npy array, not an archive", file=name)
        return check_loads(arr, file=name)
    if suffix in (".csv", ".txt"):
        return check_loads(_read_csv(p), file=name)
    raise XdsError(f"unsupported file type {suffix or '(none)'!r}; use .npy or .csv", file=name)


def _read_csv(p: Path) -> np.ndarray:
    name = str(p)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise XdsError(f"not UTF-8 text (byte {exc.start}); expected CSV token counts", file=name) from None
    if "\x00" in text:
        raise XdsError("binary data (NUL byte); expected CSV token counts", file=name)
    rows: list[list[float]] = []
    width = None
    for lineno, rec in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        cells = [c.strip() for c in rec]
        if not cells or all(c == "" for c in cells) or cells[0].startswith("#"):
            continue
        try:
            vals = [float(c) for c in cells]
        except ValueError:
            if not rows and width is None and lineno == _first_content_line(text):
                width = len(cells)  # header line: its width fixes the row width
                continue
            bad = next(c for c in cells if not _is_float(c))
            raise XdsError(f"{bad[:40]!r} is not a number (expected comma-separated token counts)",
                           file=name, where=f"line {lineno}") from None
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise XdsError(f"row has {len(vals)} values, expected {width} (one value per expert)",
                           file=name, where=f"line {lineno}")
        rows.append(vals)
    if not rows:
        raise XdsError("no data rows; expected comma-separated token counts, one layer per line", file=name)
    return np.array(rows, dtype=np.float64)


def _first_content_line(text: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            return i
    return 0


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _zipf_ratio(a: np.ndarray, E: int) -> np.ndarray:
    k = np.arange(1, E + 1, dtype=np.float64)
    return E / (k[None, :] ** -np.atleast_1d(a)[:, None]).sum(1)


def synthetic_loads(layers: int, experts: int, *, hot_ratio: float = 30.0, seed: int = 0,
                    kind: str = "zipf", tokens: int = 1 << 20) -> np.ndarray:
    """Realistic per-layer expert loads (token counts, int64 [layers, experts]) when no measured
    statistics exist. The skew parameter is calibrated so the hottest expert of each layer sees about
    ``hot_ratio`` x the mean load (reference §F: ~30x for a DeepSeek-R1 layer on ShareGPT).

    ``kind="zipf"``: load ∝ rank^-a with the ranking shuffled per layer; ``"lognormal"``: load ∝
    exp(sigma z), z standard normal per layer, sigma calibrated per layer. ``tokens`` routed
    token-expert assignments per layer are drawn multinomially from those shares.
    """
    if kind not in ("zipf", "lognormal"):
        raise XdsError(f"unknown kind {kind!r}; use 'zipf' or 'lognormal'", where="kind")
    if layers < 1 or experts < 1:
        raise XdsError("layers and experts must be >= 1", where="synthetic_loads")
    if not (1.0 <= hot_ratio < experts) and not (experts == 1 and hot_ratio == 1.0):
        raise XdsError(f"hot_ratio {hot_ratio} must be in [1, experts={experts})", where="hot_ratio")
    if tokens < 1:
        raise XdsError("tokens must be >= 1", where="tokens")
    rng = np.random.default_rng(seed)
    if kind == "zipf":
        lo, hi = 0.0, 64.0
        for _ in range(80):  # ratio(a) is increasing in a: from 1 (a=0) to E (a->inf)
            mid = 0.5 * (lo + hi)
            if _zipf_ratio(np.array(mid), experts)[0] < hot_ratio:
                lo = mid
            else:
                hi = mid
        share = np.arange(1, experts + 1, dtype=np.float64) ** -lo
        share /= share.sum()
        perm = np.argsort(rng.random((layers, experts)), axis=1)
        p = share[perm]
    else:
        z = rng.standard_normal((layers, experts))
        dz = z - z.max(1, keepdims=True)
        lo, hi = np.zeros(layers), np.full(layers, 64.0)
        for _ in range(80):  # max/mean of exp(sigma z) is increasing in sigma
            mid = 0.5 * (lo + hi)
            ratio = 1.0 / np.exp(mid[:, None] * dz).mean(1)
            up = ratio < hot_ratio
            lo = np.where(up, mid, lo)
            hi = np.where(up, hi, mid)
        p = np.exp(lo[:, None] * dz)
        p /= p.sum(1, keepdims=True)
    return rng.multinomial(int(tokens), p).astype(np.int64)

