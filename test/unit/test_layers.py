"""The layer rule: imports inside boltgrad/ point down the layer list only (docs/architecture.md).

Every .py file under boltgrad/ is parsed, never imported, so the check works on a partial package and sees
imports inside functions as well as at the top. Also checked here: only config.py reads the environment, and
no module imports anything outside the standard library when it is loaded (optional packages such as numpy
are imported inside the functions that use them).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "boltgrad"

# Lowest first: a module may import from its own layer and the layers before it.
LAYERS = ("base", "graph", "devices", "codegen", "schedule", "engine", "frontend", "library", "apps")
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}

BASE_MODULES = {"config", "stats", "errors", "helpers"}
SUBPACKAGE_LAYERS = {
    "ir": "graph",
    "device": "devices",
    "remote": "devices",  # the device server and its wire protocol: device-level, no tensors
    "codegen": "codegen",
    "render": "codegen",  # renderers sit beside the codegen that feeds them
    "schedule": "schedule",
    "engine": "engine",
    "nn": "library",
    "optim": "library",
    "data": "library",
    "llm": "apps",
    "cli": "apps",
}
TOP_LEVEL_APPS = {"__main__"}  # `python -m boltgrad` is the command line
LLM_MAY_IMPORT = {"base", "frontend", "library"}  # llm/ uses nn and the frontend only; cli/ may import anything

ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
NEVER_IMPORTED = {"tinygrad"}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    path: str  # e.g. "boltgrad/ir/node.py"
    line: int
    importer: str  # dotted module name, e.g. "boltgrad.ir.node"
    target: str  # the boltgrad module it loads, e.g. "boltgrad.engine.realize"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under package_dir (a package's name maps to its __init__.py)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str, package_dir: Path) -> str | None:
    """The layer of a dotted boltgrad module name, or None for a subpackage missing from the map."""
    parts = module.split(".")[1:]
    if not parts:
        return "frontend"  # the package itself: __init__.py re-exports the frontend
    head = parts[0]
    if head in SUBPACKAGE_LAYERS:
        return SUBPACKAGE_LAYERS[head]
    if len(parts) > 1 or (package_dir / head).is_dir():
        return None
    if head in BASE_MODULES:
        return "base"
    if head in TOP_LEVEL_APPS:
        return "apps"
    return "frontend"  # tensor*.py, autograd*.py, jit.py, dtypes re-exports, ...


def is_allowed(importer: str, target: str, package_dir: Path) -> bool:
    into, source = layer_of(importer, package_dir), layer_of(target, package_dir)
    if into is None or source is None:
        return False
    if importer == "boltgrad.cli" or importer.startswith("boltgrad.cli."):
        return True
    if importer == "boltgrad.llm" or importer.startswith("boltgrad.llm."):
        return source in LLM_MAY_IMPORT or target == "boltgrad.llm" or target.startswith("boltgrad.llm.")
    return RANK[source] <= RANK[into]


def _is_boltgrad(name: str) -> bool:
    return name == "boltgrad" or name.startswith("boltgrad.")


def _resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name a `from ... import` statement reads from."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def _from_target(package: str, name: str, modules: dict[str, Path], package_dir: Path) -> str:
    """`from package import name` loads the submodule package.name if there is one, else package itself."""
    candidate = f"{package}.{name}"
    if candidate in modules:
        return candidate
    if package == "boltgrad" and (name in BASE_MODULES or name in SUBPACKAGE_LAYERS):
        return candidate  # a module that is planned but not written yet
    relative = candidate.split(".")[1:]
    if relative and (package_dir.joinpath(*relative)).is_dir():
        return candidate
    return package


def _dynamic_import_name(node: ast.Call) -> str | None:
    """The constant module name of `importlib.import_module("...")` or `__import__("...")`, if any."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def boltgrad_imports(package_dir: Path) -> list[Import]:
    """Every import of a boltgrad module in the package, at any depth (inside functions and classes too)."""
    modules = module_files(package_dir)
    found = []
    for importer, path in modules.items():
        shown = path.relative_to(package_dir.parent).as_posix()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if _is_boltgrad(alias.name)]
            elif isinstance(node, ast.ImportFrom):
                package = _resolve_from(importer, is_package, node)
                if _is_boltgrad(package):
                    targets = [_from_target(package, alias.name, modules, package_dir) for alias in node.names]
            elif isinstance(node, ast.Call) and (name := _dynamic_import_name(node)) and _is_boltgrad(name):
                targets = [name]
            found += [Import(shown, node.lineno, importer, target) for target in dict.fromkeys(targets)]
    return found


def layer_violations(package_dir: Path) -> list[str]:
    messages = []
    for imp in boltgrad_imports(package_dir):
        if imp.importer == "boltgrad":
            continue  # __init__.py re-exports from every layer
        if is_allowed(imp.importer, imp.target, package_dir):
            continue
        into, source = layer_of(imp.importer, package_dir), layer_of(imp.target, package_dir)
        messages.append(f"{imp.path}:{imp.line} imports {imp.target} from layer {source} into layer {into}")
    return messages


def unmapped_modules(package_dir: Path) -> list[str]:
    return [
        f"{path.relative_to(package_dir.parent).as_posix()}: its folder has no layer; add it to SUBPACKAGE_LAYERS"
        for module, path in module_files(package_dir).items()
        if layer_of(module, package_dir) is None
    ]


