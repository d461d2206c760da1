"""The frameworks a workload runs in: boltgrad and its peers, one adapter each.

An adapter knows how to import its framework, turn a numpy array into a realized input, run a workload's
function to a finished result (realize and wait, for the lazy ones), read the result back, and which
environment its process needs. Every peer runs in a process of its own (see ``run.py``), so thread pools and
library settings never meet.

Adding a peer is a subclass and a line in ``PEERS``; its workload functions go under its ``family`` key in
``workloads.py`` (or it uses the shared ``"tensor"`` ones).
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from collections.abc import Callable
from typing import Any

# OpenBLAS reads these; set on this machine they pick a slower kernel set for numpy's BLAS.
OPENBLAS_SLOW_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SOURCE_TREE = "source tree"  # boltgrad's version when it runs from the repository, not installed


class Peer:
    name = ""  # the table's column
    module = ""  # what `import` loads; its import time is what the "import" row measures
    family = ""  # the key of the workload functions it runs
    has_kernel_cache = False  # True: a cold and a warm first call differ (a compile is cached on disk)
    install_hint = ""

    def unavailable_reason(self) -> str | None:
        """Why this peer cannot run here, or None; must not import the framework (the parent stays light)."""
        if importlib.util.find_spec(self.module) is None:
            return f"{self.module} is not installed ({self.install_hint})"
        return None

    def process_env(self, env: dict[str, str], scratch: str, cache_tag: str, threads: int | None) -> dict[str, str]:
        """The environment of this peer's processes; ``cache_tag`` names a kernel cache that is fresh when new."""
        return env

    def setup(self) -> None:
        self.lib = importlib.import_module(self.module)

    def to_input(self, array: Any) -> Any:
        raise NotImplementedError

    def runner(self, fn: Callable[..., Any], inputs: list[Any]) -> Callable[[], Any]:
        """A call that builds the workload's result from ``inputs`` and returns once it is computed."""
        return lambda: fn(*inputs)

    def to_numpy(self, out: Any) -> Any:
        return out.numpy()

    def version(self) -> str:
        return str(getattr(self.lib, "__version__", "?"))

    def info(self) -> dict[str, Any]:
        return {}

    def counters(self) -> dict[str, int]:
        """Framework counters (kernels launched, compiles) whose difference across a call says what it did."""
        return {}


class BoltgradPeer(Peer):
    name = module = family = "boltgrad"
    has_kernel_cache = True
    install_hint = "run the bench from the repository root"

    def process_env(self, env, scratch, cache_tag, threads):
        env = dict(env)
        env["BOLT_CACHE_DIR"] = f"{scratch}/boltgrad-cache-{cache_tag}"
        if threads is not None:
            env["BOLT_THREADS"] = str(threads)
        # Run from the source tree, boltgrad has no bytecode cached while PYTHONDONTWRITEBYTECODE is set, and
        # every import would compile it again; an installed package has its .pyc files. Cache them in scratch.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = f"{scratch}/pycache"
        return env

    def to_input(self, array):
        return self.lib.Tensor(array).realize()

    def runner(self, fn, inputs):
        bg = self.lib

        def run_once():
            out = fn(*inputs)
            out.realize()
            bg.synchronize()
            return out

        return run_once

    def version(self) -> str:
        try:
            from importlib.metadata import PackageNotFoundError, version

            return version("boltgrad")
        except (ImportError, PackageNotFoundError):
            return str(getattr(self.lib, "__version__", SOURCE_TREE))

    def info(self):
        info: dict[str, Any] = {}
        try:  # internals: a bench must not break when they move, so each is optional
            from boltgrad.device.registry import get_device

            cpu = get_device("CPU")
            info["threads"] = cpu.threads
            info["compiler"] = " ".join(cpu.compiler.command)
            info["compiler_version"] = cpu.compiler.version.splitlines()[0]
            info["kernel_flags"] = " ".join(cpu.compiler.flags)
        except Exception as e:  # noqa: BLE001 - report, never fail
            info["info_error"] = f"{type(e).__name__}: {e}"
        return info

    def counters(self):
        return dict(self.lib.stats.snapshot())


class NumpyPeer(Peer):
    name = module = family = "numpy"
    install_hint = "pip install numpy"

    def process_env(self, env, scratch, cache_tag, threads):
        return {k: v for k, v in env.items() if k not in OPENBLAS_SLOW_VARS}

    def to_input(self, array):
        return array

    def to_numpy(self, out):
        return self.lib.asarray(out)

    def info(self):
        return {"blas": _blas_name(self.lib)}


def _blas_name(np: Any) -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - older numpy, other layouts
        return "?"


class TorchPeer(Peer):
    module = family = "torch"
    install_hint = "pip install torch"

    def __init__(self, threads: int):
        self.threads = threads
        self.name = f"torch-{threads}t"

    def setup(self):
        super().setup()
        self.lib.set_num_threads(self.threads)
        self.lib.set_grad_enabled(False)  # plain inference: no autograd bookkeeping in the timed calls

    def to_input(self, array):
        return self.lib.from_numpy(array)

    def info(self):
        return {"threads": self.lib.get_num_threads()}


class TinygradPeer(Peer):
    name = module = family = "tinygrad"
    has_kernel_cache = True
    install_hint = "pip install tinygrad==0.14.0; it compiles with clang: apt-get install clang"

    def unavailable_reason(self):
        reason = super().unavailable_reason()
        if reason is None and shutil.which("clang") is None:
            reason = f"tinygrad's CPU device needs clang, which is not on PATH ({self.install_hint})"
        return reason

    def process_env(self, env, scratch, cache_tag, threads):
        env = dict(env)
        env["DEV"] = "CPU"  # tinygrad 0.14 picks its device from DEV (read at import); CPU renders C for clang
        env["CACHEDB"] = f"{scratch}/tinygrad-cache-{cache_tag}.db"  # its compiled-kernel cache, fresh per run
        return env

    def to_input(self, array):
        return self.lib.Tensor(array).realize()

    def runner(self, fn, inputs):
        device = self.lib.Device

        def run_once():
            out = fn(*inputs).realize()
            device[out.device].synchronize()
            return out

        return run_once

    def version(self):
        from importlib.metadata import version

        return version("tinygrad")

    def info(self):
        device = self.lib.Device
        return {"device": device.DEFAULT, "renderer": type(device[device.DEFAULT].renderer).__name__}


PEERS: list[Peer] = [BoltgradPeer(), NumpyPeer(), TorchPeer(1), TorchPeer(2), TinygradPeer()]


def peer_named(name: str) -> Peer:
    for peer in PEERS:
        if peer.name == name:
            return peer
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(p.name for p in PEERS)}")
