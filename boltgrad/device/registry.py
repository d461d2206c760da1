"""Devices by name: ``"CPU"``, ``"python"``, ``"NULL"``. Names are case-insensitive; each device is opened once.

Each device lives in a module of this package named after it (``cpu.py`` holds CPU); a new backend is a new
file and a line in ``_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .. import config
from ..errors import DeviceUnavailable
from .base import Device

_MODULES = {"CPU": ("cpu", "CPUDevice"), "PYTHON": ("python", "PythonDevice"), "NULL": ("null", "NullDevice")}
_MODULES["DISK"] = ("disk", "DiskDevice")  # files mapped read-only; runs no kernels
_MODULES["REMOTE"] = ("remote", "RemoteDevice")  # a device behind `boltgrad device-server`
_MODULES["PYTHON_GPU"] = ("python", "PythonGPUDevice")  # GPU-lowered kernels run with GPU semantics in Python
_MODULES["CUDA"] = ("cuda", "CUDADevice")  # NVIDIA GPUs: NVRTC and the driver API through ctypes
_opened: dict[str, Device] = {}


def canonicalize(name: str) -> str:
    """``"cpu"`` -> ``"CPU"``, ``"cpu:0"`` -> ``"CPU"``; raises ValueError for an unknown device."""
    if not isinstance(name, str):
        raise TypeError(f"device must be a string like 'CPU', got {type(name).__name__}")
    base, _, index = name.strip().partition(":")
    base = base.upper()
    if base not in _MODULES:
        raise ValueError(f"unknown device {name!r}; known devices: {', '.join(sorted(_MODULES))}")
    return base if index in ("", "0") else f"{base}:{index}"


def get_device(name: str) -> Device:
    dev = _opened.get(name)
    if dev is None:
        name = canonicalize(name)
        dev = _opened.get(name)
        if dev is None:
            module_name, class_name = _MODULES[name.partition(":")[0]]
            module = importlib.import_module(f"{__package__}.{module_name}")
            dev = getattr(module, class_name)(name)
            _opened[name] = dev
    return dev


def reconnect(name: str) -> None:
    """Forget an opened device, so the next use opens it anew (a REMOTE device after its server restarted).
    Tensors on the old connection stay unusable: their buffers were on the server that went away."""
    _opened.pop(canonicalize(name), None)


@dataclass
class DeviceStatus:
    name: str
    ok: bool
    detail: str  # what works, or why it does not
    fix: str = ""  # the exact fix when it does not work


def probe(name: str) -> DeviceStatus:
    """Try a device end to end far enough to say whether it works, without raising."""
    try:
        dev = get_device(name)
        check = getattr(dev, "self_check", None)
        detail = check() if check is not None else "available"
        return DeviceStatus(name, True, detail)
    except DeviceUnavailable as e:
        msg = str(e)
        fix = msg.split("fix:", 1)[1].strip() if "fix:" in msg else ""
        return DeviceStatus(name, False, msg.split("fix:", 1)[0].strip(), fix)
    except Exception as e:  # a broken device must not break the report on the others
        return DeviceStatus(name, False, f"{type(e).__name__}: {e}")


def known_devices() -> list[str]:
    return list(_MODULES)


class _DefaultDevice:
    """``boltgrad.Device.DEFAULT`` names the default device (BOLT_DEVICE, else CPU); assignable."""

    def __init__(self) -> None:
        self._default: str | None = None

    @property
    def DEFAULT(self) -> str:  # noqa: N802 - the public name follows the convention of a constant
        if self._default is None:
            self._default = canonicalize(config.default_device())
        return self._default

    @DEFAULT.setter
    def DEFAULT(self, name: str) -> None:  # noqa: N802
        self._default = canonicalize(name)

    def canonicalize(self, name: str | None) -> str:
        return self.DEFAULT if name is None else canonicalize(name)

    def __getitem__(self, name: str) -> Device:
        return get_device(name)

    def reconnect(self, name: str) -> None:
        reconnect(name)


Device_ = _DefaultDevice()
