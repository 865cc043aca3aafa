"""xds.cli.malloc: the allocator tuning the CLI's main applies, its opt-out, and that importing
xds changes nothing process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import xds.cli.malloc as memory


def _applied_in_fresh_process(env_value: str | None, code: str) -> str:
    env = dict(os.environ)
    env.pop("XDS_MALLOC_TUNING", None)
    if env_value is not None:
        env["XDS_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


MAIN = ("import sys, xds.cli as c, xds.cli.malloc as m; sys.argv=['xds','--version']\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\nprint(m._applied)")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_cli_main_tunes_glibc_and_env_opts_out():
    assert _applied_in_fresh_process(None, MAIN).endswith("True")
    assert _applied_in_fresh_process("0", MAIN).endswith("False")


def test_import_xds_has_no_process_wide_effect():
    code = "import xds, xds.cli, xds.cli.malloc as m; print(m._applied)"
    assert _applied_in_fresh_process(None, code) == "None"


def test_keep_freed_memory_is_idempotent():
    first = memory.keep_freed_memory()
    assert memory.keep_freed_memory() is first
