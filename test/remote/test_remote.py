"""The REMOTE device against a real ``boltgrad device-server`` in a subprocess on loopback.

What the link costs (round trips, bytes each way), what a dead or stalled server does to the client, and
that the server survives malformed input and keeps clients apart.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import boltgrad
from boltgrad import DeviceLost, Tensor, stats
from boltgrad.device.registry import reconnect
from boltgrad.errors import CompileError, DeviceUnavailable
from boltgrad.remote import protocol as P
from boltgrad.remote.server import DeviceServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_server(*extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A device server in its own process on a free loopback port; returns it and its REMOTE device name."""
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "boltgrad.cli.main", "device-server", "--listen", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE, env=full_env, text=True,
    )  # fmt: skip
    line = proc.stderr.readline()
    match = re.search(r"listening on (\S+)", line)
    assert match, f"the server did not start: {line}"
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep its pipe drained
    return proc, f"REMOTE:{match.group(1)}"


@pytest.fixture(scope="module")
def remote():
    proc, name = start_server()
    yield name
    proc.kill()
    proc.wait()


def test_ops_compute_the_same_as_on_the_cpu(remote):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((33, 17)).astype(np.float32), rng.standard_normal((17, 9)).astype(np.float32)
    for device in ("CPU", remote):
        x, w = Tensor(a, device=device), Tensor(b, device=device)
        got = [
            ((x @ w).relu() + 1).numpy(),
            x.softmax(1).numpy(),
            x.sum(0).numpy(),
            (x[::2, 3:] * 2).exp().numpy(),
            x.argmax(1).numpy(),
            Tensor.arange(10, device=device).reshape(2, 5).T.numpy(),
        ]
        if device == "CPU":
            want = got
    for g, w_ in zip(got, want):
        assert g.dtype == w_.dtype and np.array_equal(g, w_)
    assert Tensor(a, device=remote).to("CPU").device == "CPU"


def test_a_realize_and_its_read_are_one_round_trip(remote):
    x = Tensor(np.ones((64, 64), np.float32), device=remote)
    ((x * 3).sum()).item()  # compiles
    stats.reset()
    y = Tensor(np.ones((64, 64), np.float32), device=remote)
    assert ((y * 3).sum()).item() == 3 * 64 * 64
    assert stats.round_trips == 1
    assert stats.link_bytes_out < 64 * 64 * 4 + 1024 and stats.link_bytes_in < 64


def test_jitted_training_step_is_one_round_trip_moving_only_batch_and_loss(remote):
    from boltgrad import nn, optim
    from boltgrad.nn import functional as F

    boltgrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)).to(remote)
    opt = optim.Adam(model.parameters(), lr=1e-3)

    @boltgrad.jit
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        loss.realize()
        opt.step()
        return loss

    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((32, 784)).astype(np.float32), rng.integers(0, 10, 32)) for _ in range(6)]
    losses = []
    for i, (xb, yb) in enumerate(batches):
        x, y = Tensor(xb, device=remote), Tensor(yb, device=remote)
        if i >= 3:
            stats.reset()
        losses.append(step(x, y).item())
        if i >= 3:  # replays: the batch goes in, the loss comes out, in one message each way
            assert stats.round_trips == 1
            assert stats.link_bytes_out < xb.nbytes + yb.nbytes + 2048
            assert stats.link_bytes_in < 64
    assert losses[-1] < losses[0] and all(np.isfinite(losses))


def test_compile_errors_come_back_as_compile_errors(remote):
    dev = boltgrad.Device[remote]
    with pytest.raises(CompileError, match="compile failed on the server"):
        dev.compiler.compile("this is not C;")
    assert (Tensor([1.0, 2.0], device=remote) * 2).tolist() == [2.0, 4.0]  # the link is still fine


def test_killed_server_raises_device_lost_quickly_and_the_host_keeps_working():
    proc, name = start_server()
    try:
        x = Tensor(np.ones(1000, np.float32), device=name)
        assert (x + 1).sum().item() == 2000
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        with pytest.raises(DeviceLost, match=re.escape(name)):
            (x * 2).sum().item()
        assert time.monotonic() - t0 < 5
        with pytest.raises(DeviceLost):  # stays lost, fails at once
            x.numpy()
        assert (Tensor([1.0]) + 1).item() == 2.0  # the CPU is unaffected
    finally:
        proc.kill()
        reconnect(name)


