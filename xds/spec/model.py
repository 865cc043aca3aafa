"""Models by name or path: a built-in (``deepseek-r1``) or any Hugging Face ``config.json``, read
by :mod:`.hf_config` into a :class:`~xds.spec.model_spec.ModelSpec` (whose docstring states the
parameter, KV and FLOP conventions); ``model_summary`` is ``xds model`` as a function."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import XdsError
from .builtins import resolve
from .hf_config import parse_hf_config
from .model_spec import ModelSpec
from .yamlio import load_json


@lru_cache(maxsize=64)
def _load(path: str, name: str) -> ModelSpec:
    data = load_json(path, what="model config")
    return parse_hf_config(data, name=name, file=path)


def load_model(name_or_path: str, *, flag: str | None = None) -> ModelSpec:
    """Load a built-in model (``deepseek-r1``) or any Hugging Face ``config.json`` path."""
    path, builtin = resolve("models", name_or_path, label="model", flag=flag)
    if not builtin and Path(path).is_dir():
        path = Path(path) / "config.json"
    name = name_or_path if builtin else Path(path).parent.name or Path(path).stem
    return _load(str(path), name)


def model_summary(model: str, *, kv_dtype: str = "bf16", context: int = 4096) -> dict[str, Any]:
    """``xds model`` as a function: the JSON document for ``model``."""
    if context < 0:
        raise XdsError(f"must be >= 0 (got {context})", file="--context")
    return load_model(model, flag="MODEL").summary(kv_dtype=kv_dtype, context=context)


__all__ = ["ModelSpec", "load_model", "model_summary", "parse_hf_config"]
