"""``boltgrad device-server``'s arguments. The server itself (``remote/server.py``, with ssl and sockets) is
imported only when the command runs, so the other commands do not pay its memory (about 6 MB resident)."""

from __future__ import annotations

import argparse
from typing import Any

from .. import config


def add_parser(sub: Any) -> None:
    p = sub.add_parser("device-server", help="serve this machine's devices to REMOTE clients")
    p.add_argument("--listen", default=config.REMOTE_ADDRESS, help="HOST:PORT or unix:PATH (default 127.0.0.1:7077)")
    p.add_argument("--token", default=None, help="required of clients; needed for a non-loopback address")
    p.add_argument("--device", default="CPU", help="the device clients get when they name none (default CPU)")
    p.add_argument("--max-client-memory", type=float, default=8.0, help="GiB one client may allocate (default 8)")
    p.add_argument("--upload-cache", type=float, default=2.0, help="GiB of uploads kept by content (default 2)")
    p.add_argument("--tls-cert", default=None, help="serve TLS with this certificate (PEM); needs --tls-key")
    p.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    p.add_argument("--no-client-binaries", action="store_true",
                   help="refuse kernel libraries compiled by clients (REMOTE:...?compile=client)")  # fmt: skip
    p.add_argument("--verbose", action="store_true", help="log every connection to stderr")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..remote import server

    return server.main(args)
