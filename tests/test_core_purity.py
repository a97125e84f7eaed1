"""The pure core imports no I/O and never reads the clock.

Checked on the source of each core module, and on what importing the core
really loads (its closure, package `__init__` files included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
CORE = [
    "__init__.py",
    "actions.py",
    "engine.py",
    "fold.py",
    "frozen.py",
    "lazy.py",
    "settle.py",
    "versions.py",
    "errors.py",
    "event.py",
    "event_schema.py",
    "limits.py",
    "message_status.py",
    "journey.py",
    "visit_facts.py",
    "patient_merge.py",
    "recipients.py",
    "decisions.py",
    "sms.py",
    "inbound_sms.py",
    "flows/__init__.py",
    "flows/checks.py",
    "flows/model.py",
    "flows/plan.py",
    "flows/schema.py",
    "flows/timing.py",
    "policies/__init__.py",
    "policies/consent.py",
    "policies/frequency_cap.py",
    "policies/gate.py",
    "policies/holdout.py",
    "policies/pacing.py",
    "insight/__init__.py",
    "insight/compare.py",
    "insight/figures.py",
    "insight/visits.py",
    "insight/privacy.py",
    "insight/worksheet.py",
    "policies/quiet_hours.py",
    "policies/staleness.py",
]
STDLIB = {
    "__future__",
    "bisect",
    "collections",
    "csv",
    "statistics",
    "sys",
    "dataclasses",
    "datetime",
    "enum",
    "fnmatch",
    "functools",
    "hashlib",
    "heapq",
    "importlib",  # the lazy package `__init__` files
    "itertools",
    "json",
    "operator",
    "re",
    "types",
    "typing",
    "typing_extensions",  # the typing backport: TypeAliasType on Python 3.11
    "unicodedata",  # the GSM-7 forms of accented letters (sms.py)
    "zoneinfo",
}
# Parsing libraries allowed at the boundary of the core, and where.
BOUNDARY = {"pydantic": {"event_schema.py", "flows/schema.py"}, "phonenumbers": {"event_schema.py"}}
# Inside the package, the core may import only the core (and the virtual clock).
CORE_MODULES = {
    c.removesuffix(".py").removesuffix("__init__").rstrip("/").replace("/", ".") for c in CORE
} | {
    "clock",
    "flows",
    "policies",
    "insight",
}
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("date", "today"),
    ("time", "time"),
    ("time", "sleep"),
}


def _run_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except what only the type checker reads (`if TYPE_CHECKING:` blocks)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop(0)  # breadth first, as `ast.walk`
        nodes.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            pending += node.orelse
        else:
            pending += ast.iter_child_nodes(node)
    return nodes


def _imports(root: Path, path: str) -> list[tuple[str, int]]:
    tree = ast.parse((root / path).read_text())
    package = path.rsplit("/", 1)[0].replace("/", ".") if "/" in path else ""
    found = []
    for node in _run_time_nodes(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.module or "", 0))
            else:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                found.append((target, node.level))
    return found


def import_violations(root: Path, path: str) -> list[str]:
    violations = []
    for module, level in _imports(root, path):
        top = module.split(".")[0]
        if level:
            if module not in CORE_MODULES and module != "":
                violations.append(f"{path} imports .{module}, which is not core")
        elif top in BOUNDARY:
            if path not in BOUNDARY[top]:
                violations.append(f"{path} imports {top}, allowed only in {sorted(BOUNDARY[top])}")
        elif top not in STDLIB:
            violations.append(f"{path} imports {module}")
    return violations


def clock_and_file_violations(root: Path, path: str) -> list[str]:
    violations = []
    for node in ast.walk(ast.parse((root / path).read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in FORBIDDEN_CALLS:
                violations.append(f"{path}:{node.lineno} calls {func.value.id}.{func.attr}")
        elif isinstance(func, ast.Name) and func.id in {"open", "print", "input"}:
            violations.append(f"{path}:{node.lineno} calls {func.id}")
    return violations


@pytest.mark.parametrize("path", CORE)
def test_core_module_imports_only_the_standard_library_and_the_core(path: str) -> None:
    assert import_violations(PACKAGE, path) == []


@pytest.mark.parametrize("path", CORE)
def test_core_module_never_reads_the_wall_clock_or_opens_files(path: str) -> None:
    assert clock_and_file_violations(PACKAGE, path) == []


def test_the_checks_catch_io_imports_shell_imports_and_clock_reads(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import os\nfrom .templates import TemplateSet\nfrom datetime import datetime\n"
        "def f():\n    return datetime.now(), open('x')\n"
    )
    assert import_violations(tmp_path, "bad.py") == [
        "bad.py imports os",
        "bad.py imports .templates, which is not core",
    ]
    assert clock_and_file_violations(tmp_path, "bad.py") == [
        "bad.py:5 calls datetime.now",
        "bad.py:5 calls open",
    ]


# Core modules whose closure holds a parsing library by design: the boundary
# (pydantic models and the checks that read them); the file checks above keep it there.
BOUNDARY_CLOSURE = {"event_schema.py", "flows/schema.py", "flows/checks.py"}
_CLOSURE = """
import importlib, json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _module_name(path: str) -> str:
    dotted = path.removesuffix(".py").removesuffix("__init__").rstrip("/").replace("/", ".")
    return "orchestrator" + (f".{dotted}" if dotted else "")


def closure_violations(*modules: str) -> list[str]:
    """What importing `modules` in a fresh interpreter loads beyond the stdlib and the core."""
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", _CLOSURE, *modules],
            capture_output=True,
            text=True,
            check=True,
            cwd=PACKAGE.parent,
        ).stdout
    )
    core = {_module_name(path) for path in CORE} | {"orchestrator.clock"}
    allowed = set(sys.stdlib_module_names) | {"typing_extensions"}
    return [
        name
        for name in loaded
        if (name.split(".")[0] == "orchestrator" and name not in core)
        or (
            name.split(".")[0] != "orchestrator"
            and name.split(".")[0] not in allowed
            # The interpreter's build settings, which `sysconfig` loads on demand.
            and not name.startswith("_sysconfigdata_")
        )
    ]


def test_importing_the_engine_loads_no_parser_database_or_template_library() -> None:
    assert closure_violations("orchestrator.engine") == []


def test_the_whole_core_imports_only_the_standard_library_and_the_core() -> None:
    pure = [_module_name(path) for path in CORE if path not in BOUNDARY_CLOSURE]
    assert closure_violations(*pure) == []


def test_the_closure_check_catches_a_library_loaded_through_a_package() -> None:
    found = closure_violations("orchestrator.flows.loader")
    assert "yaml" in found
    assert "orchestrator.flows.loader" in found