def test_stalled_server_is_told_from_a_slow_one(monkeypatch):
    monkeypatch.setenv("BOLT_REMOTE_TIMEOUT", "1")
    proc, name = start_server()
    try:
        x = Tensor(np.ones(10, np.float32), device=name)
        assert x.sum().item() == 10
        os.kill(proc.pid, signal.SIGSTOP)  # alive but silent: no answers, no heartbeats
        t0 = time.monotonic()
        with pytest.raises(DeviceLost, match="stopped answering"):
            (x * 3).sum().item()
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        reconnect(name)


def test_a_restarted_server_is_reached_after_reconnect():
    proc, name = start_server()
    port = name.rsplit(":", 1)[1]
    proc.kill()
    proc.wait()
    with pytest.raises((DeviceLost, DeviceUnavailable)):
        Tensor([1.0], device=name).item()
    reconnect(name)
    proc2 = subprocess.Popen(
        [sys.executable, "-m", "boltgrad.cli.main", "device-server", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=ROOT),
    )  # fmt: skip
    try:
        for _ in range(50):
            try:
                assert (Tensor([1.0, 2.0], device=name) * 2).tolist() == [2.0, 4.0]
                break
            except DeviceUnavailable:
                reconnect(name)
                time.sleep(0.1)
        else:
            pytest.fail("the restarted server never answered")
    finally:
        proc2.kill()
        reconnect(name)


# ---------------------------------------------------------------- security and robustness (server in-process)


@pytest.fixture
def server():
    srv = DeviceServer("127.0.0.1:0", token="s3cret", memory_cap=1 << 20)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def _connect(srv: DeviceServer) -> socket.socket:
    host, port = srv.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _hello(sock: socket.socket, token: str = "s3cret") -> tuple[int, bytes]:
    P.send_frame(sock, P.HELLO, P.pack_str(token) + P.pack_str(""))
    return P.recv_frame(sock)


def _batch(sock: socket.socket, *commands: bytes) -> tuple[int, bytes]:
    P.send_frame(sock, P.BATCH, b"".join(commands))
    return P.recv_frame(sock)


def test_a_client_without_the_token_is_refused(server, monkeypatch):
    kind, reply = _hello(_connect(server), token="wrong")
    assert kind == P.ERROR and "token" in P.Reader(reply).string()
    name = f"REMOTE:{server.address}"
    monkeypatch.setenv("BOLT_REMOTE_TOKEN", "nope")
    with pytest.raises(DeviceUnavailable, match="token"):
        Tensor([1.0], device=name)
    reconnect(name)
    monkeypatch.setenv("BOLT_REMOTE_TOKEN", "s3cret")
    assert (Tensor([1.0], device=name) + 1).item() == 2.0
    reconnect(name)


def test_non_loopback_address_needs_a_token():
    with pytest.raises(ValueError, match="needs a token"):
        DeviceServer("0.0.0.0:0")


def test_version_mismatch_is_a_clear_error(server):
    sock = _connect(server)
    sock.sendall(P.HEADER.pack(P.MAGIC, P.VERSION + 1, P.HELLO, 0))
    kind, reply = P.recv_frame(sock)
    assert kind == P.ERROR and "protocol version" in P.Reader(reply).string()


def test_clients_cannot_name_each_others_buffers_and_memory_is_capped(server):
    a, b = _connect(server), _connect(server)
    assert _hello(a)[0] == P.WELCOME and _hello(b)[0] == P.WELCOME
    kind, _ = _batch(a, P.pack_command(P.ALLOC, 7, 16), P.pack_command(P.WRITE, 7, 0, 4, tail=b"abcd"))
    assert kind == P.RESULT
    kind, reply = _batch(b, P.pack_command(P.READ, 7, 4))
    assert kind == P.ERROR and "no buffer 7" in P.Reader(reply).string()
    kind, reply = _batch(a, P.pack_command(P.READ, 7, 4))
    assert kind == P.RESULT and bytes(reply) == b"abcd"
    kind, reply = _batch(b, P.pack_command(P.ALLOC, 1, 2 << 20))
    assert kind == P.ERROR and "cap" in P.Reader(reply).string()
    kind, reply = _batch(a, P.pack_command(P.WRITE, 7, 10, 10, tail=bytes(10)))
    assert kind == P.ERROR and "writing bytes 10..20 of a buffer of 16" in P.Reader(reply).string()


