"""Hypothesis fuzzing: every loader either succeeds or raises XdsError (never another exception), and
the engine keeps its invariants on random small workloads.

Loaders: plans, scenarios, suites, hardware, clusters (YAML), HF configs (dicts), traces (every
format), load matrices. Inputs are random bytes, YAML-ish text built from the real keys with random
values, and mutations of the shipped files.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from xds.engine import COMPLETED, FAILED, simulate
from xds.errors import XdsError
from xds.experts import load_loads
from xds.gate import load_suite
from xds.chaos import load_scenario
from xds.spec.model import parse_hf_config
from xds.plan import place
from xds.spec.cluster import load_cluster
from xds.spec.hardware import load_hardware
from xds.spec.plan import load_plan
from xds.workload import FORMATS, read_trace, synthetic

from .conftest import FIXTURES, PLANS, ROOT

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, data: bytes | str, suffix: str) -> Path:
    """A fresh file per example: several loaders cache by path (and mtime)."""
    p = folder / f"f{next(_counter)}{suffix}"
    p.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return p


def _only_user_errors(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except XdsError as exc:
        text = str(exc)
        assert "\n" not in text and text.strip(), repr(text)
        return None


# ----------------------------------------------------------------------------- value strategies

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(-10**40, 10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["decode", "prefill", "fine-grained", "die:3", "node:99", "synthetic", "poisson",
                     "ascend-910c", "h800", "deepseek-r1", "qwen3-30b-a3b", "cloudmatrix384", ".nan"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

yaml_noise = st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#%@`,?\n\t 0123456789.")), max_size=200),
)


def _mutate(doc, data, keys_pool: list[str], depth: int = 0):
    """Randomly replace, delete or add entries in a nested dict/list built from a real file."""
    if isinstance(doc, dict) and doc:
        doc = dict(doc)
        key = data.draw(st.sampled_from(sorted(doc)))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "recurse", "recurse"]))
        if action == "replace":
            doc[key] = data.draw(values)
        elif action == "delete":
            del doc[key]
        elif action == "add":
            doc[data.draw(st.sampled_from(keys_pool + ["bogus"]))] = data.draw(values)
        elif depth < 4:
            doc[key] = _mutate(doc[key], data, keys_pool, depth + 1)
        return doc
    if isinstance(doc, list) and doc:
        doc = list(doc)
        i = data.draw(st.integers(0, len(doc) - 1))
        doc[i] = _mutate(doc[i], data, keys_pool, depth + 1) if depth < 4 else data.draw(values)
        return doc
    return data.draw(values)


def _keys(doc) -> list[str]:
    out: set[str] = set()

    def walk(d):
        if isinstance(d, dict):
            for k, v in d.items():
                out.add(str(k))
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)
    walk(doc)
    return sorted(out)


def _dump(doc) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, ValueError, TypeError):
        return "{}"


# ----------------------------------------------------------------------------- YAML loaders

PLAN_DOC = yaml.safe_load((PLANS / "cloudmatrix-infer-pd.yaml").read_text())
SCEN_DOC = yaml.safe_load((FIXTURES / "faults/die_down.yaml").read_text())
HW_DOC = yaml.safe_load((ROOT / "xds/data/hardware/h800.yaml").read_text())
CL_DOC = yaml.safe_load((ROOT / "xds/data/clusters/h800-ib.yaml").read_text())
SUITE_DOC = {"name": "fuzz", "checks": [{
    "name": "a", "plan": str(PLANS / "cloudmatrix-infer-pd.yaml"),
    "workload": {"rate_rps": 5, "input": {"dist": "fixed", "value": 512},
                 "output": {"dist": "fixed", "value": 16}, "requests": 20},
    "scenario": str(FIXTURES / "faults/die_down.yaml"), "policy": "restart", "seed": 1,
    "expect": {"failed": {"max": 0}, "p99_tpot_ms": {"min": 1, "max": 50}}}]}

YAML_LOADERS = {
    "plan": (load_plan, PLAN_DOC),
    "scenario": (load_scenario, SCEN_DOC),
    "suite": (load_suite, SUITE_DOC),
    "hardware": (lambda p: load_hardware(str(p)), HW_DOC),
    "cluster": (lambda p: load_cluster(str(p)), CL_DOC),
}


@pytest.mark.parametrize("kind", sorted(YAML_LOADERS))
@FAST
@given(noise=yaml_noise)
def test_yaml_loaders_on_noise(scratch, kind, noise):
    fn, _ = YAML_LOADERS[kind]
    _only_user_errors(fn, _write(scratch, noise, ".yaml"))


@pytest.mark.parametrize("kind", sorted(YAML_LOADERS))
@FAST
@given(data=st.data())
def test_yaml_loaders_on_mutated_real_files(scratch, kind, data):
    fn, doc = YAML_LOADERS[kind]
    mutated = doc
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = _mutate(mutated, data, _keys(doc))
    res = _only_user_errors(fn, _write(scratch, _dump(mutated), ".yaml"))
    if kind == "plan" and res is not None:
        # a plan that loads must also place, or fail with a user error
        _only_user_errors(place, res)


# ----------------------------------------------------------------------------- HF configs

HF_BASES = [json.loads(p.read_text()) for p in sorted((ROOT / "xds/data/models").glob("*.json"))]


@FAST
@given(data=st.data())
def test_parse_hf_config_on_mutated_configs(data):
    base = data.draw(st.sampled_from(HF_BASES))
    d = base
    for _ in range(data.draw(st.integers(1, 4))):
        d = _mutate(d, data, _keys(base))
    res = _only_user_errors(parse_hf_config, d, name="fuzz", file="fuzz.json")
    if res is not None:
        # the accounting of a config that parses is well defined
        s = res.summary()
        assert s["total_params"] > 0


@FAST
@given(d=st.one_of(values, st.dictionaries(st.text(max_size=20), values, max_size=10)))
def test_parse_hf_config_on_random_dicts(d):
    _only_user_errors(parse_hf_config, d, name="fuzz", file="fuzz.json")


# ----------------------------------------------------------------------------- traces

cell = st.one_of(
    st.integers(-5, 10**7).map(str), st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(
        ["", "nan", "inf", "-1", "0", "1e999", "abc", "2023-11-16 18:17:03.9799600", "2024-05-10 00:00:00",
         "\x00", "ñ", '"', "1,2", " 12 ", "0x10", "Success", "Failure", "ChatGPT", "GPT-4"]),
    st.text(max_size=6))
HEADERS = ["TIMESTAMP,ContextTokens,GeneratedTokens", "Timestamp,Model,Request tokens,Response tokens,"
           "Total tokens,Log Type", "input_len,output_len", "prompt_len,output_len", "a,b,c", ""]


@st.composite
def csv_text(draw):
    header = draw(st.sampled_from(HEADERS))
    ncol = max(1, header.count(",") + 1)
    rows = draw(st.lists(st.lists(cell, min_size=max(0, ncol - 1), max_size=ncol + 1), max_size=8))
    text = header + "\n" + "\n".join(",".join(r) for r in rows)
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]  # truncated mid-line
    return text


json_value = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=False), st.text(max_size=5),
                       st.none(), st.booleans(), st.lists(st.integers(-3, 10**12), max_size=4))


@st.composite
def jsonl_text(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            d = {"timestamp": draw(json_value), "input_length": draw(json_value),
                 "output_length": draw(json_value), "hash_ids": draw(json_value)}
            for k in draw(st.lists(st.sampled_from(list(d)), max_size=2)):
                d.pop(k, None)
            lines.append(json.dumps(d))
        elif kind == 1:
            lines.append(json.dumps(draw(json_value)))
        elif kind == 2:
            lines.append(draw(st.sampled_from(['{"timestamp": NaN, "input_length": 1, "output_length": 1}',
                                               '{"timestamp": 1', "", "   ", "[]", "{}"])))
        else:
            lines.append(draw(st.text(max_size=30)))
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", ("auto",) + tuple(FORMATS))
@FAST
@given(content=st.one_of(csv_text(), jsonl_text(), st.binary(max_size=200)), suffix=st.sampled_from(
    [".csv", ".jsonl", ".txt"]))
def test_read_trace_every_format(scratch, fmt, content, suffix):
    p = _write(scratch, content, suffix)
    w = _only_user_errors(read_trace, p, fmt, rate_rps=2.0)
    if w is not None:
        n = len(w)
        assert n >= 1 and len(w.input_len) == n and len(w.output_len) == n
        assert np.all(np.isfinite(w.arrival_s)) and np.all(np.diff(w.arrival_s) >= 0)
        assert np.all(w.input_len >= 1) and np.all(w.output_len >= 0)


# ----------------------------------------------------------------------------- load matrices

@st.composite
def loads_csv(draw):
    rows = draw(st.lists(st.lists(cell, min_size=1, max_size=6), max_size=5))
    return "\n".join(",".join(r) for r in rows)


@FAST
@given(content=st.one_of(loads_csv(), st.binary(max_size=300)), suffix=st.sampled_from([".csv", ".npy", ".txt"]))
def test_load_loads_on_noise(scratch, content, suffix):
    arr = _only_user_errors(load_loads, _write(scratch, content, suffix))
    if arr is not None:
        assert arr.ndim == 2 and np.all(np.isfinite(arr)) and np.all(arr >= 0)


@FAST
@given(arr=st.one_of(
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5), min_size=1,
             max_size=4).map(lambda r: np.array(r, dtype=object)),
    st.integers(0, 3).flatmap(lambda nd: st.lists(st.one_of(st.floats(-1, 1e30), st.just(float("nan"))), min_size=1, max_size=24)
                              .map(lambda v: np.array(v).reshape([len(v)] + [1] * nd)))))
def test_load_loads_on_random_npy(scratch, arr):
    p = scratch / f"f{next(_counter)}.npy"
    try:
        np.save(p, arr, allow_pickle=True)
    except (ValueError, TypeError):
        assume(False)
    out = _only_user_errors(load_loads, p)
    if out is not None:
        assert out.ndim == 2 and np.all(np.isfinite(out)) and np.all(out >= 0)


# ----------------------------------------------------------------------------- engine invariants

SMALL_PLAN = """\
name: fuzz-small
model: qwen3-30b-a3b
hardware: ascend-910c
pools:
  - role: decode
    chips: 4
    layout: {dp: 8, tp: 1, ep: 8}
    batch_per_die: 8
    mtp: {draft_tokens: 1, acceptance: 0.7}
  - role: prefill
    instances: 2
    chips: 2
    layout: {dp: 4, tp: 1, ep: 4}
    token_budget_per_die: 4096
