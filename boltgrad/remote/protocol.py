"""The wire format between a REMOTE device (client) and ``boltgrad device-server``.

Every message is a frame: a fixed header, then ``length`` bytes of payload.

    header  = magic "BG" | version u8 | kind u8 | length u32      (little endian, 8 bytes)

The client speaks first with HELLO and the server answers WELCOME or ERROR. After that the client sends one
request at a time (BATCH or COMPILE) and reads frames until the answer (RESULT, COMPILED, NEED or ERROR);
while the server works on a long request it sends HEARTBEAT frames, so the client tells a slow compile from a
dead link.

Large uploads (weights) are kept on the server, up to a cap, by the sha256 of their content, which the server
computes itself (a client cannot plant content under another's hash). A client that uploaded some content to
this server instance before (the WELCOME names the instance) sends WRITE_CACHED, the hash instead of the
bytes: a client that reconnects does not send its weights again. Before running a batch the server checks
every WRITE_CACHED; if it lacks any content it runs nothing and answers NEED with the missing hashes, and the
client sends the batch again with those bytes.

A BATCH is a list of commands, each an opcode byte and fixed fields (``COMMANDS``), some followed by bytes
whose length a field gives. Buffers, libraries, programs and graphs are named by ids the client picks, so a
command never waits for an answer: everything between two reads of device memory is one round trip.

Nothing here trusts its input: ``decode_batch`` checks every length against what is left of the payload and
raises ``ProtocolError`` on anything malformed.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAGIC = b"BG"
HEADER = struct.Struct("<2sBBI")
MAX_FRAME = 64 << 20  # bytes of payload in one frame; uploads larger than this go in several batches
MAX_BUFFERS_PER_LAUNCH = 256
MAX_VARS_PER_LAUNCH = 256
MAX_LAUNCHES_PER_GRAPH = 1 << 16
MAX_NAME = 256

# frame kinds
HELLO, WELCOME, BATCH, RESULT, COMPILE, COMPILED, HEARTBEAT, ERROR, NEED = range(1, 10)
KIND_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", BATCH: "BATCH", RESULT: "RESULT", COMPILE: "COMPILE",
              COMPILED: "COMPILED", HEARTBEAT: "HEARTBEAT", ERROR: "ERROR", NEED: "NEED"}  # fmt: skip
CACHED_UPLOAD_MIN = 1 << 20  # uploads at least this large are kept by content hash on the server
HASH_SIZE = 32  # sha256


class ProtocolError(ValueError):
    """A malformed, truncated or oversized message."""


# ---------------------------------------------------------------- frames


def send_frame(sock: socket.socket, kind: int, payload: bytes | bytearray | memoryview = b"") -> int:
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes is over the limit of {MAX_FRAME}")
    header = HEADER.pack(MAGIC, VERSION, kind, len(payload))
    sock.sendall(header + bytes(payload) if len(payload) < 65536 else header)
    if len(payload) >= 65536:
        sock.sendall(payload)
    return HEADER.size + len(payload)


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("the connection closed")
        got += k
    return out


def recv_frame(sock: socket.socket) -> tuple[int, bytearray]:
    """One frame: (kind, payload). Raises ProtocolError for a bad header, ConnectionError when the peer left."""
    magic, version, kind, length = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != MAGIC:
        raise ProtocolError(f"not a boltgrad device-server stream (magic {bytes(magic)!r})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, but this side speaks version {VERSION}; upgrade the older")
    if kind not in KIND_NAMES:
        raise ProtocolError(f"unknown frame kind {kind}")
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {MAX_FRAME}")
    return kind, recv_exact(sock, length)


# ---------------------------------------------------------------- strings and small records


def pack_str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<I", len(raw)) + raw


class Reader:
    """Reads fields from a payload, checking every length against what is left."""

    def __init__(self, data: bytes | bytearray | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.left():
            raise ProtocolError(f"truncated message: {n} bytes wanted, {self.left()} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple[Any, ...]:
        return st.unpack(self.take(st.size))

    def string(self, limit: int = MAX_NAME) -> str:
        (n,) = self.unpack(_U32)
        if n > limit:
            raise ProtocolError(f"string of {n} bytes is over the limit of {limit}")
        try:
            return bytes(self.take(n)).decode()
        except UnicodeDecodeError:
            raise ProtocolError("a string is not valid UTF-8") from None


_U32 = struct.Struct("<I")


# ---------------------------------------------------------------- batch commands

(ALLOC, FREE, WRITE, READ, PROGRAM, LAUNCH, GRAPH, GRAPH_BUFFER, GRAPH_VAR, GRAPH_RUN, GRAPH_FREE, SYNC,
 WRITE_CACHED) = range(1, 14)  # fmt: skip

# opcode -> (name, fields after the opcode)
COMMANDS: dict[int, tuple[str, struct.Struct]] = {
    ALLOC: ("alloc", struct.Struct("<IQ")),  # buffer id, bytes
    FREE: ("free", struct.Struct("<I")),  # buffer id
    WRITE: ("write", struct.Struct("<IQI")),  # buffer id, offset, n; then n bytes
    READ: ("read", struct.Struct("<IQ")),  # buffer id, bytes (from offset 0); the bytes come back in RESULT
    PROGRAM: ("program", struct.Struct("<II")),  # program id, library id; then a string: the kernel's name
    LAUNCH: ("launch", struct.Struct("<IqqHH")),  # program id, size, cost, n buffers, n vars; then ids, values
    GRAPH: ("graph", struct.Struct("<II")),  # graph id, n launches; then each launch's fields as LAUNCH's
    GRAPH_BUFFER: ("graph_buffer", struct.Struct("<IIHI")),  # graph id, launch, slot, buffer id
    GRAPH_VAR: ("graph_var", struct.Struct("<IIHq")),  # graph id, launch, slot, value
    GRAPH_RUN: ("graph_run", struct.Struct("<I")),  # graph id
    GRAPH_FREE: ("graph_free", struct.Struct("<I")),  # graph id
    SYNC: ("sync", struct.Struct("<")),
    WRITE_CACHED: ("write_cached", struct.Struct("<IQI32s")),  # buffer id, offset, n, sha256 of the n bytes
}
_OPCODE = struct.Struct("<B")
_LAUNCH_FIELDS = COMMANDS[LAUNCH][1]


@dataclass(frozen=True)
class LaunchSpec:
    program: int
    size: int
    cost: int
    buffers: tuple[int, ...]
    var_values: tuple[int, ...]


def pack_launch(spec: LaunchSpec) -> bytes:
    return (
        _LAUNCH_FIELDS.pack(spec.program, spec.size, spec.cost, len(spec.buffers), len(spec.var_values))
        + struct.pack(f"<{len(spec.buffers)}I", *spec.buffers)
        + struct.pack(f"<{len(spec.var_values)}q", *spec.var_values)
    )


def _read_launch(r: Reader) -> LaunchSpec:
    program, size, cost, n_bufs, n_vars = r.unpack(_LAUNCH_FIELDS)
    if n_bufs > MAX_BUFFERS_PER_LAUNCH or n_vars > MAX_VARS_PER_LAUNCH:
        raise ProtocolError(f"a launch with {n_bufs} buffers and {n_vars} variables is over the limits")
    if size < 0 or cost < 0:
        raise ProtocolError(f"a launch with negative size {size} or cost {cost}")
    buffers = struct.unpack(f"<{n_bufs}I", r.take(4 * n_bufs))
    values = struct.unpack(f"<{n_vars}q", r.take(8 * n_vars))
    return LaunchSpec(program, size, cost, buffers, values)


def pack_command(opcode: int, *fields: Any, tail: bytes | memoryview = b"") -> bytes:
    return _OPCODE.pack(opcode) + COMMANDS[opcode][1].pack(*fields) + bytes(tail)


def decode_batch(payload: bytes | bytearray | memoryview) -> list[tuple[int, tuple[Any, ...], Any]]:
    """The commands of a BATCH payload: (opcode, fields, extra) with extra the bytes, name or launches."""
    r = Reader(payload)
    out: list[tuple[int, tuple[Any, ...], Any]] = []
    while r.left():
        (opcode,) = r.unpack(_OPCODE)
        if opcode not in COMMANDS:
            raise ProtocolError(f"unknown command {opcode} at byte {r.pos - 1}")
        if opcode == LAUNCH:
            out.append((opcode, (), _read_launch(r)))
            continue
        fields = r.unpack(COMMANDS[opcode][1])
        extra: Any = None
        if opcode == WRITE:
            extra = r.take(fields[2])
        elif opcode == PROGRAM:
            extra = r.string()
        elif opcode == GRAPH:
            if fields[1] > MAX_LAUNCHES_PER_GRAPH:
                raise ProtocolError(f"a graph of {fields[1]} launches is over the limit")
            extra = [_read_launch(r) for _ in range(fields[1])]
        out.append((opcode, fields, extra))
    return out


def command_name(opcode: int) -> str:
    return COMMANDS[opcode][0] if opcode in COMMANDS else f"command {opcode}"
