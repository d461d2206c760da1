"""The wire format between a REMOTE device (client) and ``boltgrad device-server``.

Every message is a frame: a fixed header, then ``length`` bytes of payload.

    header  = magic "BG" | version u8 | kind u8 | length u32      (little endian, 8 bytes)

The client speaks first with HELLO and the server answers WELCOME or ERROR. After that the client sends one
request at a time (BATCH, COMPILE or LOAD) and reads frames until the answer (RESULT, COMPILED, NEED or ERROR);
while the server works on a long request it sends HEARTBEAT frames, so the client tells a slow compile from a
dead link.

Kernels are compiled on the server (COMPILE: the source) unless the client compiles them itself and sends the
shared library (LOAD: its machine tag, then the binary). A server loads a binary only onto its CPU device and
only when the tag equals its own (same OS, architecture, C library and CPU model and features: the client's
compiler tuned the code for its own CPU). Either way the server runs code a client sends it.

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

import functools
import platform
import socket
import struct
from dataclasses import dataclass
from typing import Any

from ..device.compile_cache import cpu_identity
from ..helpers import sha256

VERSION = 2  # 2: LOAD (binaries compiled by the client), the machine tag in WELCOME
MAGIC = b"BG"
HEADER = struct.Struct("<2sBBI")
MAX_FRAME = 64 << 20  # bytes of payload in one frame; uploads larger than this go in several batches
MAX_BUFFERS_PER_LAUNCH = 256
MAX_VARS_PER_LAUNCH = 256
MAX_LAUNCHES_PER_GRAPH = 1 << 16
MAX_NAME = 256

# frame kinds
HELLO, WELCOME, BATCH, RESULT, COMPILE, COMPILED, HEARTBEAT, ERROR, NEED, LOAD = range(1, 11)
KIND_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", BATCH: "BATCH", RESULT: "RESULT", COMPILE: "COMPILE",
              COMPILED: "COMPILED", HEARTBEAT: "HEARTBEAT", ERROR: "ERROR", NEED: "NEED", LOAD: "LOAD"}  # fmt: skip
CACHED_UPLOAD_MIN = 1 << 20  # uploads at least this large are kept by content hash on the server
HASH_SIZE = 32  # sha256


class ProtocolError(ValueError):
    """A malformed, truncated or oversized message."""


@functools.cache
def machine_tag() -> str:
    """What a compiled kernel library depends on: OS, architecture, C library, and the CPU it was tuned for
    (``-march=native``), the last as a hash of its model and feature flags."""
    libc = "".join(platform.libc_ver()) or "libc?"
    cpu = sha256(cpu_identity().encode()).hexdigest()[:12]
    return f"{platform.system()}-{platform.machine()}-{libc}-cpu{cpu}"


# ---------------------------------------------------------------- frames


def send_frame(sock: socket.socket, kind: int, payload: bytes | bytearray | memoryview = b"") -> int:
    """One small frame (a handshake, a heartbeat, an error); batches go through ``FrameBuffer``."""
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes is over the limit of {MAX_FRAME}")
    sock.sendall(HEADER.pack(MAGIC, VERSION, kind, len(payload)) + bytes(payload))
    return HEADER.size + len(payload)


# Frames are built and received in memory that is kept from one frame to the next. Touching fresh pages can
# cost more than the copy into them (a virtual machine that hands freed pages back to its host faults on each
# one again): a 400 KB batch assembled in new bytes objects cost milliseconds there, in a kept buffer 30 µs.
KEEP_BUFFER = 8 << 20  # a buffer grown past this (weights) is let go once its frame is done
_START_BUFFER = 1 << 16


class FrameBuffer:
    """An outgoing frame built in place: 8 bytes kept for the header, then the payload as it is added."""

    def __init__(self, data: bytes | bytearray | memoryview = b""):
        self.buf = bytearray(max(_START_BUFFER, HEADER.size + len(data)))
        self.n = HEADER.size
        if data:
            self.add(data)

    def __len__(self) -> int:
        """Bytes of payload so far."""
        return self.n - HEADER.size

    def reserve(self, k: int) -> int:
        """Grows the payload by k bytes; returns where they start in ``buf``."""
        end = self.n + k
        if end > len(self.buf):
            grown = bytearray(max(end, 2 * len(self.buf)))  # a new buffer: views of the old one may be alive
            memoryview(grown)[: self.n] = memoryview(self.buf)[: self.n]
            self.buf = grown
        start, self.n = self.n, end
        return start

    def add(self, data: bytes | bytearray | memoryview) -> None:
        # through a memoryview: a bytearray's own slice assignment copies a source that is not a bytearray
        # into a temporary one first (fresh pages again)
        data = data if isinstance(data, bytes | bytearray) else memoryview(data).cast("B")
        start = self.reserve(len(data))
        memoryview(self.buf)[start : self.n] = data

    def pack(self, st: struct.Struct, *fields: Any) -> None:
        start = self.reserve(st.size)  # first: it may replace buf
        st.pack_into(self.buf, start, *fields)

    def space(self, k: int) -> memoryview:
        """k bytes of payload for the caller to fill."""
        start = self.reserve(k)
        return memoryview(self.buf)[start : self.n]

    def payload(self, start: int = 0, end: int | None = None) -> memoryview:
        return memoryview(self.buf)[HEADER.size + start : self.n if end is None else HEADER.size + end]

    def frame(self, kind: int) -> memoryview:
        """Header and payload, ready to send."""
        if len(self) > MAX_FRAME:
            raise ProtocolError(f"frame of {len(self)} bytes is over the limit of {MAX_FRAME}")
        HEADER.pack_into(self.buf, 0, MAGIC, VERSION, kind, len(self))
        return memoryview(self.buf)[: self.n]

    def clear(self) -> None:
        self.n = HEADER.size
        if len(self.buf) > KEEP_BUFFER:
            self.buf = bytearray(_START_BUFFER)


class FrameReader:
    """Frames from a socket, read into a kept buffer with as few calls as the data allows (a header and a short
    payload usually arrive together). A payload is a view that stays valid until the next ``recv``."""

    def __init__(self, sock: socket.socket, exact: bool = False):
        self.sock = sock
        self.exact = exact  # ask the socket for no byte past the frame
        self.buf = bytearray(_START_BUFFER)
        self.start = self.end = 0  # the bytes received and not yet handed out

    def _fill(self, need: int) -> None:
        if self.end - self.start >= need:
            return
        if self.start + need > len(self.buf):  # move what is left to the front of a buffer large enough
            have = self.end - self.start
            moved = bytearray(max(need, len(self.buf)))
            memoryview(moved)[:have] = memoryview(self.buf)[self.start : self.end]
            self.buf, self.start, self.end = moved, 0, have
        view = memoryview(self.buf)
        while self.end - self.start < need:
            k = self.sock.recv_into(view[self.end : self.start + need] if self.exact else view[self.end :])
            if k == 0:
                raise ConnectionError("the connection closed")
            self.end += k

    def recv(self) -> tuple[int, memoryview]:
        """One frame: (kind, payload). Raises ProtocolError for a bad header, ConnectionError when the peer left."""
        if self.start == self.end:
            self.start = self.end = 0
            if len(self.buf) > KEEP_BUFFER:
                self.buf = bytearray(_START_BUFFER)
        self._fill(HEADER.size)
        magic, version, kind, length = HEADER.unpack_from(self.buf, self.start)
        if magic != MAGIC:
            raise ProtocolError(f"not a boltgrad device-server stream (magic {bytes(magic)!r})")
        if version != VERSION:
            raise ProtocolError(
                f"protocol version {version}, but this side speaks version {VERSION}; upgrade the older"
            )
        if kind not in KIND_NAMES:
            raise ProtocolError(f"unknown frame kind {kind}")
        if length > MAX_FRAME:
            raise ProtocolError(f"frame of {length} bytes is over the limit of {MAX_FRAME}")
        self._fill(HEADER.size + length)
        start = self.start + HEADER.size
        self.start = start + length
        return kind, memoryview(self.buf)[start : self.start]


def recv_frame(sock: socket.socket) -> tuple[int, memoryview]:
    """One frame read exactly, nothing past it (tests, probes): a reader of its own that asks for no more."""
    reader = FrameReader(sock, exact=True)
    return reader.recv()


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


_WITH_OPCODE = {opcode: struct.Struct("<B" + st.format[1:]) for opcode, (_, st) in COMMANDS.items()}


def add_command(out: FrameBuffer, opcode: int, *fields: Any, tail: bytes | bytearray | memoryview = b"") -> None:
    """``pack_command`` written straight into a frame being built (the tail is copied once, into it)."""
    out.pack(_WITH_OPCODE[opcode], opcode, *fields)
    if tail:
        out.add(tail)


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
