"""``boltgrad device-server``: expose this machine's devices to REMOTE clients.

    boltgrad device-server                                  # 127.0.0.1:7077, CPU
    boltgrad device-server --listen 0.0.0.0:7077 --token S  # any other address needs a token
    boltgrad device-server --listen unix:/tmp/bolt.sock

    boltgrad device-server --listen 0.0.0.0:7077 --token S --tls-cert cert.pem --tls-key key.pem

A device server runs the code it is sent: a client has kernels compiled from its source, or (with
``REMOTE:host:port?compile=client``) sends a shared library it compiled itself, which the server loads into its
own process; either way a kernel can do anything the server process can. Only let clients you trust reach it:
it listens on loopback unless told otherwise, any other address requires a token (compared in constant time),
and ``--no-client-binaries`` refuses libraries compiled elsewhere (kernel source is still compiled and run).

Each connection is a session with its own tables of buffers, libraries, programs and graphs; ids are the
client's own, so one client can never name another's memory. Every message is decoded with its lengths
checked, and every id and size is checked against the session before anything runs; a bad command fails the
batch with an error that names it, and the server goes on serving. A session may hold at most
``--max-client-memory`` bytes. Device work from all sessions is serialized (one queue per server).
"""

from __future__ import annotations

import argparse
import hmac
import os
import queue
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from .. import config
from ..device import compile_cache
from ..device.base import Launch, LaunchGraph
from ..device.registry import canonicalize, get_device
from ..errors import CompileError
from ..helpers import sha256
from . import protocol as P

HEARTBEAT_S = 0.5  # a busy server sends a heartbeat this often, so a client can tell slow from dead
HANDSHAKE_TIMEOUT_S = 10.0


class CommandError(Exception):
    def __init__(self, index: int, opcode: int, message: str):
        super().__init__(f"command {index} ({P.command_name(opcode)}): {message}")
        self.index = index


# ---------------------------------------------------------------- logging that never blocks the server