def test_fuzzed_messages_never_take_the_server_down(server):
    rng = random.Random(0)
    valid = [P.pack_command(P.ALLOC, 1, 64), P.pack_command(P.WRITE, 1, 0, 8, tail=bytes(8)),
             P.pack_command(P.READ, 1, 8), P.pack_command(P.FREE, 1), P.pack_command(P.GRAPH_RUN, 3),
             P.pack_command(P.PROGRAM, 2, 9, tail=P.pack_str("k")), P.pack_command(P.SYNC)]  # fmt: skip
    sock = _connect(server)
    assert _hello(sock)[0] == P.WELCOME
    cases = 0
    for i in range(3000):
        mode = i % 4
        if mode == 0:  # commands cut at random or with a random byte flipped
            payload = bytearray(b"".join(rng.choice(valid) for _ in range(rng.randint(1, 6))))
            if payload and rng.random() < 0.5:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
            else:
                payload = payload[: rng.randrange(len(payload) + 1)]
            kind, _ = _batch(sock, bytes(payload))
            assert kind in (P.RESULT, P.ERROR)
        elif mode == 1:  # random bytes as a batch
            kind, _ = _batch(sock, rng.randbytes(rng.randint(0, 200)))
            assert kind in (P.RESULT, P.ERROR)
        elif mode == 2 and i % 40 == 2:  # garbage on a fresh connection: bad magic, truncated or huge headers
            s = _connect(server)
            junk = rng.choice([
                rng.randbytes(rng.randint(0, 20)),
                P.HEADER.pack(P.MAGIC, P.VERSION, P.BATCH, 1 << 31),
                P.HEADER.pack(P.MAGIC, P.VERSION, 99, 0),
                P.HEADER.pack(P.MAGIC, P.VERSION, P.HELLO, 3),
            ])  # fmt: skip
            s.sendall(junk)
            s.close()
        elif mode == 3:  # ids that exist nowhere
            kind, reply = _batch(sock, P.pack_command(P.GRAPH_VAR, rng.randrange(1 << 32), 0, 0, 1))
            assert kind == P.ERROR
        cases += 1
    assert cases == 3000
    fresh = _connect(server)  # still serving
    assert _hello(fresh)[0] == P.WELCOME
    assert _batch(fresh, P.pack_command(P.ALLOC, 5, 8), P.pack_command(P.READ, 5, 8))[0] == P.RESULT


def test_port_probes_are_shrugged_off(server):
    for _ in range(20):
        _connect(server).close()
    assert _hello(_connect(server))[0] == P.WELCOME


def test_link_model_adds_latency(server, monkeypatch):
    monkeypatch.setenv("BOLT_REMOTE_TOKEN", "s3cret")
    monkeypatch.setenv("BOLT_REMOTE_LINK", "latency_us=20000")
    name = f"REMOTE:{server.address}"
    reconnect(name)
    x = Tensor([1.0, 2.0], device=name)
    x.sum().item()
    t0 = time.monotonic()
    assert x.sum().item() == 3.0  # one round trip: 20 ms each way
    assert time.monotonic() - t0 >= 0.04
    reconnect(name)


def test_the_op_suite_passes_on_remote(remote):
    """Every op test that runs per device runs on REMOTE too (the server has a CPU behind it)."""
    suite = [os.path.join(ROOT, "test", "ops", name) for name in ("test_ops.py", "test_movement.py", "test_reduce.py")]
    env = dict(os.environ, BOLT_TEST_REMOTE=remote, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "REMOTE", *suite],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_weights_are_not_uploaded_again_after_a_reconnect(server, monkeypatch):
    monkeypatch.setenv("BOLT_REMOTE_TOKEN", "s3cret")
    name = f"REMOTE:{server.address}"
    server.memory_cap = 64 << 20
    weights = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    reconnect(name)
    stats.reset()
    first = Tensor(weights, device=name)
    assert first.sum().item() == pytest.approx(float(weights.sum()), rel=1e-4)
    assert stats.link_bytes_out > weights.nbytes
    reconnect(name)  # a new connection to the same server
    stats.reset()
    again = Tensor(weights, device=name)
    assert np.array_equal(again.numpy(), weights)
    assert stats.link_bytes_out < 4096  # the hash went over, not the 2 MiB
    reconnect(name)


def test_evicted_content_is_sent_again(monkeypatch):
    srv = DeviceServer("127.0.0.1:0", token="t", memory_cap=64 << 20, upload_cache=3 << 20)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("BOLT_REMOTE_TOKEN", "t")
    name = f"REMOTE:{srv.address}"
    try:
        rng = np.random.default_rng(2)
        a, b = (rng.standard_normal((512, 1024)).astype(np.float32) for _ in range(2))
        Tensor(a, device=name).sum().item()
        Tensor(b, device=name).sum().item()  # the 3 MiB cache drops a
        stats.reset()
        assert np.array_equal(Tensor(a, device=name).numpy(), a)  # offered as a hash, asked for, sent
        assert stats.round_trips == 2 and stats.link_bytes_out > a.nbytes
    finally:
        reconnect(name)
        srv.shutdown()


