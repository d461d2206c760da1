"""An on-disk index from a kernel's AST to its compiled program, so a new process skips lowering and rendering
the kernels an earlier one compiled.

The device compilers cache libraries by their source text, but making that text (lowering, optimising,
rendering) costs more than loading the library: tens of milliseconds a kernel, seconds for a model. This index
is keyed by what the source is made from instead:

- a structural hash of the kernel's AST (ops, dtypes, args and sources; no object identities), computed in
  one pass over its nodes;
- the renderer, the compiler's identity (``Compiler.cache_identity()``: toolchain, flags, CPU);
- the lowering options (``KernelOpts``: the heuristic's, or a search's result);
- a fingerprint of boltgrad's own code, so an edit of the lowering or a renderer never serves an old program.

An entry names the library (by its compile-cache key), the kernel's name in it and what a launch needs from the
linear program (outer size, cost, the variables in order, the flop count). Entries live in the compile cache's
``kernels/`` folder and share its atomic writes and checksums. Only devices whose compiler can find a library
by key (``Compiler.cached_library``) use the index.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import os
from typing import Any

from ..device import compile_cache
from ..helpers import sha1, sha256
from ..ir.dtypes import DType
from ..ir.node import Node
from ..ir.ops import Op

NAMESPACE = "kernels"
INDEX_VERSION = "kernel-index-v1"


class _Unstable(Exception):
    """An arg with no process-independent spelling (an object identity): such a kernel is not indexed."""


def _arg_text(arg: Any) -> str:
    if arg is None or isinstance(arg, bool | int | str):
        return repr(arg)
    if isinstance(arg, float):  # repr round-trips; the sign tells -0.0 from 0.0
        return f"f{arg!r}{'-' if math.copysign(1.0, arg) < 0 else ''}"
    if isinstance(arg, tuple | list):
        return "(" + ",".join(_arg_text(a) for a in arg) + ")"
    if isinstance(arg, DType):
        return f"dt:{arg.name}"
    if isinstance(arg, enum.Enum):
        return f"{type(arg).__name__}.{arg.name}"
    raise _Unstable(type(arg).__name__)


def structural_hash(ast: Node) -> str | None:
    """A hex digest equal for equal kernels in any process; None if an arg has no stable spelling."""
    digests: dict[Node, bytes] = {}
    try:
        for n in ast.toposort():
            text = f"{n.op.name}|{n.dtype.name}|{_arg_text(n.arg)}|".encode()
            digests[n] = sha1(text + b"".join(digests[s] for s in n.src)).digest()
    except _Unstable:
        return None
    return digests[ast].hex()


@functools.cache
def code_fingerprint() -> str:
    """A hash of boltgrad's own source files: any edit of the package invalidates every index entry."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digest = sha256(INDEX_VERSION.encode())
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".py", ".c", ".h")):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    data = f.read()
                digest.update(f"{os.path.relpath(path, root)}:{len(data)}:".encode())
                digest.update(data)
    return digest.hexdigest()


def index_key(ast_hash: str, renderer: str, compiler_identity: str, opts_key: str) -> str:
    return compile_cache.artifact_key(
        f"{ast_hash}|{renderer}|{opts_key}", compiler_identity, [code_fingerprint()], cpu=""
    )


def lookup(key: str) -> dict[str, Any] | None:
    """The entry stored under ``key``, or None."""
    path = compile_cache.find_entry(key, ".json", namespace=NAMESPACE)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def store(key: str, entry: dict[str, Any]) -> None:
    """Write the entry for ``key`` (an existing entry stays: equal keys mean equal programs)."""
    data = json.dumps(entry, sort_keys=True).encode()
    compile_cache.get_or_build(key, lambda: data, ".json", namespace=NAMESPACE)


def variables_of(ast: Node, names: list[str]) -> list[Node] | None:
    """The VAR nodes of ``ast`` in the order ``names`` gives (a launch passes their values in that order)."""
    found = {n.arg[0]: n for n in ast.toposort() if n.op is Op.VAR}
    if any(name not in found for name in names):
        return None
    return [found[name] for name in names]


def variable_names(variables: list[Node]) -> list[str]:
    return [v.arg[0] for v in variables]


__all__ = ["structural_hash", "code_fingerprint", "index_key", "lookup", "store", "variables_of", "variable_names"]
