"""NVRTC, NVIDIA's runtime compiler library, loaded with ctypes: CUDA C -> a cubin (or PTX for a GPU newer than
the NVRTC) for the CUDA device. It needs no driver and no GPU, so CI compiles the CUDA path's kernels too.

NVRTC is found, in order: ``BOLT_NVRTC``; the ``nvidia-cuda-nvrtc`` wheel (``pip install boltgrad[cuda]``;
``nvidia/cu13/lib`` or ``nvidia/cuda_nvrtc/lib`` on ``sys.path``), which is also where an installed PyTorch's
NVIDIA wheels put it; ``CUDA_HOME``; ``/usr/local/cuda``; the system's library path. A compile error shows
NVRTC's log and the source (the lines around those the log names, for a long one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from boltgrad import config, stats
from boltgrad.device import compile_cache
from boltgrad.device.base import Compiler
from boltgrad.errors import CompileError, DeviceUnavailable

NVRTC_FIX = "fix: pip install 'boltgrad[cuda]' (the nvidia-cuda-nvrtc wheel), or set BOLT_NVRTC to libnvrtc's path"
MAX_SOURCE_LINES_IN_ERROR = 300

_c = ctypes
_p = ctypes.c_void_p
_size = ctypes.c_size_t
# name: (argument types); every NVRTC call returns an nvrtcResult (int)
_NVRTC = {
    "nvrtcVersion": [_c.POINTER(_c.c_int), _c.POINTER(_c.c_int)],
    "nvrtcGetNumSupportedArchs": [_c.POINTER(_c.c_int)],
    "nvrtcGetSupportedArchs": [_c.POINTER(_c.c_int)],
    "nvrtcCreateProgram": [_c.POINTER(_p), _c.c_char_p, _c.c_char_p, _c.c_int, _p, _p],
    "nvrtcCompileProgram": [_p, _c.c_int, _c.POINTER(_c.c_char_p)],
    "nvrtcGetProgramLogSize": [_p, _c.POINTER(_size)],
    "nvrtcGetProgramLog": [_p, _c.c_char_p],
    "nvrtcGetCUBINSize": [_p, _c.POINTER(_size)],
    "nvrtcGetCUBIN": [_p, _c.c_char_p],
    "nvrtcGetPTXSize": [_p, _c.POINTER(_size)],
    "nvrtcGetPTX": [_p, _c.c_char_p],
    "nvrtcDestroyProgram": [_c.POINTER(_p)],
}


def bind_functions(lib: ctypes.CDLL, table: dict[str, list], restype: Any) -> Any:
    """An object with ``lib``'s functions of ``table`` (name: argument types) as attributes, typed for ctypes."""

    class Functions:
        pass

    out = Functions()
    for name, argtypes in table.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
        setattr(out, name, fn)
    return out


def nvrtc_candidates() -> list[str]:
    """Where NVRTC may be, most specific first (see the module's docstring)."""
    found = []
    if config.nvrtc_library():
        found.append(config.nvrtc_library())
    for folder in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cu12/lib", "nvidia/cuda_nvrtc/lib"):
            found += sorted(glob.glob(os.path.join(folder or ".", sub, "libnvrtc.so*")), reverse=True)
    for home in (config.cuda_home(), "/usr/local/cuda"):
        if home:
            for lib in ("lib64", "lib"):
                found += sorted(glob.glob(os.path.join(home, lib, "libnvrtc.so*")), reverse=True)
    system = ctypes.util.find_library("nvrtc")
    if system:
        found.append(system)
    return [p for p in dict.fromkeys(found) if "builtins" not in os.path.basename(p) and not p.endswith(".alt.so")]


