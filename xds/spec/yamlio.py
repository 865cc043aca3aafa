"""Safe reading of YAML / JSON inputs and pydantic validation with one-line errors.

* Files are size-capped (64 MB for specs) and parsed with PyYAML's *safe* loader.
* Alias-expansion bombs ("billion laughs") are refused before anything walks the data: the composed
  node graph is measured with aliases expanded, and more than ``MAX_EXPANDED_NODES`` is an error.
* :func:`validate` turns a pydantic ``ValidationError`` into an :class:`XdsError` naming the field,
  with a "did you mean" hint for unknown keys.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import XdsError

MAX_SPEC_BYTES = 64 * 1024 * 1024
MAX_EXPANDED_NODES = 2_000_000

T = TypeVar("T", bound=BaseModel)


class Strict(BaseModel):
    """Base for every input schema: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def read_bytes(path: str | Path, *, max_bytes: int = MAX_SPEC_BYTES, what: str = "file") -> bytes:
    """Read a file, refusing missing files, folders and files larger than ``max_bytes``."""
    p = Path(path)
    if not p.exists():
        raise XdsError(f"{what} not found", file=str(p))
    if p.is_dir():
        raise XdsError(f"expected a {what}, got a folder", file=str(p))
    size = p.stat().st_size
    if size > max_bytes:
        raise XdsError(
            f"{what} is {size / 1e6:.1f} MB; at most {max_bytes / 1e6:.0f} MB is accepted", file=str(p)
        )
    try:
        return p.read_bytes()
    except OSError as exc:
        raise XdsError(f"cannot read {what}: {exc.strerror}", file=str(p)) from None


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive structures
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(n, memo, limit) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, _ in node.value:  # PyYAML keeps the last of duplicate keys; a lost value is an error
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                if k.value in seen:
                    raise _Duplicate(k.value, k.start_mark.line + 1)
                seen.add(k.value)
        total = 1 + sum(
            _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit) for k, v in node.value
        )
    else:
        total = 1
    if total > limit:
        raise _TooBig()
    memo[key] = total
    return total


class _TooBig(Exception):
    pass


class _Duplicate(Exception):
    def __init__(self, key: str, line: int):
        super().__init__(key)
        self.key, self.line = key, line


def parse_yaml_text(text: str, *, file: str = "<input>") -> Any:
    """Parse YAML text safely; errors become :class:`XdsError` with the line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise XdsError(f"invalid YAML: {problem}", file=file, where=where) from None
    except RecursionError:
        raise XdsError("YAML is nested too deeply", file=file) from None
    if node is None:
        return None
    try:
        _expanded_size(node, {}, MAX_EXPANDED_NODES)
    except _TooBig:
        raise XdsError(
            f"YAML expands to more than {MAX_EXPANDED_NODES:,} nodes through aliases "
            "(alias bomb?); refusing it",
            file=file,
        ) from None
    except _Duplicate as exc:
        raise XdsError(f"duplicate key {exc.key[:60]!r}; each key may appear once per mapping",
                       file=file, where=f"line {exc.line}") from None
    except RecursionError:
        raise XdsError("YAML is nested too deeply", file=file) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # constructor errors (bad tags, bad timestamps)
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise XdsError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=file, where=where) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors leak these for malformed tagged scalars (e.g. `!!timestamp nonsense`)
        detail = " ".join(str(exc).split())[:100]
        raise XdsError(f"invalid YAML value: {detail or exc.__class__.__name__}", file=file) from None
    except RecursionError:
        raise XdsError("YAML is nested too deeply", file=file) from None


def load_yaml(path: str | Path, *, max_bytes: int = MAX_SPEC_BYTES, what: str = "YAML file") -> Any:
    """Load a YAML file safely (size cap, alias-bomb guard, one-line errors)."""
    raw = read_bytes(path, max_bytes=max_bytes, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise XdsError(
            f"not UTF-8 text (byte {exc.start}); expected a YAML {what}", file=str(path)
        ) from None
    if "\x00" in text:
        raise XdsError(f"binary data (NUL byte); expected a YAML {what}", file=str(path))
    return parse_yaml_text(text, file=str(path))


def load_json(path: str | Path, *, max_bytes: int = MAX_SPEC_BYTES, what: str = "JSON file") -> Any:
    """Load a JSON file with one-line errors (line and column of a syntax error)."""
    raw = read_bytes(path, max_bytes=max_bytes, what=what)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise XdsError(f"not UTF-8 text (byte {exc.start}); expected {what}", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise XdsError(f"invalid JSON: {exc.msg}", file=str(path), where=f"line {exc.lineno}") from None
    except RecursionError:
        raise XdsError(f"JSON is nested too deeply; expected {what}", file=str(path)) from None
    except ValueError as exc:
        raise XdsError(str(exc), file=str(path)) from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number xds accepts (NaN/Infinity are not allowed)")


def _loc_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names (and aliases) allowed at ``loc`` inside ``model``, for "did you mean" hints."""

    current: Any = model
    dict_value: Any = None
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if dict_value is not None:      # this part is a key of a dict[str, Model] field
            current, dict_value = dict_value, None
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []                   # tagged unions: give up on descending
        ann = fields[part].annotation
        if get_origin(ann) is dict and len(get_args(ann)) == 2:
            dict_value = first_model(get_args(ann)[1])
            current = None if dict_value is None else current
            continue
        current = first_model(ann)
    fields = getattr(current, "model_fields", None) or {}
    names = []
    for name, f in fields.items():
        names.append(f.alias or name)
    return names


def first_model(ann: Any) -> Any:
    """The first pydantic model class inside a type annotation (``X | None``, ``list[X]``, ...)."""

    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in get_args(ann):
        found = first_model(arg)
        if found is not None:
            return found
    return None


def describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """Return ``(where, message)`` for the first error of a pydantic ValidationError."""
    errors = exc.errors(include_url=False)
    # an unknown key is usually a misspelling of a required one: report it (with the hint) first
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    etype = err["type"]
    if etype == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        parent = loc[:-1]
        allowed = _fields_at(model, parent)
        hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        msg = f"unknown key {key!r}"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        if allowed:
            msg += f" (allowed: {', '.join(sorted(allowed))})"
        return _loc_text(loc), msg
    inp = err.get("input")
    shown = repr(inp)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if etype == "missing":
        return _loc_text(loc), "required field is missing"
    if not loc or isinstance(inp, (dict, list)):
        # a model-level check: the message already names the values; the whole input is noise
        return _loc_text(loc), msg
    return _loc_text(loc), f"{msg} (got {shown})"


def validate(model: type[T], data: Any, *, file: str, where_prefix: str = "") -> T:
    """Validate ``data`` against ``model``; raise a located one-line :class:`XdsError` on failure."""
    if data is None:
        raise XdsError("file is empty; expected a YAML mapping", file=file)
    if not isinstance(data, dict):
        raise XdsError(
            f"expected a mapping of keys at the top level, got {type(data).__name__}", file=file
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where, msg = describe_validation_error(exc, model)
        if where_prefix:
            where = f"{where_prefix}.{where}" if where != "(top level)" else where_prefix
        raise XdsError(msg, file=file, where=where) from None


def finite(value: float, name: str) -> float:
    """Return ``value`` if it is a finite number, else raise :class:`XdsError`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise XdsError(f"{name} must be a finite number (got {value!r})")
    return float(value)
