"""Runs a script against the stand-in driver (``fake_driver.c``, built here as libcuda.so.1 and used as NVRTC too)
in a fresh process, where the CUDA device finds it through LD_LIBRARY_PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler to build the stand-in driver")


def run_against_fake_driver(
    script: str, folder: Path, env: dict[str, str] | None = None, defines: list[str] | None = None
) -> str:
    """The script's stdout; fails the test with its output if it exits with an error. The driver is built in
    ``folder`` once (``defines``: C macros to build it with, e.g. FAKE_NO_GRAPHS)."""
    lib = folder / "libcuda.so.1"
    if not lib.exists():
        flags = [f"-D{name}" for name in defines or []]
        subprocess.run([CC, "-O1", "-shared", "-fPIC", *flags, "-o", str(lib), str(HERE / "fake_driver.c")], check=True)
    root = str(HERE.parents[1])
    python_path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    full_env = {**os.environ, "LD_LIBRARY_PATH": str(folder), "BOLT_NVRTC": str(lib), "PYTHONPATH": python_path,
                **(env or {})}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full_env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