def environment_reads(package_dir: Path) -> list[str]:
    """Uses of os.environ / os.getenv (and friends) outside boltgrad/config.py."""
    messages = []
    for module, path in module_files(package_dir).items():
        if module == "boltgrad.config":
            continue
        shown = path.relative_to(package_dir.parent).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        os_names = {"os"} | {
            alias.asname
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name == "os" and alias.asname
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ENVIRONMENT_NAMES
                and isinstance(node.value, ast.Name)
                and node.value.id in os_names
            ):
                messages.append(f"{shown}:{node.lineno} reads os.{node.attr}; declare the variable in config.py")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                for alias in node.names:
                    if alias.name in ENVIRONMENT_NAMES:
                        messages.append(f"{shown}:{node.lineno} imports os.{alias.name}; use config.py")
    return messages


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is loaded: not inside a function, not under TYPE_CHECKING."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def _top_level_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    return [] if node.level > 0 or not node.module else [node.module.split(".")[0]]


def third_party_imports(package_dir: Path) -> list[str]:
    """Load-time imports of anything outside the standard library, and any import of a forbidden package."""
    messages = []
    for path in module_files(package_dir).values():
        shown = path.relative_to(package_dir.parent).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _load_time_imports(tree):
            for name in _top_level_names(node):
                if name not in STDLIB and name != "boltgrad":
                    messages.append(f"{shown}:{node.lineno} imports {name} at load time; import it where it is used")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in set(_top_level_names(node)) & NEVER_IMPORTED:
                    messages.append(f"{shown}:{node.lineno} imports {name}; boltgrad never depends on it")
    return messages


# The package as it stands


def test_every_module_has_a_layer():
    problems = unmapped_modules(PACKAGE_DIR)
    assert not problems, "\n".join(problems)


def test_imports_point_down_the_layers():
    problems = layer_violations(PACKAGE_DIR)
    assert not problems, "imports against the layer rule (docs/architecture.md):\n" + "\n".join(problems)


def test_only_config_reads_the_environment():
    problems = environment_reads(PACKAGE_DIR)
    assert not problems, "\n".join(problems)


def test_no_optional_package_is_imported_at_load_time():
    problems = third_party_imports(PACKAGE_DIR)
    assert not problems, "\n".join(problems)


# The checker itself, on a small package planted with one of each mistake


PLANTED = {
    "boltgrad/__init__.py": "from boltgrad.tensor import Tensor\nfrom boltgrad.cli.main import main\n",
    "boltgrad/config.py": "import os\nDEBUG = os.environ.get('DEBUG', '0')\n",
    "boltgrad/ir/__init__.py": "from .node import Node\n",
    "boltgrad/ir/node.py": (
        "from boltgrad.config import DEBUG\n"
        "from . import ops\n"
        "def realize_now(node):\n"
        "    from ..engine import realize\n"  # line 4: graph reaching up into the engine
        "    return realize.run(node)\n"
    ),
    "boltgrad/ir/ops.py": (
        "import os as system\n"
        "import numpy as np\n"  # line 2: numpy at load time
        "LEVEL = system.getenv('LEVEL')\n"  # line 3: environment outside config.py
    ),
    "boltgrad/engine/__init__.py": "",
    "boltgrad/engine/realize.py": (
        "from boltgrad.ir import Node\n"
        "from boltgrad import tensor\n"  # line 2: frontend into engine
        "from boltgrad import config, helpers\n"
    ),
    "boltgrad/device/cpu.py": (
        "import importlib\nRENDERER = importlib.import_module('boltgrad.render.c')\n"  # line 2: codegen into devices
    ),
    "boltgrad/tensor.py": (
        "from typing import TYPE_CHECKING\n"
        "from boltgrad.engine.realize import run\n"
        "if TYPE_CHECKING:\n"
        "    import numpy\n"
        "class Tensor:\n"
        "    def numpy(self):\n"
        "        import numpy as np\n"
        "        import tinygrad\n"  # line 8: never imported, even lazily
        "        return np.zeros(1)\n"
    ),
    "boltgrad/nn/linear.py": "from boltgrad import Tensor\nfrom boltgrad.ir.node import Node\n",
    "boltgrad/llm/model.py": (
        "from boltgrad.nn.linear import Tensor\n"
        "from boltgrad.schedule import kernels\n"  # line 2: llm/ uses nn and the frontend only
    ),
    "boltgrad/cli/main.py": "from boltgrad.schedule import kernels\nfrom boltgrad.device import cpu\n",
    "boltgrad/extras/thing.py": "import json\n",  # a folder missing from the layer map
}


def _plant(root: Path) -> Path:
    for name, source in PLANTED.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "boltgrad"


def test_checker_finds_each_planted_layer_violation(tmp_path):
    package_dir = _plant(tmp_path)
    assert sorted(layer_violations(package_dir)) == [
        "boltgrad/device/cpu.py:2 imports boltgrad.render.c from layer codegen into layer devices",
        "boltgrad/engine/realize.py:2 imports boltgrad.tensor from layer frontend into layer engine",
        "boltgrad/ir/node.py:4 imports boltgrad.engine.realize from layer engine into layer graph",
        "boltgrad/llm/model.py:2 imports boltgrad.schedule from layer schedule into layer apps",
    ]
    assert unmapped_modules(package_dir) == [
        "boltgrad/extras/thing.py: its folder has no layer; add it to SUBPACKAGE_LAYERS"
    ]


def test_checker_finds_environment_and_load_time_imports(tmp_path):
    package_dir = _plant(tmp_path)
    assert environment_reads(package_dir) == ["boltgrad/ir/ops.py:3 reads os.getenv; declare the variable in config.py"]
    assert sorted(third_party_imports(package_dir)) == [
        "boltgrad/ir/ops.py:2 imports numpy at load time; import it where it is used",
        "boltgrad/tensor.py:8 imports tinygrad; boltgrad never depends on it",
    ]