class _Log:
    """Messages go through a bounded queue to a writer thread; when stderr is slow, messages are dropped."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.queue: queue.Queue[str] = queue.Queue(maxsize=1000)
        threading.Thread(target=self._writer, daemon=True).start()

    def __call__(self, message: str, always: bool = False) -> None:
        if always or self.verbose:
            try:
                self.queue.put_nowait(f"device-server: {message}\n")
            except queue.Full:
                pass

    def _writer(self) -> None:
        while True:
            line = self.queue.get()
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except Exception:  # a closed stderr must not take the server down
                pass


# ---------------------------------------------------------------- a client's session


class ContentStore:
    """Large uploads by the sha256 of their content, least recently used dropped first past ``cap`` bytes;
    shared by every session of the server."""

    def __init__(self, cap: int):
        self.cap = cap
        self.items: OrderedDict[bytes, bytes] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def put(self, data: bytes) -> None:
        if len(data) > self.cap:
            return
        key = sha256(data).digest()
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return
            self.items[key] = data
            self.size += len(data)
            while self.size > self.cap:
                _, old = self.items.popitem(last=False)
                self.size -= len(old)

    def get(self, key: bytes) -> bytes | None:
        with self.lock:
            data = self.items.get(key)
            if data is not None:
                self.items.move_to_end(key)
            return data


_LIBRARY_MAGICS = (b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe")  # ELF, Mach-O 64 and 32 bit


class Session:
    """One client's view of a device: what it allocated, compiled and recorded, by the client's ids."""

    def __init__(self, device_name: str, memory_cap: int, device_lock: threading.Lock, store: ContentStore):
        self.device = get_device(device_name)
        if self.device.renderer not in ("c",):
            raise ValueError(f"device {device_name} cannot be served: it does not compile source text")
        self.memory_cap = memory_cap
        self.lock = device_lock
        self.buffers: dict[int, tuple[Any, int]] = {}  # id -> (handle, nbytes)
        self.libraries: dict[int, Any] = {}
        self.programs: dict[int, Any] = {}
        self.graphs: dict[int, tuple[LaunchGraph, list[P.LaunchSpec]]] = {}
        self.used = 0
        self.store = store

    def missing_content(self, commands: list[tuple[int, tuple[Any, ...], Any]]) -> list[bytes]:
        """The hashes of WRITE_CACHED commands whose content this server does not hold."""
        return [f[3] for op, f, _ in commands if op == P.WRITE_CACHED and self.store.get(f[3]) is None]

    # -- requests

    def compile(self, library_id: int, source: str) -> None:
        self.libraries[library_id] = self.device.compiler.compile(source)

    def load(self, library_id: int, tag: str, binary: memoryview) -> None:
        """A kernel library the client compiled: kept in the compile cache under its content's hash, loaded
        like one built here. Only a CPU device of the very machine kind the client compiled for takes one."""
        name = self.device.name
        if name != "CPU":
            raise ValueError(f"this server's device is {name}, and only a CPU device loads kernels compiled by "
                             "the client; fix: compile on the server (drop ?compile=client)")  # fmt: skip
        if tag != P.machine_tag():
            raise ValueError(
                f"the client compiled for {tag}, this server is {P.machine_tag()} (OS, architecture, C library and "
                "CPU must match); fix: compile on the server (drop ?compile=client)"
            )
        if bytes(binary[:4]) not in _LIBRARY_MAGICS:
            raise ValueError("what the client sent is not a shared library (no ELF or Mach-O header)")
        suffix = self.device.compiler.suffix
        key = sha256(binary).hexdigest()
        self.libraries[library_id] = compile_cache.get_or_build(key, lambda: bytes(binary), suffix, "client")

    def run_batch(self, commands: list[tuple[int, tuple[Any, ...], Any]], out: P.FrameBuffer) -> None:
        """Carry out the commands in order, adding the bytes of every READ to ``out``. A failing command stops
        the batch (those before it took effect) and raises CommandError."""
        with self.lock:
            for i, (opcode, fields, extra) in enumerate(commands):
                try:
                    self._run_one(opcode, fields, extra, out)
                except CommandError:
                    raise
                except (ValueError, KeyError, IndexError, MemoryError, OSError, RuntimeError) as e:
                    raise CommandError(i, opcode, str(e) or type(e).__name__) from None
            self.device.synchronize()

    def _buffer(self, buffer_id: int) -> tuple[Any, int]:
        if buffer_id not in self.buffers:
            raise ValueError(f"no buffer {buffer_id} in this session")
        return self.buffers[buffer_id]

    def _launch(self, spec: P.LaunchSpec) -> Launch:
        if spec.program not in self.programs:
            raise ValueError(f"no program {spec.program} in this session")
        handles = tuple(self._buffer(b)[0] for b in spec.buffers)
        return Launch(self.programs[spec.program], handles, spec.var_values, spec.size, spec.cost)

    def _graph(self, graph_id: int, launch: int, slot: int, kind: str) -> LaunchGraph:
        if graph_id not in self.graphs:
            raise ValueError(f"no graph {graph_id} in this session")
        graph, specs = self.graphs[graph_id]
        if launch >= len(specs):
            raise ValueError(f"graph {graph_id} has {len(specs)} launches, not {launch + 1}")
        n = len(specs[launch].buffers) if kind == "buffer" else len(specs[launch].var_values)
        if slot >= n:
            raise ValueError(f"launch {launch} of graph {graph_id} has {n} {kind} slots, not {slot + 1}")
        return graph

    def _run_one(self, opcode: int, fields: tuple[Any, ...], extra: Any, out: P.FrameBuffer) -> None:
        dev = self.device
        if opcode == P.ALLOC:
            buffer_id, nbytes = fields
            if buffer_id in self.buffers:
                raise ValueError(f"buffer {buffer_id} already exists")
            if self.used + nbytes > self.memory_cap:
                raise MemoryError(f"allocating {nbytes} bytes would pass this client's cap of {self.memory_cap}")
            self.buffers[buffer_id] = (dev.allocator.alloc(max(nbytes, 1)), nbytes)
            self.used += nbytes
        elif opcode == P.FREE:
            handle, nbytes = self._buffer(fields[0])
            del self.buffers[fields[0]]
            dev.allocator.free(handle, max(nbytes, 1))
            self.used -= nbytes
        elif opcode in (P.WRITE, P.WRITE_CACHED):
            buffer_id, offset, n = fields[:3]
            if opcode == P.WRITE_CACHED:
                extra = self.store.get(fields[3])
                if extra is None or len(extra) != n:
                    raise ValueError("the server no longer holds the content of a cached upload")
            elif n >= P.CACHED_UPLOAD_MIN:
                self.store.put(bytes(extra))
            handle, nbytes = self._buffer(buffer_id)
            if offset + n > nbytes:
                raise ValueError(f"writing bytes {offset}..{offset + n} of a buffer of {nbytes}")
            view = dev.allocator.as_host_view(handle, nbytes)
            if view is not None:
                view[offset : offset + n] = extra
            elif offset == 0 and n == nbytes:
                dev.allocator.copyin(handle, extra)
            else:
                raise ValueError("this device takes whole-buffer writes only")
        elif opcode == P.READ:
            buffer_id, n = fields
            handle, nbytes = self._buffer(buffer_id)
            if n > nbytes:
                raise ValueError(f"reading {n} bytes of a buffer of {nbytes}")
            dev.synchronize()
            view = dev.allocator.as_host_view(handle, nbytes)
            if view is not None:
                out.add(view[:n])
            else:
                dev.allocator.copyout(out.space(n), handle)
        elif opcode == P.PROGRAM:
            program_id, library_id = fields
            if library_id not in self.libraries:
                raise ValueError(f"no library {library_id} in this session")
            self.programs[program_id] = dev.program(self.libraries[library_id], extra)
        elif opcode == P.LAUNCH:
            dev.run([self._launch(extra)])
        elif opcode == P.GRAPH:
            graph_id = fields[0]
            self.graphs[graph_id] = (dev.graph([self._launch(spec) for spec in extra]), list(extra))
        elif opcode == P.GRAPH_BUFFER:
            graph_id, launch, slot, buffer_id = fields
            graph = self._graph(graph_id, launch, slot, "buffer")
            graph.set_buffer(launch, slot, self._buffer(buffer_id)[0])
        elif opcode == P.GRAPH_VAR:
            graph_id, launch, slot, value = fields
            self._graph(graph_id, launch, slot, "variable").set_var(launch, slot, value)
        elif opcode == P.GRAPH_RUN:
            if fields[0] not in self.graphs:
                raise ValueError(f"no graph {fields[0]} in this session")
            self.graphs[fields[0]][0].run()
        elif opcode == P.GRAPH_FREE:
            self.graphs.pop(fields[0], None)
        elif opcode == P.SYNC:
            dev.synchronize()

    def close(self) -> None:
        with self.lock:
            self.graphs.clear()
            self.programs.clear()
            for handle, nbytes in self.buffers.values():
                try:
                    self.device.allocator.free(handle, max(nbytes, 1))
                except Exception:
                    pass
            self.buffers.clear()
            self.used = 0


# ---------------------------------------------------------------- one connection


class _Connection:
    def __init__(self, sock: socket.socket, server: DeviceServer, peer: str):
        self.sock = sock
        self.reader = P.FrameReader(sock)
        self.reply = P.FrameBuffer()  # kept from answer to answer, like the reader's buffer
        self.server = server
        self.peer = peer
        self.send_lock = threading.Lock()
        self.busy = False
        self.closed = False

    def send(self, kind: int, payload: bytes = b"") -> None:
        with self.send_lock:
            P.send_frame(self.sock, kind, payload)

    def _heartbeat(self) -> None:
        last = time.monotonic()
        while not self.closed:
            time.sleep(HEARTBEAT_S / 2)
            with self.send_lock:  # sends only while the connection's thread works, never while it reads (TLS)
                if not (self.busy and time.monotonic() - last >= HEARTBEAT_S):
                    continue
                try:
                    P.send_frame(self.sock, P.HEARTBEAT)
                except OSError:
                    return
            last = time.monotonic()

    def serve(self) -> None:
        log = self.server.log
        self.sock.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            kind, payload = self.reader.recv()
        except (ConnectionError, OSError):
            log(f"{self.peer}: closed before saying hello")  # a port probe
            return
        except P.ProtocolError as e:
            self._refuse(str(e))
            return
        session = self._handshake(kind, payload)
        if session is None:
            return
        self.sock.settimeout(None)
        threading.Thread(target=self._heartbeat, daemon=True).start()
        try:
            self._loop(session)
        finally:
            self.closed = True
            session.close()
            log(f"{self.peer}: session ended")

    def _refuse(self, message: str) -> None:
        self.server.log(f"{self.peer}: refused: {message}", always=True)
        try:
            self.send(P.ERROR, P.pack_str(message))
        except OSError:
            pass

    def _handshake(self, kind: int, payload: memoryview) -> Session | None:
        if kind != P.HELLO:
            self._refuse(f"expected HELLO, got {P.KIND_NAMES[kind]}")
            return None
        try:
            r = P.Reader(payload)
            token, device = r.string(), r.string()
        except P.ProtocolError as e:
            self._refuse(f"bad HELLO: {e}")
            return None
        expected = self.server.token
        if expected and not hmac.compare_digest(token.encode(), expected.encode()):
            self._refuse("wrong or missing token (set BOLT_REMOTE_TOKEN to the server's --token)")
            return None
        try:
            name = canonicalize(device or self.server.default_device)
            if name.startswith("REMOTE"):
                raise ValueError("a device server does not serve REMOTE devices")
            session = Session(name, self.server.memory_cap, self.server.device_lock(name), self.server.store)
        except Exception as e:
            self._refuse(f"device {device!r} is not available here: {e}")
            return None
        welcome = (
            P.pack_str(session.device.name)
            + P.pack_str(session.device.renderer)
            + P.pack_str(self.server.instance)
            + struct.pack("<Q", self.server.memory_cap)
            + P.pack_str(P.machine_tag() if self.server.client_binaries else "")
        )
        self.send(P.WELCOME, welcome)
        self.server.log(f"{self.peer}: session on {session.device.name}")
        return session

    def _loop(self, session: Session) -> None:
        while True:
            try:
                kind, payload = self.reader.recv()
            except (ConnectionError, OSError):
                return
            except P.ProtocolError as e:
                self._refuse(str(e))  # the stream cannot be trusted to be in step any more
                return
            self.busy = True
            reply = self.reply
            reply.clear()
            try:
                reply_kind, message = self._answer(session, kind, payload, reply)
            except Exception as e:  # a bug of ours must not end the session silently
                reply_kind, message = P.ERROR, P.pack_str(f"internal error: {type(e).__name__}: {e}")
            if message is not None:
                reply.clear()
                reply.add(message)
            try:
                frame = reply.frame(reply_kind)
            except P.ProtocolError as e:  # the batch's reads add up to more than a frame holds
                reply.clear()
                reply.add(P.pack_str(f"the answer is too large: {e}; fix: read less in one batch"))
                frame = reply.frame(P.ERROR)
            try:
                with self.send_lock:
                    self.busy = False
                    self.sock.sendall(frame)
            except OSError:
                return

    def _answer(self, session: Session, kind: int, payload: memoryview,
                out: P.FrameBuffer) -> tuple[int, bytes | None]:  # fmt: skip
        """The answer's kind, and its payload unless it was written into ``out``."""
        if kind == P.COMPILE:
            try:
                r = P.Reader(payload)
                (library_id,) = r.unpack(_U32)
                source = r.string(limit=P.MAX_FRAME)
                session.compile(library_id, source)
                return P.COMPILED, struct.pack("<I", library_id)
            except (P.ProtocolError, CompileError, OSError, ValueError) as e:
                return P.ERROR, P.pack_str(f"compile failed on the server: {e}")
        if kind == P.LOAD:
            if not self.server.client_binaries:
                return P.ERROR, P.pack_str("this server refuses kernels compiled by the client (--no-client-binaries); "
                                           "fix: compile on the server (drop ?compile=client)")  # fmt: skip
            try:
                r = P.Reader(payload)
                (library_id,) = r.unpack(_U32)
                tag = r.string()
                session.load(library_id, tag, r.take(r.left()))
                return P.COMPILED, struct.pack("<I", library_id)
            except (P.ProtocolError, OSError, ValueError) as e:
                return P.ERROR, P.pack_str(f"the server did not load the client's kernel library: {e}")
        if kind == P.BATCH:
            try:
                commands = P.decode_batch(payload)
            except P.ProtocolError as e:
                return P.ERROR, P.pack_str(f"malformed batch: {e}")
            missing = session.missing_content(commands)
            if missing:
                return P.NEED, b"".join(missing)
            try:
                session.run_batch(commands, out)
            except CommandError as e:
                return P.ERROR, P.pack_str(str(e))
            return P.RESULT, None
        return P.ERROR, P.pack_str(f"unexpected {P.KIND_NAMES[kind]} frame")