def test_tls(tmp_path, monkeypatch):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr[-200:]!r}")
    srv = DeviceServer("127.0.0.1:0", tls=(cert, key))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    name = f"REMOTE:{srv.address}"
    try:
        with pytest.raises(DeviceUnavailable, match="BOLT_REMOTE_TLS"):
            Tensor([1.0], device=name)  # plain text to a TLS server
        reconnect(name)
        monkeypatch.setenv("BOLT_REMOTE_TLS", cert)
        assert (Tensor([1.0, 2.0], device=name) * 2).tolist() == [2.0, 4.0]
    finally:
        reconnect(name)
        srv.shutdown()


def test_training_survives_a_server_restart_through_its_checkpoint(tmp_path, monkeypatch, capsys):
    """Kill the server mid-epoch: the run stops with DeviceLost; a new server and --resume finish it with the
    very weights of a run on the local CPU that was never interrupted (the same kernels run behind REMOTE)."""
    from helpers import write_mnist

    from boltgrad.cli import train as train_cli
    from boltgrad.cli.main import main
    from boltgrad.nn.state import safe_load

    rng = np.random.default_rng(0)
    for split, n in (("train", 256), ("test", 64)):
        write_mnist(tmp_path, split, n=n, images=rng.integers(0, 255, (n, 28, 28)).astype(np.uint8),
                    labels=rng.integers(0, 10, n))  # fmt: skip

    def args(checkpoint, device, *extra):
        return ["train", "fashion-mnist", "--data", str(tmp_path), "--checkpoint", str(checkpoint), "--device",
                device, "--batch-size", "32", "--epochs", "2", "--checkpoint-every", "3", *extra]  # fmt: skip

    assert main(args(tmp_path / "local.safetensors", "CPU")) == 0
    proc, name = start_server()
    real_make_batch = train_cli.make_batch
    count = {"n": 0}

    def make_batch_then_kill(*a, **kw):
        count["n"] += 1
        if count["n"] == 12:  # epoch 2, step 4
            proc.kill()
            proc.wait()
        return real_make_batch(*a, **kw)

    monkeypatch.setattr(train_cli, "make_batch", make_batch_then_kill)
    ckpt = tmp_path / "remote.safetensors"
    t0 = time.monotonic()
    assert main(args(ckpt, name)) == 1
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert "stopped answering" in err and "--resume" in err
    monkeypatch.setattr(train_cli, "make_batch", real_make_batch)

    proc2, name2 = start_server()
    try:
        assert main(args(ckpt, name2, "--resume")) == 0
    finally:
        proc2.kill()
        reconnect(name2)
        reconnect(name)
    want, got = safe_load(str(tmp_path / "local.safetensors")), safe_load(str(ckpt))
    for key in want:
        assert np.array_equal(want[key].numpy(), got[key].numpy()), key


def test_unix_socket(tmp_path):
    path = str(tmp_path / "bolt.sock")
    srv = DeviceServer(f"unix:{path}")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    name = f"REMOTE:unix:{path}"
    try:
        assert (Tensor([1.0, 2.0], device=name) + 1).tolist() == [2.0, 3.0]
    finally:
        reconnect(name)
        srv.shutdown()


def test_frame_reader_splits_and_joins_frames():
    """Several frames in one receive, one frame over many, and a frame larger than the reader's buffer."""
    a, b = socket.socketpair()
    b.settimeout(10)
    big = bytes(range(256)) * 1024  # 256 KiB: past the reader's first buffer
    tiny = bytes(P.FrameBuffer(b"xyz").frame(P.NEED))

    def write() -> None:
        P.send_frame(a, P.HEARTBEAT)
        P.send_frame(a, P.RESULT, b"abc")
        a.sendall(P.FrameBuffer(big).frame(P.RESULT))
        for i in range(len(tiny)):  # one byte at a time
            a.sendall(tiny[i : i + 1])
        a.sendall(P.HEADER.pack(b"XX", P.VERSION, P.RESULT, 0))

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reader = P.FrameReader(b)
        assert reader.recv()[0] == P.HEARTBEAT
        kind, payload = reader.recv()
        assert kind == P.RESULT and bytes(payload) == b"abc"
        kind, payload = reader.recv()
        assert kind == P.RESULT and bytes(payload) == big
        kind, payload = reader.recv()
        assert kind == P.NEED and bytes(payload) == b"xyz"
        with pytest.raises(P.ProtocolError, match="magic"):
            reader.recv()
    finally:
        writer.join()
        a.close()
        b.close()


