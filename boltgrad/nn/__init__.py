"""boltgrad.nn: layers and functions for building networks (``boltgrad.nn.functional`` is torch's ``F``)."""

from . import functional

__all__ = ["functional"]
