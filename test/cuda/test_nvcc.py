"""Compile-check the CUDA source of every op-suite kernel with nvcc, where nvcc is on PATH (CI has none).

All kernels go into one .cu file per architecture, compiled in one nvcc call (seconds, not minutes), and
``ptxas -v`` tells each kernel's registers and spills.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from suite_kernels import collect_suite_sources, cuda_unit

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH (the CUDA toolkit is not installed)")


@pytest.fixture(scope="module")
def suite_sources() -> dict[str, str]:
    return collect_suite_sources()


def ptxas_report(output: str) -> dict[str, dict[str, int]]:
    """{kernel: {"registers", "spill_stores", "spill_loads", "smem"}} from ``ptxas -v``'s lines."""
    out: dict[str, dict[str, int]] = {}
    current = None
    for line in output.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = out.setdefault(m.group(1), {"registers": 0, "spill_stores": 0, "spill_loads": 0, "smem": 0})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["spill_stores"], current["spill_loads"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            current["smem"] = int(m.group(1))
    return out


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_every_suite_kernel(arch, suite_sources, tmp_path):
    assert len(suite_sources) > 300, f"only {len(suite_sources)} kernels collected from the op suite"
    source = tmp_path / f"suite_{arch}.cu"
    source.write_text(cuda_unit(suite_sources))
    command = [NVCC, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(tmp_path / f"suite_{arch}.cubin"),
               str(source)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"nvcc failed for {arch}:\n{result.stderr[-6000:]}"
    report = ptxas_report(result.stdout + result.stderr)
    assert set(report) == set(suite_sources), "ptxas did not report every kernel"
    spills = {name: r for name, r in report.items() if r["spill_stores"] or r["spill_loads"]}
    assert not spills, f"{len(spills)} kernels spill registers on {arch}: {dict(list(spills.items())[:5])}"
    tiled = [r for name, r in report.items() if r["smem"] > 1024]  # the shared-memory matmul tiles
    assert tiled and max(r["registers"] for r in tiled) <= 255
    # tensor-core tiles: float16 and bfloat16 matmuls, and the half-cast prologue; none spills (above), and two
    # blocks fit on an SM (__launch_bounds__(256, 2): 128 registers)
    mma = {name: report[name]["registers"] for name, src in suite_sources.items() if "mma.sync.aligned" in src}
    assert len(mma) >= 10 and max(mma.values()) <= 128, mma
    print(f"{arch}: {len(mma)} tensor-core kernels, registers {sorted(set(mma.values()))}")
    print(f"{arch}: {len(report)} kernels compiled, none spills; most registers "
          f"{max(r['registers'] for r in report.values())}")  # fmt: skip
