"""Every package's `__all__` names what it exports, no more and no less."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import connectors
import orchestrator

MODULES = [
    name
    for package in (orchestrator, connectors)
    for name in [package.__name__]
    + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
]


def _public(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", module.__name__).startswith(module.__name__)
    }


# Command modules are entry points, not API.
API_MODULES = [n for n in MODULES if not n.startswith("orchestrator.cli")]


@pytest.mark.parametrize("name", API_MODULES)
def test_every_module_declares_all_and_it_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", API_MODULES)
def test_all_lists_every_public_name_defined_in_the_module(name: str) -> None:
    module = importlib.import_module(name)
    if module.__name__.count(".") and hasattr(module, "__path__"):
        return  # a package re-exports; its members are checked where they live
    defined = {
        n for n in _public(module) if getattr(getattr(module, n), "__module__", None) == name
    }
    assert defined <= set(module.__all__), sorted(defined - set(module.__all__))


def test_a_public_name_keeps_its_meaning_once_its_submodule_is_loaded() -> None:
    # A fresh interpreter: the submodule loads before anyone asks the package for the name.
    script = (
        "import orchestrator.simulate, orchestrator; "
        "assert callable(orchestrator.simulate), orchestrator.simulate; "
        "from orchestrator import simulate; assert callable(simulate)"
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=Path(orchestrator.__file__).parents[1]
    )
