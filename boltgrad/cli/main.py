"""The ``boltgrad`` command.

boltgrad doctor          which devices work on this machine, which don't and why, and the fix
boltgrad train           train a model on Fashion-MNIST (see ``cli/train.py``)
boltgrad device-server   serve this machine's devices to REMOTE clients (see ``remote/server.py``)
boltgrad pull | generate | chat | serve   run or serve a local language model (see ``cli/llm.py``)
"""

from __future__ import annotations

import argparse
import platform
import sys

from .. import config
from ..device.registry import known_devices, probe


def doctor(args: argparse.Namespace) -> int:
    print(f"boltgrad on Python {platform.python_version()}, {platform.system()} {platform.machine()}")
    print(f"default device: {config.default_device()}   kernel cache: {config.cache_dir()}")
    failures = 0
    for name in known_devices():
        status = probe(name)
        mark = "ok " if status.ok else "-- "
        print(f"  {mark}{name:<10} {status.detail}")
        if not status.ok:
            failures += 1
            if status.fix:
                print(f"       fix: {status.fix}")
    working = [n for n in known_devices() if probe(n).ok]
    print(f"{len(working)} of {len(known_devices())} devices work")
    return 0 if probe(config.default_device().split(":")[0]).ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boltgrad", description="boltgrad: lazy tensors compiled to fused kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    p_doctor = sub.add_parser("doctor", help="check which devices work here, and how to fix the others")
    p_doctor.set_defaults(func=doctor)
    from . import train  # the library it needs loads only when a command asks for it

    train.add_parser(sub)
    from . import device_server

    device_server.add_parser(sub)
    from . import llm

    llm.add_parsers(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
