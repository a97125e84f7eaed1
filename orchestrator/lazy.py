"""Lazy package exports (PEP 562): each public name is imported from its home module on first use.

A package lists where its names live and gets its module `__getattr__` and
`__dir__` from `exports`, so that importing it loads nothing but itself:
the pure core stays free of the parsers, the store and the web service
until one is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module

__all__ = ["exports"]


def exports(
    package: str, homes: Mapping[str, str], aliases: Mapping[str, str] | None = None
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose names live where `homes` says.

    `aliases` maps an old name to the one it now stands for.
    """
    namespace = sys.modules[package].__dict__
    renamed = dict(aliases or {})

    def __getattr__(name: str) -> object:
        target = renamed.get(name, name)
        home = homes.get(target)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(home, package), target)
        namespace[name] = value  # looked up once
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return __getattr__, __dir__
