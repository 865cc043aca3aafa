"""The validation table: published figures with the configuration that reproduces each one.

``xds/data/validation/published.csv`` has one row per published figure (reference
``shared/reference/cloudmatrix384.md``): ``name``, ``hardware``, ``source``, ``calibration`` (yes when
the figure is also a calibration point in ``fixtures/calibration``, so its in-sample error is a fit
error, not a validation), ``metric``, ``published``, ``tolerance_pct``, a ``note`` on conditions, and
the configuration either as ``xds estimate`` flags (the columns of ``fixtures/calibration/*.csv``:
``phase``, ``model``, ``chips``, ``ep``, ``batch_per_chip``, ``batch_per_die``, ``tokens_per_chip``,
``input_len``, ``output_len``, ``mtp``, ``mtp_acceptance``, ``eplb``, ``shared_expert_dies``,
``redundant_experts``, ``microbatches``, ``quant``, ``fabric``) or as a shipped ``plan`` file whose
``xds plan --json`` field ``predicted.<phase>.<metric>`` is compared.

Effects (reference §C.6) are *paired rows* sharing a ``pair`` id: the row with ``published`` set is
the effect (published value = ratio of its metric to the baseline's), the row without is its
baseline. Every row is predicted through :func:`xds.cost.calibrate.read_points`, i.e. exactly as
``xds calibrate`` prices its points, so what validation measures is what calibration fits.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..cost import CostModel
from ..cost.calibrate import FLOAT_COLS, INT_COLS, METRICS, read_points
from ..errors import XdsError
from ..spec.builtins import DATA_ROOT
from ..spec.hardware import HardwareSpec, load_hardware
from ..spec.plan import load_plan
from ..spec.yamlio import read_bytes
from .placement import place

TABLE = DATA_ROOT / "validation" / "published.csv"
EST_COLS = ("phase", "model", "chips", "ep", "batch_per_chip", "batch_per_die", "tokens_per_chip",
            "input_len", "output_len", "mtp", "mtp_acceptance", "eplb", "shared_expert_dies",
            "redundant_experts", "microbatches", "quant", "fabric")
META_COLS = ("name", "hardware", "source", "calibration", "pair", "plan", "metric", "published",
             "tolerance_pct", "note")
COLUMNS = META_COLS + EST_COLS
PLAN_METRICS = {"tpot_ms": "decode", "output_throughput_per_chip": "decode", "step_time_ms": "decode",
                "ttft_ms": "prefill", "input_throughput_per_chip": "prefill"}
DEFAULT_TOL = {"value": 10.0, "effect": 5.0}


@dataclass
class Row:
    """One figure of the table (a value, or an effect = ratio of two configurations)."""

    line: int
    name: str
    hardware: str
    source: str
    calibration: bool
    metric: str
    published: float
    tolerance_pct: float
    phase: str
    kind: str                    # "value" | "effect"
    note: str = ""
    plan: str | None = None
    batch_per_die: float | None = None
    predict: Callable[[HardwareSpec], float] | None = None   # value (or ratio) on a hardware spec
    base_hw: HardwareSpec | None = None


def _value(key: str, v: str, file: str, line: int) -> Any:
    where = f"line {line}"
    if key in INT_COLS:
        try:
            return int(v)
        except ValueError:
            raise XdsError(f"column {key!r} must be an integer (got {v!r})", file=file, where=where) from None
    if key in FLOAT_COLS or key == "published":
        try:
            f = float(v)
        except ValueError:
            raise XdsError(f"column {key!r} must be a number (got {v!r})", file=file, where=where) from None
        if not math.isfinite(f):
            raise XdsError(f"column {key!r} must be finite (got {v!r})", file=file, where=where)
        return f
    return v


def _parse(text: str, file: str) -> list[tuple[int, dict[str, Any]]]:
    rd = csv.DictReader(io.StringIO(text, newline=""))
    for col in rd.fieldnames or []:
        if col.strip() not in COLUMNS:
            hint = difflib.get_close_matches(col.strip(), COLUMNS, n=1)
            raise XdsError(f"unknown column {col.strip()!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" (allowed: {', '.join(COLUMNS)})", file=file, where="line 1")
    out = []
    for i, row in enumerate(rd, start=2):
        if None in row:
            raise XdsError("row has more fields than the header", file=file, where=f"line {i}")
        r = {}
        for k, v in row.items():
            if v is None:
                raise XdsError(f"row is missing column {k.strip()!r} (truncated line?)", file=file,
                               where=f"line {i}")
            if v.strip():
                r[k.strip()] = _value(k.strip(), v.strip(), file, i)
        out.append((i, r))
    if not out:
        raise XdsError("no data rows; expected a header and at least one published figure", file=file)
    return out


def _check_row(r: dict[str, Any], line: int, file: str) -> None:
    where = f"line {line}"
    for req in ("name", "hardware", "metric"):
        if req not in r:
            raise XdsError(f"missing value for column {req!r}", file=file, where=where)
    if "plan" not in r and "phase" not in r:
        raise XdsError("give a configuration: 'phase' and estimate flags, or a 'plan' file", file=file,
                       where=where)
    if "plan" in r:
        if "pair" in r:
            raise XdsError("a plan row cannot be half of an effect pair", file=file, where=where)
        if r["metric"] not in PLAN_METRICS:
            raise XdsError(f"metric of a plan row must be one of {', '.join(PLAN_METRICS)} "
                           f"(got {r['metric']!r})", file=file, where=where)
    elif r.get("phase") in METRICS and r["metric"] not in METRICS[r["phase"]]:
        raise XdsError(f"metric for {r['phase']} must be one of {', '.join(METRICS[r['phase']])} "
                       f"(got {r['metric']!r})", file=file, where=where)
    if "published" in r and r["published"] <= 0:
        raise XdsError(f"published must be > 0 (got {r['published']})", file=file, where=where)
    if "published" not in r and "pair" not in r:
        raise XdsError("missing value for column 'published' (only the baseline of a pair has none)",
                       file=file, where=where)
    if r.get("calibration", "no") not in ("yes", "no"):
        raise XdsError(f"calibration must be yes or no (got {r['calibration']!r})", file=file, where=where)


def _hardware(name: str, file: str, line: int, cache: dict[str, HardwareSpec]) -> HardwareSpec:
    if name not in cache:
        try:
            cache[name] = load_hardware(name)
        except XdsError as exc:
            raise XdsError(f"hardware: {exc.message}", file=file, where=f"line {line}") from None
    return cache[name]


def _estimate_predictors(rows: list[tuple[int, dict[str, Any]]], hardware: str, file: str) -> list[Callable]:
    """Predictors of estimate/communication rows on ``hardware``, built by ``read_points`` from a
    calibrate-format CSV of the same rows (errors are re-located to ``file``'s lines)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ("name",) + EST_COLS + ("metric", "measured")
    w.writerow(cols)
    for _, r in rows:
        w.writerow([r.get("name", "")] + [r.get(c, "") for c in EST_COLS] + [r["metric"], r.get("published", 1.0)])
    with tempfile.TemporaryDirectory(prefix="xds-validate-") as tmp:
        path = Path(tmp) / "points.csv"
        path.write_text(buf.getvalue())
        try:
            pts = read_points(path, hardware)
        except XdsError as exc:
            where = exc.where or ""
            line = rows[int(where.split()[1]) - 2][0] if where.startswith("line ") and where != "line 1" else None
            msg = exc.message if exc.file == str(path) else str(exc)
            raise XdsError(msg, file=file, where=f"line {line}" if line else None) from None
    return [p.predict for p in pts]


def _plan_file(rel: str, file: str, line: int) -> str:
    p = Path(rel)
    for cand in ([p] if p.is_absolute() else [Path(file).parent / p, p, DATA_ROOT.parent.parent / p]):
        if cand.exists():
            return str(cand)
    raise XdsError(f"plan file {rel!r} not found (looked next to the table, in the current directory "
                   "and in the source checkout)", file=file, where=f"line {line}")


def _plan_predictor(r: dict[str, Any], file: str, line: int) -> tuple[Callable, HardwareSpec, float]:
    """Predictor of a plan row: the placed plan re-priced with another hardware spec's factors."""
    try:
        placed = place(load_plan(_plan_file(r["plan"], file, line)))
    except XdsError as exc:
        raise XdsError(f"plan: {exc}", file=file, where=f"line {line}") from None
    pool_name = PLAN_METRICS[r["metric"]]
    pool = getattr(placed, pool_name)
    if pool is None:
        raise XdsError(f"plan {r['plan']!r} has no {pool_name} pool for metric {r['metric']!r}", file=file,
                       where=f"line {line}")

    def predict(hw: HardwareSpec) -> float:
        pools = {}
        for name in ("prefill", "decode"):
            p = getattr(placed, name)
            if p is not None:
                insts = [replace(i, cost=CostModel(i.cost.m, hw, i.cost.lay, i.cost.fabric)) for i in p.instances]
                pools[name] = replace(p, instances=insts)
        doc = replace(placed, hw=hw, **pools).predicted()
        return float(doc[pool_name][r["metric"]])

    return predict, placed.hw, float(pool.batch_cap_per_rank) if pool_name == "decode" else None


def read_table(path: str | Path | None = None) -> list[Row]:
    """Read and check a validation table (default: the shipped one); every row gets a predictor."""
    file = str(path or TABLE)
    raw = read_bytes(path or TABLE, what="validation table")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise XdsError("not UTF-8 text; expected a CSV of published figures", file=file) from None
    parsed = _parse(text, file)
    for line, r in parsed:
        _check_row(r, line, file)
    hws: dict[str, HardwareSpec] = {}
    preds: dict[int, Callable] = {}
    meta: dict[int, tuple[HardwareSpec, float | None]] = {}
    for hw_name in dict.fromkeys(r["hardware"] for _, r in parsed):
        hw = _hardware(hw_name, file, next(ln for ln, r in parsed if r["hardware"] == hw_name), hws)
        est = [(ln, r) for ln, r in parsed if r["hardware"] == hw_name and "plan" not in r]
        for (ln, r), f in zip(est, _estimate_predictors(est, hw_name, file) if est else []):
            preds[ln] = f
            b = r.get("batch_per_die", r.get("batch_per_chip", 0.0) / hw.dies_per_chip) \
                if r["phase"] == "decode" else None
            meta[ln] = (hw, b)
        for ln, r in parsed:
            if r["hardware"] == hw_name and "plan" in r:
                preds[ln], phw, b = _plan_predictor(r, file, ln)
                if phw.name != hw.name:
                    raise XdsError(f"plan runs on {phw.name}, the row says {hw_name}", file=file,
                                   where=f"line {ln}")
                meta[ln] = (hw, b)
    return _rows(parsed, preds, meta, file)


def _rows(parsed, preds, meta, file: str) -> list[Row]:
    pairs: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for ln, r in parsed:
        if "pair" in r:
            pairs.setdefault(r["pair"], []).append((ln, r))
    rows: list[Row] = []
    for ln, r in parsed:
        kind = "value"
        predict = preds[ln]
        if "pair" in r:
            members = pairs[r["pair"]]
            heads = [m for m in members if "published" in m[1]]
            if len(members) != 2 or len(heads) != 1:
                raise XdsError(f"pair {r['pair']!r} must have exactly two rows, one with 'published' "
                               f"(the effect) and one without (its baseline); found {len(members)} rows, "
                               f"{len(heads)} with a value", file=file, where=f"line {ln}")
            if "published" not in r:
                continue
            base_ln, base = next(m for m in members if m[0] != ln)
            if base["hardware"] != r["hardware"] or base["metric"] != r["metric"]:
                raise XdsError("the two rows of a pair need the same hardware and metric", file=file,
                               where=f"line {base_ln}")
            kind = "effect"
            predict = (lambda hw, a=preds[ln], b=preds[base_ln]: a(hw) / b(hw))
        hw, b = meta[ln]
        phase = PLAN_METRICS[r["metric"]] if "plan" in r else r["phase"]
        rows.append(Row(ln, r["name"], r["hardware"], r.get("source", ""), r.get("calibration") == "yes",
                        r["metric"], r["published"], r.get("tolerance_pct", DEFAULT_TOL[kind]), phase, kind,
                        r.get("note", ""), r.get("plan"), b, predict, hw))
    return rows