class NVRTC:
    """The NVRTC library: CUDA C -> cubin (or PTX). Needs no driver and no GPU."""

    def __init__(self, path: str | None = None):
        candidates = [path] if path else nvrtc_candidates()
        errors = []
        for candidate in candidates:
            try:
                lib = ctypes.CDLL(candidate)
                self.fn = bind_functions(lib, _NVRTC, ctypes.c_int)
                lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [ctypes.c_int], ctypes.c_char_p
                self.error_string = lib.nvrtcGetErrorString
                self.path = candidate
                break
            except (OSError, AttributeError) as e:
                errors.append(f"{candidate}: {e}")
        else:
            looked = "; ".join(errors) if errors else "no libnvrtc.so in wheels, CUDA_HOME or /usr/local/cuda"
            raise DeviceUnavailable(f"CUDA: NVRTC (the CUDA compiler library) was not found ({looked}). {NVRTC_FIX}")
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.fn.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = (major.value, minor.value)

    def supported_archs(self) -> list[int]:
        count = ctypes.c_int()
        if self.fn.nvrtcGetNumSupportedArchs(ctypes.byref(count)) != 0 or count.value <= 0:
            return []
        archs = (ctypes.c_int * count.value)()
        self.fn.nvrtcGetSupportedArchs(archs)
        return sorted(archs)

    def compile(self, source: str, arch: int, cubin: bool, options: list[str]) -> bytes:
        """``arch`` 90 for sm_90; ``cubin`` False gives PTX for compute_<arch> (the driver finishes it)."""
        prog = ctypes.c_void_p()
        self._check(self.fn.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"boltgrad.cu", 0, None, None),
                    "nvrtcCreateProgram")  # fmt: skip
        try:
            opts = [f"--gpu-architecture={'sm' if cubin else 'compute'}_{arch}", *options]
            array = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            result = self.fn.nvrtcCompileProgram(prog, len(opts), array)
            if result != 0:
                raise CompileError(_compile_error_message(self, prog, result, source, opts))
            size = ctypes.c_size_t()
            get_size, get = (self.fn.nvrtcGetCUBINSize, self.fn.nvrtcGetCUBIN) if cubin else (
                self.fn.nvrtcGetPTXSize, self.fn.nvrtcGetPTX)  # fmt: skip
            self._check(get_size(prog, ctypes.byref(size)), "nvrtcGet(CUBIN|PTX)Size")
            out = ctypes.create_string_buffer(size.value)
            self._check(get(prog, out), "nvrtcGet(CUBIN|PTX)")
            return out.raw
        finally:
            self.fn.nvrtcDestroyProgram(ctypes.byref(prog))

    def log(self, prog: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        self.fn.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(max(size.value, 1))
        self.fn.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            raise RuntimeError(f"CUDA: {what} failed: {self.error_string(result).decode()}")


def _compile_error_message(nvrtc: NVRTC, prog: Any, result: int, source: str, options: list[str]) -> str:
    """NVRTC's log, then the source: all of it when short, else the lines around each line the log names."""
    log = nvrtc.log(prog).strip()
    lines = source.splitlines()
    numbered = [f"{number:5d} | {line}" for number, line in enumerate(lines, start=1)]
    if len(lines) > MAX_SOURCE_LINES_IN_ERROR:
        named = sorted({int(m) for m in re.findall(r"boltgrad\.cu\((\d+)\)", log)})[:5]
        keep = sorted({i for n in named for i in range(max(n - 6, 0), min(n + 3, len(lines)))})
        numbered = [numbered[i] for i in keep] or numbered[:MAX_SOURCE_LINES_IN_ERROR]
        numbered.append(f"      ({len(lines)} lines in all; the lines around those the log names are shown)")
    head = f"CUDA: NVRTC failed ({nvrtc.error_string(result).decode()}), options {' '.join(options)}"
    return "\n".join([head, log, "source:", *numbered])


@dataclass(frozen=True)
class CUDALibrary:
    """A compiled module on disk and the block size of each of its kernels (from their ``__launch_bounds__``)."""

    path: str
    blocks: dict[str, int]


_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\((\d+)(?:,\s*\d+)?\)\s+(\w+)\s*\(")


def nvrtc_status() -> str:
    """One line on NVRTC for a report: its version and where it is, or that it is missing."""
    try:
        nvrtc = NVRTC()
    except DeviceUnavailable:
        return "NVRTC: not found either (pip install 'boltgrad[cuda]')"
    return f"NVRTC {nvrtc.version[0]}.{nvrtc.version[1]} found at {nvrtc.path}"


class NVRTCCompiler(Compiler):
    """CUDA source -> the path of a cubin (or PTX) for one architecture, through the on-disk cache."""

    OPTIONS = ["--std=c++17", "--diag-suppress=177"]  # 177: a helper of the preamble this unit does not use

    def __init__(self, arch: int, nvrtc: NVRTC | None = None):
        self.nvrtc = nvrtc or NVRTC()
        supported = self.nvrtc.supported_archs()
        # a GPU newer than this NVRTC gets PTX of the newest architecture NVRTC knows; the driver compiles it
        self.cubin = not supported or arch in supported
        self.arch = arch if self.cubin else max(a for a in supported if a <= arch) if min(supported) <= arch else arch
        self.toolchain = f"nvrtc {self.nvrtc.version[0]}.{self.nvrtc.version[1]}"

    def compile(self, source: str) -> CUDALibrary:
        kind = "cubin" if self.cubin else "ptx"
        key = compile_cache.artifact_key(source, self.toolchain, [kind, str(self.arch), *self.OPTIONS], cpu="")
        build = lambda: self._build(source)  # noqa: E731
        path = compile_cache.get_or_build(key, build, "." + kind, namespace="cuda")
        blocks = {m.group(2): int(m.group(1)) for m in _LAUNCH_BOUNDS.finditer(source)}
        return CUDALibrary(path, blocks)

    def _build(self, source: str) -> bytes:
        stats.compiles += 1
        data = self.nvrtc.compile(source, self.arch, self.cubin, self.OPTIONS)
        return data if self.cubin else data.rstrip(b"\0") + b"\0"
