"""Quick builders for the frozen core values the engine makes on every decision.

A frozen dataclass's `__init__` sets each field through `object.__setattr__`
(its own `__setattr__` refuses), a call per field: a scheduled message's
nineteen fields cost several times what plain attribute stores do. `builder`
returns a function that fills a *draft* instance (a plain class with the same
slots, where a store is one bytecode) and then gives it the frozen class. The
value is then exactly what the constructor makes: the same type, fields,
equality, hash and immutability. The builder has the constructor's signature
(its parameters, their order and defaults, typed through a `ParamSpec` so that
mypy checks each call), and is only for classes whose `__init__` is the one
`dataclass` writes and that have no `__post_init__`, `__new__` or keyword-only
or `init=False` fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, ParamSpec, TypeVar

__all__ = ["builder"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def builder(cls: Callable[_P, _T]) -> Callable[_P, _T]:
    """A function with `cls`'s constructor's parameters, returning the same value.

    Raises:
        TypeError: `cls` is not a slotted dataclass the builder can make exactly.
    """
    if not isinstance(cls, type) or not is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{getattr(cls, '__name__', cls)}: expected a dataclass with slots")
    name = cls.__name__
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{name}: a builder would skip its __post_init__")
    if any("__new__" in base.__dict__ for base in cls.__mro__[:-1]):
        raise TypeError(f"{name}: a builder would skip its __new__")
    # `dataclass` keeps an `__init__` written in the class; the one it writes
    # itself it compiles from a string.
    init = cls.__dict__.get("__init__")
    if init is None or init.__code__.co_filename != "<string>":
        raise TypeError(f"{name}: a builder would skip its own __init__")
    own = fields(cls)
    if any(f.kw_only or not f.init for f in own):
        raise TypeError(f"{name}: a builder takes every field by position or name")
    names = [f.name for f in own]
    if tuple(cls.__dict__["__slots__"]) != tuple(names):
        raise TypeError(f"{name}: its slots are not exactly its fields")
    # Same slots in the same order, nothing else: the layouts match, so the
    # draft may take the frozen class (`__class__` assignment checks that).
    draft = type(f"_{name}Draft", (), {"__slots__": tuple(names)})
    scope: dict[str, Any] = {"_new": object.__new__, "_draft": draft, "_frozen": cls}
    scope["_unset"] = object()
    params, body = [], []
    for f in own:
        if f.default is not MISSING:
            scope[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_unset")
            body.append(f"    if {f.name} is _unset: {f.name} = _factory_{f.name}()\n")
        else:
            params.append(f.name)
        body.append(f"    _o.{f.name} = {f.name}\n")
    source = (
        f"def build({', '.join(params)}):\n"
        "    _o = _new(_draft)\n"
        f"{''.join(body)}"
        "    _o.__class__ = _frozen\n"
        "    return _o\n"
    )
    exec(source, scope)  # as dataclasses writes `__init__`: one store per field, no loop
    build: Callable[_P, _T] = scope["build"]
    build.__qualname__ = build.__name__ = f"build_{name}"
    return build