slo: {ttft_ms: 2000, tpot_ms: 50, window_s: 5}
"""


@pytest.fixture(scope="module")
def small_placed(tmp_path_factory):
    p = tmp_path_factory.mktemp("plan") / "small.yaml"
    p.write_text(SMALL_PLAN)
    return place(load_plan(p))


def _dist(top: int) -> st.SearchStrategy:
    """Length distributions up to about ``top`` tokens."""
    return st.one_of(
        st.integers(1, top).map(lambda v: {"dist": "fixed", "value": v}),
        st.tuples(st.integers(1, top // 2), st.integers(0, top // 2)).map(
            lambda t: {"dist": "uniform", "low": t[0], "high": t[0] + t[1]}),
        st.tuples(st.floats(2, top / 3), st.floats(0.1, 2.0)).map(
            lambda t: {"dist": "lognormal", "mean": t[0], "sigma": t[1]}),
    )


dist = _dist(6000)
# outputs: each token is a decode step, so long outputs only make an example slow; the engine's
# handling of very long outputs has its own test (test_engine_edges)
out_dist = _dist(1200)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(n=st.integers(1, 120), rate=st.floats(0.5, 400), inp=dist, out=out_dist, seed=st.integers(0, 2**32 - 1),
       gamma=st.booleans(), cv=st.floats(0.3, 4), closed=st.one_of(st.none(), st.integers(1, 64)))
def test_engine_invariants_on_random_workloads(small_placed, n, rate, inp, out, seed, gamma, cv, closed):
    w = synthetic(rate_rps=rate, input=inp, output=out, requests=n, seed=seed,
                  arrival="gamma" if gamma else "poisson", cv=cv if gamma else 1.0)
    res = simulate(small_placed, w, seed=seed, concurrency=closed)
    assert len(res) == len(w) == n
    # every request ends exactly once, in completed or failed
    assert set(np.unique(res.status)) <= {COMPLETED, FAILED}
    assert np.all(res.generated >= 0) and np.all(res.generated <= w.output_len)
    done = res.status == COMPLETED
    assert np.all(res.generated[done] == w.output_len[done])
    assert np.all(np.isfinite(res.first_token_s[done])) and np.all(np.isfinite(res.finish_s[done]))
    assert np.all(res.first_token_s[done] >= res.arrival_s[done] - 1e-9)
    assert np.all(res.finish_s[done] >= res.first_token_s[done] - 1e-9)
    assert np.all(res.reason[~done] > 0) and np.all(res.reason[done] == 0)
    assert math.isfinite(res.duration) and res.duration >= 0
