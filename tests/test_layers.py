"""Imports point inward: the runtime knows the ports, not a store; connectors know the ports only.

Checked on the source with `ast`, as `test_core_purity` checks the core.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "orchestrator/runtime").glob("*.py")
)
CONNECTORS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "connectors").glob("*.py"))
# The ports are a leaf: the standard library and the core's values.
PORTS_MAY_IMPORT = {
    "__future__",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "datetime",
    "typing",
    "orchestrator.event",
    "orchestrator.journey",
    "orchestrator.message_status",
    "orchestrator.patient_merge",
    "orchestrator.policies",
    "orchestrator.visit_facts",
}


def imported_modules(root: Path, path: str) -> list[str]:
    """Every module `path` imports, relative imports resolved to absolute names."""
    tree = ast.parse((root / path).read_text())
    package = path.removesuffix(".py").split("/")[:-1]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = [node.module or ""]
            else:
                base = package[: len(package) - (node.level - 1)]
                base += node.module.split(".") if node.module else []
            module = ".".join(base)
            if node.module is None:
                # `from . import codec`: each name is a module of the package.
                found += [f"{module}.{alias.name}" for alias in node.names]
            else:
                found.append(module)
    return found


def reaching_into(root: Path, path: str, packages: tuple[str, ...]) -> list[str]:
    return [
        f"{path} imports {module}"
        for module in imported_modules(root, path)
        if any(module == p or module.startswith(p + ".") for p in packages)
    ]


@pytest.mark.parametrize("path", RUNTIME)
def test_runtime_module_imports_no_concrete_store(path: str) -> None:
    # The composition root (`orchestrator/service/`) turns settings into a store
    # and hands it, as ports, to the runtime; no module of `runtime/` does.
    concrete = (
        "orchestrator.store",
        "orchestrator.memory_store",
        "orchestrator.memory_unit",
        "orchestrator.memory_journal",
        "orchestrator.service",
    )
    assert reaching_into(ROOT, path, concrete) == []


# The HTTP routes get the runtime's parts through `api/deps.py`; only it and
# `create_app` know the whole `Runtime`.
API_ROUTES = sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "orchestrator/api").glob("*.py")
    if p.name not in {"app.py", "deps.py"}
)


@pytest.mark.parametrize("path", API_ROUTES)
def test_http_routes_never_receive_the_whole_runtime(path: str) -> None:
    packages = ("orchestrator.service.runtime", "orchestrator.service")
    assert reaching_into(ROOT, path, packages) == []


@pytest.mark.parametrize("path", CONNECTORS)
def test_connector_imports_neither_the_runtime_nor_the_store(path: str) -> None:
    packages = (
        "orchestrator.runtime",
        "orchestrator.store",
        "orchestrator.memory_store",
        "orchestrator.memory_unit",
    )
    assert reaching_into(ROOT, path, packages) == []


def test_ports_import_only_the_standard_library_and_core_values() -> None:
    found = set(imported_modules(ROOT, "orchestrator/ports.py"))
    assert found - PORTS_MAY_IMPORT == set()


def test_the_check_resolves_relative_imports_of_a_store(tmp_path: Path) -> None:
    module = tmp_path / "orchestrator" / "runtime" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from ..store import SqlStore\nfrom ..store.delivery import DeliveryLedger\n"
        "import orchestrator.runtime.dispatcher\nfrom ..ports import Outbox\n"
    )
    path = "orchestrator/runtime/bad.py"
    assert reaching_into(tmp_path, path, ("orchestrator.store", "orchestrator.runtime")) == [
        f"{path} imports orchestrator.store",
        f"{path} imports orchestrator.store.delivery",
        f"{path} imports orchestrator.runtime.dispatcher",
    ]


def test_importing_the_ports_and_the_sandbox_connector_loads_no_runtime_and_no_sqlalchemy() -> None:
    code = (
        "import sys, orchestrator.ports, connectors.sandbox\n"
        "print(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'sqlalchemy' or m.startswith('orchestrator.runtime')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
