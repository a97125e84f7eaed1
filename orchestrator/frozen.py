"""Quick builders for the frozen core values the engine makes on every decision.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`
(its own `__setattr__` refuses), a call per field: a scheduled message's
nineteen fields cost several times what plain attribute stores do. `builder`
returns a function that fills a *draft* instance (a plain class with the same
slots, where a store is one bytecode) and then gives it the frozen class. The
value is then exactly what the constructor makes: the same type, fields,
equality, hash and immutability. Defaults and `__post_init__` are not run:
a builder takes every field, and is only for classes without a
`__post_init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

__all__ = ["builder"]

_T = TypeVar("_T")


def builder(cls: type[_T]) -> Callable[..., _T]:
    """A function taking every field of `cls` (by position or name) and returning the value.

    Raises:
        TypeError: `cls` is not a slotted dataclass without `__post_init__`.
    """
    if not is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: expected a dataclass with slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: a builder would skip its __post_init__")
    names = [f.name for f in fields(cls)]
    if tuple(cls.__dict__["__slots__"]) != tuple(names):
        raise TypeError(f"{cls.__name__}: its slots are not exactly its fields")
    # Same slots in the same order, nothing else: the layouts match, so the
    # draft may take the frozen class (`__class__` assignment checks that).
    draft = type(f"_{cls.__name__}Draft", (), {"__slots__": tuple(names)})
    body = "".join(f"    _o.{name} = {name}\n" for name in names)
    source = (
        f"def build({', '.join(names)}):\n"
        "    _o = _new(_draft)\n"
        f"{body}"
        "    _o.__class__ = _frozen\n"
        "    return _o\n"
    )
    scope: dict[str, Any] = {"_new": object.__new__, "_draft": draft, "_frozen": cls}
    exec(source, scope)  # as dataclasses writes `__init__`: one store per field, no loop
    build: Callable[..., _T] = scope["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
