"""The REMOTE device: a device of another process or machine, driven through ``boltgrad device-server``.

    Tensor([1.0, 2.0], device="REMOTE:127.0.0.1:7077")          # the server's default device
    Tensor([1.0, 2.0], device="REMOTE:gpu-box:7077/CUDA")         # a named device of the server
    BOLT_DEVICE=REMOTE:unix:/tmp/bolt.sock python train.py
    Tensor([1.0, 2.0], device="REMOTE:127.0.0.1:7077?compile=client")  # compile here, send the binary

Kernels compile on the server by default (this machine may lack the device's compiler). With
``?compile=client`` this process compiles them with its own C compiler and sends the shared library, which the
server loads: only onto its CPU device, and only when both machines are of one kind (OS, architecture, C
library, CPU model and features; the WELCOME names the server's). A device server runs whatever code it is
sent, so only connect to one you trust, and only let clients you trust reach yours.

The link is the cost to keep down, so nothing waits for the server unless it has to. Allocations, uploads,
program lookups and launches are queued with ids the client picks; the queue goes over in one message when
the client needs an answer (a read of device memory, a ``synchronize``) or when it holds more than
``FLUSH_BYTES``. A realize whose result is then read is therefore one round trip, and a jitted step is one
message carrying the step's inputs, its variable values and a "run graph" command: the recording itself was
stored on the server when it was made. Compiling is a request of its own, answered once per kernel source.

A server that dies or a link that drops or stalls raises ``boltgrad.DeviceLost`` naming the device and the
request within ``BOLT_REMOTE_TIMEOUT`` seconds (a busy server sends heartbeats, so a long compile is not taken
for a dead link); the device stays lost, and the rest of the process keeps working.

``boltgrad.stats`` counts round trips and bytes each way; ``DEBUG=2`` prints a line per round trip;
``BOLT_REMOTE_LINK`` adds latency and caps bandwidth to model a Thunderbolt link or a LAN.
"""

from __future__ import annotations

import itertools
import socket
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .. import config, stats
from ..errors import CompileError, DeviceLost, DeviceUnavailable
from ..helpers import sha256
from ..remote import protocol as P
from . import cpu_features
from .base import Allocator, Compiler, Device, Launch, LaunchGraph
from .cpu import CCompiler

FLUSH_BYTES = 32 << 20  # queued upload bytes that trigger sending the queue without waiting for a read
_ids = itertools.count(1)  # ids of buffers, libraries, programs and graphs: unique in the process
_uploaded: dict[str, set[bytes]] = {}  # server instance -> content hashes this process uploaded to it


@dataclass(frozen=True)
class _Upload:
    """A large write, held as bytes until its batch goes: sent as a hash when the server holds the content."""

    buffer_id: int
    offset: int
    data: bytes
    digest: bytes

    def write(self, out: P.FrameBuffer, as_hash: bool) -> None:
        if as_hash:
            P.add_command(out, P.WRITE_CACHED, self.buffer_id, self.offset, len(self.data), self.digest)
        else:
            P.add_command(out, P.WRITE, self.buffer_id, self.offset, len(self.data), tail=self.data)


@dataclass(frozen=True)
class Target:
    address: str  # "host:port" or "unix:/path"
    device: str  # the server's device, "" for its default
    compile_on: str = "server"  # or "client": compile here and send the shared library

    @staticmethod
    def parse(name: str) -> Target:
        rest = name.partition(":")[2]
        rest, _, query = rest.partition("?")
        rest, _, device = rest.partition("/") if not rest.startswith("unix:") else (rest, "", "")
        options = dict(part.partition("=")[::2] for part in query.split("&") if part)
        compile_on = options.pop("compile", "server").lower()
        if options or compile_on not in ("server", "client"):
            raise ValueError(f"device {name!r}: unknown option {query!r}; fix: the only option is "
                             "?compile=client (or ?compile=server, the default)")  # fmt: skip
        return Target(rest or config.REMOTE_ADDRESS, device.upper(), compile_on)


