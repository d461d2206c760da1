"""An LLM behind a device server: weights go over once, and a replayed decode step sends back one token id."""

from __future__ import annotations

import os
import sys
import threading

import pytest

import boltgrad.llm as llm
from boltgrad import stats
from boltgrad.device.registry import reconnect
from boltgrad.remote import protocol as P
from boltgrad.remote.server import DeviceServer

pytest.importorskip("torch")
pytest.importorskip("transformers", reason="the tiny model is made with transformers")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "llm"))
from llm_models import make_tiny  # noqa: E402

PROMPT = [1, 17, 923, 5, 301, 77, 2, 640]


def test_a_replayed_decode_step_is_one_round_trip_bringing_back_one_token_id(tmp_path):
    folder = os.fspath(tmp_path)
    make_tiny("llama", folder)
    local, _ = llm.load(folder, ctx=64, progress=False)
    want = [t.id for t in llm.generate(local, None, PROMPT, 8)]
    srv = DeviceServer("127.0.0.1:0")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    name = f"REMOTE:{srv.address}"
    try:
        model, _ = llm.load(folder, device=name, ctx=64, progress=False)
        stream = llm.generate(model, None, PROMPT, 8)
        got = [next(stream).id for _ in range(3)]  # the prefill, then the decode step run plainly and recorded
        for _ in range(5):  # replays
            stats.reset()
            got.append(next(stream).id)
            assert stats.round_trips == 1
            assert stats.link_bytes_in == P.HEADER.size + 8  # the token id, an int64
            assert stats.link_bytes_out < 4096  # the position and buffer patches, no weights, no logits
        assert got == want
    finally:
        reconnect(name)
        srv.shutdown()