def test_a_free_queued_while_a_batch_is_on_its_way_is_sent_with_the_next(remote, monkeypatch):
    """The garbage collector may free a buffer (queueing its FREE) in the middle of a request."""
    dev = boltgrad.Device[remote]
    link = dev.link
    handle = dev.allocator.alloc(64)
    real_request = link._request
    pushed = []

    def request_that_frees(*args, **kwargs):
        if not pushed:
            pushed.append(handle)
            dev.allocator.free(handle, 64)  # queued into the other frame
        return real_request(*args, **kwargs)

    monkeypatch.setattr(link, "_request", request_that_frees)
    dev.synchronize()
    monkeypatch.undo()
    assert link.queued == 1
    dev.synchronize()  # sends the FREE: the server frees buffer `handle`
    with pytest.raises(RuntimeError, match=f"no buffer {handle}"):
        link.push(P.READ, handle, 4)
        link.flush("read")


# ---------------------------------------------------------------- compiling on the client


def test_compile_on_the_client_sends_the_library_and_the_server_compiles_nothing(monkeypatch):
    from boltgrad.remote import server as server_module

    def no_compiling(self, library_id, source):
        raise AssertionError("the server compiled a kernel")

    monkeypatch.setattr(server_module.Session, "compile", no_compiling)
    srv = DeviceServer("127.0.0.1:0")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    name = f"REMOTE:{srv.address}?compile=client"
    try:
        rng = np.random.default_rng(3)
        a = rng.standard_normal((9, 13)).astype(np.float32)
        got = (Tensor(a, device=name).exp() * 3 + 1).sum(1).numpy()
        assert np.allclose(got, (np.exp(a) * 3 + 1).sum(1), rtol=1e-5)
        assert boltgrad.Device[name].compiler.libraries  # compiled here, loaded there
        plain = f"REMOTE:{srv.address}"
        with pytest.raises(CompileError, match="the server compiled a kernel"):  # the default compiles there
            (Tensor(a, device=plain) * 5 - 2).sum().item()
    finally:
        reconnect(name)
        reconnect(f"REMOTE:{srv.address}")
        srv.shutdown()


def test_a_client_library_for_another_machine_or_a_non_cpu_device_is_refused(server):
    sock = _connect(server)
    assert _hello(sock)[0] == P.WELCOME
    library = b"\x7fELF" + bytes(60)  # a header is all the checks before loading look at

    def load(tag: str, binary: bytes) -> tuple[int, str]:
        P.send_frame(sock, P.LOAD, struct.pack("<I", 1) + P.pack_str(tag) + binary)
        kind, reply = P.recv_frame(sock)
        return kind, P.Reader(reply).string(limit=4096) if kind == P.ERROR else ""

    kind, message = load("Plan9-mips-musl-cpu000000000000", library)
    assert kind == P.ERROR and "the client compiled for Plan9-mips" in message and "drop ?compile=client" in message
    kind, message = load(P.machine_tag(), b"#!/bin/sh\nrm -rf /\n")
    assert kind == P.ERROR and "not a shared library" in message
    null = _connect(server)  # a session on a device that is not the CPU
    P.send_frame(null, P.HELLO, P.pack_str("s3cret") + P.pack_str("NULL"))
    assert P.recv_frame(null)[0] == P.WELCOME
    P.send_frame(null, P.LOAD, struct.pack("<I", 1) + P.pack_str(P.machine_tag()) + library)
    kind, reply = P.recv_frame(null)
    assert kind == P.ERROR and "only a CPU device loads" in P.Reader(reply).string(limit=4096)


def test_compile_on_the_client_is_refused_up_front_where_it_cannot_work(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown option 'compile=elsewhere'.*\?compile=client"):
        boltgrad.Device["REMOTE:127.0.0.1:1?compile=elsewhere"]
    srv = DeviceServer("127.0.0.1:0", client_binaries=False)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    name = f"REMOTE:{srv.address}?compile=client"
    try:
        with pytest.raises(DeviceUnavailable, match="refuses binaries compiled by clients.*drop \\?compile=client"):
            boltgrad.Device[name]
        reconnect(name)
        assert (Tensor([1.0, 2.0], device=f"REMOTE:{srv.address}") * 2).tolist() == [2.0, 4.0]  # compiled there
    finally:
        reconnect(name)
        reconnect(f"REMOTE:{srv.address}")
        srv.shutdown()
