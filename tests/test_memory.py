"""xds.memory: the allocator tuning applied on import, and its opt-out."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import xds.memory as memory


def _applied_in_fresh_process(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("XDS_MALLOC_TUNING", None)
    if env_value is not None:
        env["XDS_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", "import xds.memory as m; print(m._applied)"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_import_tunes_glibc_and_env_opts_out():
    assert _applied_in_fresh_process(None) == "True"
    assert _applied_in_fresh_process("0") == "False"


def test_keep_freed_memory_is_idempotent():
    first = memory.keep_freed_memory()
    assert memory.keep_freed_memory() is first
