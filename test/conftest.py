"""Suite-wide settings: keep the 2-core CI machine from oversubscribing, and never touch the user's cache.

These run when pytest loads this file, before any test module imports boltgrad.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# boltgrad's CPU runtime and PyTorch (the oracle) would otherwise each start one thread per core.
os.environ.setdefault("BOLT_THREADS", "2")

# Kernels compiled by the tests go to a folder of this session, unless the caller chose one (CI passes a fresh one).
_session_cache_dir: str | None = None
if not os.environ.get("BOLT_CACHE_DIR"):
    _session_cache_dir = tempfile.mkdtemp(prefix="boltgrad-test-cache-")
    os.environ["BOLT_CACHE_DIR"] = _session_cache_dir

try:
    import torch
except ImportError:  # the oracle tests skip without torch
    torch = None
if torch is not None:
    torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test (seconds to minutes); deselect with -m 'not slow'")


def pytest_unconfigure(config):
    if _session_cache_dir is not None:
        shutil.rmtree(_session_cache_dir, ignore_errors=True)