class _Link:
    """The socket to one server, the commands not yet sent, and the ids this client handed out.

    Queued commands are written straight into the frame that will carry them (``out``), so a step's batch is
    sent without being assembled again; large uploads wait beside it (``uploads``, with where in ``out`` each
    goes) because whether one travels as bytes or as a hash is decided when the batch goes. Two such frames
    take turns: a buffer freed by the garbage collector while a batch is on its way queues its FREE in the
    other one.
    """

    def __init__(self, device_name: str, target: Target):
        self.name = device_name
        self.target = target
        self.timeout = config.remote_timeout()
        model = config.remote_link()
        self.latency_s = model.get("latency_us", 0.0) / 1e6
        self.bytes_per_s = model.get("gbit", 0.0) * 1e9 / 8
        self.lost: str | None = None
        self.out = P.FrameBuffer()
        self.spare: P.FrameBuffer | None = P.FrameBuffer()
        self.uploads: list[tuple[int, _Upload]] = []  # (payload offset in out, upload)
        self.queued = 0  # commands in the queue
        self.upload_bytes = 0
        self.sock = self._connect()
        self.reader = P.FrameReader(self.sock)
        hello = P.FrameBuffer(P.pack_str(config.remote_token()) + P.pack_str(target.device))
        _, reply = self._request(P.HELLO, hello, "hello", expect=(P.WELCOME,))
        r = P.Reader(reply)
        self.server_device, self.renderer, self.instance = r.string(), r.string(), r.string()
        self.memory_cap, self.server_tag = r.unpack(_U64)[0], r.string()
        if target.compile_on == "client":
            self._check_client_compile()

    def _check_client_compile(self) -> None:
        problem = ""
        if self.server_device != "CPU":
            problem = f"the server's device is {self.server_device}, and only a CPU device loads client binaries"
        elif not self.server_tag:
            problem = "the server refuses binaries compiled by clients (--no-client-binaries)"
        elif self.server_tag != P.machine_tag():
            problem = (f"this machine is {P.machine_tag()} and the server {self.server_tag}; a binary tuned for "
                       "one CPU may not run on the other")  # fmt: skip
        if problem:
            self._lose(f"{self.name}: cannot compile on the client: {problem}")
            raise DeviceUnavailable(f"{self.lost}; fix: compile on the server (drop ?compile=client)")

    def _connect(self) -> socket.socket:
        addr = self.target.address
        try:
            if addr.startswith("unix:"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(addr[len("unix:") :])
            else:
                host, _, port = addr.rpartition(":")
                sock = socket.create_connection((host.strip("[]"), int(port)), timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tls = config.remote_tls()
                if tls:
                    context = ssl.create_default_context(cafile=None if tls == "1" else tls)
                    sock = context.wrap_socket(sock, server_hostname=host.strip("[]"))
            if not isinstance(sock, ssl.SSLSocket):
                _kernel_timeout(sock, self.timeout)
        except ssl.SSLError as e:
            raise DeviceUnavailable(f"{self.name}: TLS with {addr} failed ({e}); fix: check BOLT_REMOTE_TLS") from None
        except (OSError, ValueError) as e:
            raise DeviceUnavailable(
                f"{self.name}: no device server at {addr} ({e}); fix: start one there with "
                f"`boltgrad device-server --listen {addr}`"
            ) from None
        return sock

    # -- the queue

    def push(self, opcode: int, *fields: object, tail: bytes | bytearray | memoryview = b"") -> None:
        """Queue one command (its tail is copied now: the caller may reuse its memory)."""
        if self.lost:
            raise DeviceLost(self.lost)
        P.add_command(self.out, opcode, *fields, tail=tail)
        self.queued += 1
        if len(self.out) + self.upload_bytes >= FLUSH_BYTES:
            self.flush("upload")

    def push_raw(self, command: bytes) -> None:
        if self.lost:
            raise DeviceLost(self.lost)
        self.out.add(command)
        self.queued += 1

    def push_upload(self, upload: _Upload) -> None:
        if self.lost:
            raise DeviceLost(self.lost)
        self.uploads.append((len(self.out), upload))
        self.queued += 1
        self.upload_bytes += len(upload.data)
        if len(self.out) + self.upload_bytes >= FLUSH_BYTES:
            self.flush("upload")

    def _clear(self) -> None:
        self.out.clear()
        self.uploads = []
        self.queued = self.upload_bytes = 0

    def flush(self, why: str) -> memoryview:
        """Send the queued commands as one batch and wait for its result (the bytes of its reads), a view valid
        until the next request."""
        if self.lost:
            raise DeviceLost(self.lost)
        if not self.queued:
            return memoryview(b"")
        out, uploads, what = self.out, self.uploads, f"{why} ({self.queued} commands)"
        self.out, self.spare = self.spare if self.spare is not None else P.FrameBuffer(), None
        self.uploads, self.queued, self.upload_bytes = [], 0, 0
        try:
            if not uploads:
                return self._request(P.BATCH, out, what, expect=(P.RESULT,))[1]
            return self._flush_with_uploads(out, uploads, what)
        finally:
            out.clear()
            self.spare = out

    def _flush_with_uploads(self, out: P.FrameBuffer, uploads: list[tuple[int, _Upload]], what: str) -> memoryview:
        known = _uploaded.setdefault(self.instance, set())
        while True:
            batch, done = P.FrameBuffer(), 0
            for offset, upload in uploads:
                batch.add(out.payload(done, offset))
                upload.write(batch, upload.digest in known)
                done = offset
            batch.add(out.payload(done))
            kind, reply = self._request(P.BATCH, batch, what, expect=(P.RESULT, P.NEED))
            if kind == P.RESULT:
                break
            missing = {bytes(reply[i : i + P.HASH_SIZE]) for i in range(0, len(reply), P.HASH_SIZE)}
            if not missing & known:
                self._lose(f"{self.name}: the server asked for content it was not offered")
                raise DeviceLost(self.lost)
            known -= missing  # evicted on the server: send the bytes this time
        known.update(upload.digest for _, upload in uploads)
        return reply

    # -- one request, its answer

    def _request(self, kind: int, payload: P.FrameBuffer, what: str, expect: tuple[int, ...]) -> tuple[int, memoryview]:
        if self.lost:
            raise DeviceLost(self.lost)
        t0 = time.perf_counter()
        try:
            frame = payload.frame(kind)
            if self.latency_s or self.bytes_per_s:
                self._model_link(len(frame))
            self.sock.sendall(frame)
            while True:
                reply_kind, reply = self.reader.recv()
                if reply_kind != P.HEARTBEAT:
                    break
            if self.latency_s or self.bytes_per_s:
                self._model_link(P.HEADER.size + len(reply))
        except (OSError, ConnectionError, P.ProtocolError) as e:
            timed_out = isinstance(e, TimeoutError | socket.timeout | BlockingIOError)
            why = "no answer within the timeout" if timed_out else str(e)
            if kind == P.HELLO:
                self._lose(f"{self.name}: no greeting from {self.target.address} ({why})")
                raise DeviceUnavailable(
                    f"{self.lost}; fix: check that a boltgrad device-server of this version listens there, and "
                    "set BOLT_REMOTE_TLS when it serves TLS"
                ) from None
            self._lose(
                f"{self.name}: the device server stopped answering during {what}: {why}; once it runs "
                f"again, call boltgrad.Device.reconnect({self.name!r}) and reload from a checkpoint"
            )
            raise DeviceLost(self.lost) from None
        stats.round_trips += 1
        stats.link_bytes_out += len(frame)
        stats.link_bytes_in += P.HEADER.size + len(reply)
        if config.debug_level() >= 2:
            ms = (time.perf_counter() - t0) * 1e3
            print(f"  {self.name}: round trip for {what}: {len(frame)} B out, {P.HEADER.size + len(reply)} B in, "
                  f"{ms:.2f} ms", file=sys.stderr)  # fmt: skip
        if reply_kind == P.ERROR:
            message = P.Reader(reply).string(limit=P.MAX_FRAME)
            if kind == P.HELLO:
                self._lose(f"{self.name}: the server refused the connection: {message}")
                raise DeviceUnavailable(f"{self.lost}")
            if kind == P.COMPILE:
                raise CompileError(f"{self.name}: {message}")
            raise RuntimeError(f"{self.name}: the server rejected {what}: {message}")
        if reply_kind not in expect:
            self._lose(f"{self.name}: expected {P.KIND_NAMES[expect[0]]}, got {P.KIND_NAMES[reply_kind]}")
            raise DeviceLost(self.lost)
        return reply_kind, reply

    def _model_link(self, nbytes: int) -> None:
        delay = self.latency_s + (nbytes / self.bytes_per_s if self.bytes_per_s else 0.0)
        if delay > 2e-3:
            time.sleep(delay)
            return
        end = time.perf_counter() + delay  # sleep() overshoots short delays by far more than they last
        while time.perf_counter() < end:
            pass

    def _lose(self, reason: str) -> None:
        self.lost = reason
        self._clear()
        try:
            self.sock.close()
        except OSError:
            pass

    def __del__(self) -> None:
        try:
            self.sock.close()
        except Exception:  # a half-made link, or interpreter shutdown
            pass

    def compile(self, source: str) -> int:
        library_id = next(_ids)
        request = P.FrameBuffer(struct.pack("<I", library_id) + P.pack_str(source))
        self._request(P.COMPILE, request, "compile", expect=(P.COMPILED,))
        return library_id

    def load(self, binary: bytes) -> int:
        """Send a kernel library compiled here; the server loads it (see ``Target.compile_on``)."""
        library_id = next(_ids)
        request = P.FrameBuffer(struct.pack("<I", library_id) + P.pack_str(P.machine_tag()) + binary)
        self._request(P.LOAD, request, "load of a client-compiled library", expect=(P.COMPILED,))
        return library_id


_U64 = struct.Struct("<Q")


def _kernel_timeout(sock: socket.socket, seconds: float) -> None:
    """A blocking socket whose receives and sends give up after ``seconds``: the kernel keeps the timeout
    (SO_RCVTIMEO), so each receive is one system call where Python's own timeout polls before every one."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


class RemoteAllocator(Allocator):
    """A handle is the buffer's id on the server; memory is allocated there when the queue goes over."""

    def __init__(self, link: _Link):
        self.link = link
        self.live: set[int] = set()  # ids of this link: a handle from a lost link is never sent to a new one

    def alloc(self, nbytes: int) -> int:
        buffer_id = next(_ids)
        self.link.push(P.ALLOC, buffer_id, nbytes)
        self.live.add(buffer_id)
        return buffer_id

    def free(self, handle: int, nbytes: int) -> None:
        if handle in self.live and not self.link.lost:
            self.live.discard(handle)
            self.link.push(P.FREE, handle)

    def _check(self, handle: int) -> None:
        if handle not in self.live:
            raise DeviceLost(f"{self.link.name}: buffer {handle} was on a connection that was lost")

    def copyin(self, handle: int, src: memoryview) -> None:
        self._check(handle)
        src = src.cast("B") if src.format != "B" or src.ndim != 1 else src
        chunk = P.MAX_FRAME // 2
        for offset in range(0, max(len(src), 1), chunk):
            piece = src[offset : offset + chunk]
            if len(piece) >= P.CACHED_UPLOAD_MIN:
                data = bytes(piece)
                self.link.push_upload(_Upload(handle, offset, data, sha256(data).digest()))
            else:
                self.link.push(P.WRITE, handle, offset, len(piece), tail=piece)

    def copyout(self, dest: memoryview, handle: int) -> None:
        self._check(handle)
        dest = dest.cast("B") if dest.format != "B" or dest.ndim != 1 else dest
        self.link.push(P.READ, handle, len(dest))
        data = self.link.flush("read")
        if len(data) != len(dest):
            raise DeviceLost(f"{self.link.name}: a read of {len(dest)} bytes returned {len(data)}")
        dest[:] = data


class RemoteCompiler(Compiler):
    """Source -> a library id. The server compiles (and caches by content on its disk), or with
    ``?compile=client`` this process's CPU compiler does and the library goes over. A source compiled once on
    this link is not sent again."""

    def __init__(self, link: _Link):
        self.link = link
        self.libraries: dict[str, int] = {}
        self.local: Compiler | None = None

    def compile(self, source: str) -> int:
        key = sha256(source.encode()).hexdigest()
        if key not in self.libraries:
            if self.link.target.compile_on == "client":
                self.libraries[key] = self.link.load(self._compile_here(source))
            else:
                self.libraries[key] = self.link.compile(source)
        return self.libraries[key]

    def _compile_here(self, source: str) -> bytes:
        if self.local is None:  # made at first use: a client that does not compile needs no compiler
            self.local = CCompiler()
        with open(self.local.compile(source), "rb") as f:
            return f.read()


@dataclass(frozen=True)
class RemoteProgram:
    id: int
    name: str


class RemoteGraph(LaunchGraph):
    """A recording stored on the server: created once, replayed by one command; patches are queued, and only
    when they change something."""

    def __init__(self, device: RemoteDevice, launches: Sequence[Launch]):
        super().__init__(device, launches)
        self.link = device.link
        self.id = next(_ids)
        specs = b"".join(P.pack_launch(_spec(launch)) for launch in launches)
        self.link.push(P.GRAPH, self.id, len(launches), tail=specs)
        self.buffers = [list(launch.buffers) for launch in launches]
        self.values = [list(launch.var_values) for launch in launches]

    def set_buffer(self, launch_index: int, slot: int, handle: int) -> None:
        if self.buffers[launch_index][slot] != handle:
            self.buffers[launch_index][slot] = handle
            self.link.push(P.GRAPH_BUFFER, self.id, launch_index, slot, handle)

    def set_var(self, launch_index: int, slot: int, value: int) -> None:
        if self.values[launch_index][slot] != value:
            self.values[launch_index][slot] = value
            self.link.push(P.GRAPH_VAR, self.id, launch_index, slot, value)

    def run(self) -> None:
        self.link.push(P.GRAPH_RUN, self.id)

    def __del__(self) -> None:
        try:
            if not self.link.lost:
                self.link.push(P.GRAPH_FREE, self.id)
        except Exception:
            pass


def _spec(launch: Launch) -> P.LaunchSpec:
    return P.LaunchSpec(launch.program.id, launch.size, launch.cost, tuple(launch.buffers), tuple(launch.var_values))


class RemoteDevice(Device):
    def __init__(self, name: str = "REMOTE"):
        super().__init__(name)
        self.target = Target.parse(name)
        self.link = _Link(name, self.target)
        self.renderer = self.link.renderer
        if self.link.server_tag == P.machine_tag():  # a server of this machine's kind: its vector registers too
            self.vector_widths = cpu_features.vector_widths()
        self._allocator = RemoteAllocator(self.link)
        self._compiler = RemoteCompiler(self.link)
        self._programs: dict[tuple[int, str], RemoteProgram] = {}

    @property
    def allocator(self) -> RemoteAllocator:
        return self._allocator

    @property
    def compiler(self) -> RemoteCompiler:
        return self._compiler

    def program(self, library: int, name: str) -> RemoteProgram:
        key = (library, name)
        if key not in self._programs:
            program = RemoteProgram(next(_ids), name)
            self.link.push(P.PROGRAM, program.id, library, tail=P.pack_str(name))
            self._programs[key] = program
        return self._programs[key]

    def run(self, launches: list[Launch]) -> None:
        for launch in launches:
            self.link.push_raw(bytes([P.LAUNCH]) + P.pack_launch(_spec(launch)))

    def graph(self, launches: Sequence[Launch]) -> RemoteGraph:
        return RemoteGraph(self, launches)

    def synchronize(self) -> None:
        self.link.push(P.SYNC)
        self.link.flush("synchronize")

    def self_check(self) -> str:
        return f"{self.link.server_device} at {self.target.address}"