_U32 = struct.Struct("<I")


# ---------------------------------------------------------------- the server


class DeviceServer:
    def __init__(self, listen: str = config.REMOTE_ADDRESS, token: str = "", device: str = "CPU",
                 memory_cap: int = 8 << 30, verbose: bool = False, upload_cache: int = 2 << 30,
                 tls: tuple[str, str] | None = None, client_binaries: bool = True):  # fmt: skip
        self.listen = listen
        self.token = token
        self.default_device = device
        self.memory_cap = memory_cap
        self.client_binaries = client_binaries
        self.log = _Log(verbose)
        self.instance = uuid.uuid4().hex  # tells a restarted server from the one a client knew
        self.store = ContentStore(upload_cache)
        self.tls: ssl.SSLContext | None = None
        if tls is not None:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(*tls)
        self._device_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        if not listen.startswith("unix:") and not _is_loopback(listen) and not token:
            raise ValueError(
                f"device-server: listening on {listen} needs a token (--token or BOLT_REMOTE_TOKEN): anyone who "
                "can reach the port could run code on this machine"
            )
        self._server = self._make_server()

    def device_lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._device_locks.setdefault(name, threading.Lock())

    def _make_server(self) -> socketserver.BaseServer:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer = str(self.client_address or "unix")
                sock = self.request
                if outer.tls is not None:
                    try:
                        sock.settimeout(HANDSHAKE_TIMEOUT_S)
                        sock = outer.tls.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError) as e:
                        outer.log(f"{peer}: TLS handshake failed: {e}")
                        return
                _Connection(sock, outer, peer).serve()

        if self.listen.startswith("unix:"):
            path = self.listen[len("unix:") :]
            if os.path.exists(path):
                os.unlink(path)

            class UnixServer(socketserver.ThreadingUnixStreamServer):
                daemon_threads = True

            return UnixServer(path, Handler)
        host, port = parse_address(self.listen)

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

            def server_bind(self) -> None:
                self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().server_bind()

        return TCPServer((host, port), Handler)

    @property
    def address(self) -> str:
        if self.listen.startswith("unix:"):
            return self.listen
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def serve_forever(self) -> None:
        self.log(f"serving {self.default_device} on {self.address}", always=True)
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(address: str) -> bool:
    host = parse_address(address)[0]
    return host in ("localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------- the command


def main(args: argparse.Namespace) -> int:
    """``boltgrad device-server`` (its arguments: ``cli/device_server.py``)."""
    token = args.token if args.token is not None else config.remote_token()
    try:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        server = DeviceServer(
            args.listen, token, args.device, int(args.max_client_memory * (1 << 30)), args.verbose,
            int(args.upload_cache * (1 << 30)), (args.tls_cert, args.tls_key) if args.tls_cert else None,
            not args.no_client_binaries,
        )  # fmt: skip
        if server.tls is None and not args.listen.startswith("unix:") and not _is_loopback(args.listen):
            print("device-server: warning: without --tls-cert the token and all data cross the network in clear",
                  file=sys.stderr)  # fmt: skip
    except (ValueError, OSError, ssl.SSLError) as e:
        print(f"device-server: {e}", file=sys.stderr)
        return 2
    print(f"device-server: listening on {server.address}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
