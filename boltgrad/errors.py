"""The exceptions boltgrad raises beyond Python's standard kinds."""

from __future__ import annotations


class DeviceLost(RuntimeError):
    """A device stopped answering (a remote server died, a link dropped)."""


class CompileError(RuntimeError):
    """A kernel failed to compile; the message carries the compiler's output and where the source was written."""


class DeviceUnavailable(RuntimeError):
    """A device cannot be opened on this machine; the message says why and how to fix it."""
