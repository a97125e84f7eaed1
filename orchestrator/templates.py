"""Message templates on disk: where they live, what they may use, whether they render.

Layout: `templates/<channel>/<language>/<name>.j2`. An SMS template is the
body; an email template defines the blocks `subject`, `text` and `html`.
Templates render with `StrictUndefined`, so a misspelt variable is an error,
not an empty string. The SMS context has no service, provider or diagnosis in
it at all, so an SMS cannot name one. An SMS body leaves through
`sms.normalise`, so typography (Babel's narrow no-break space, curly quotes)
never forces UCS-2. Whether a flow's templates exist, render and fit in an
SMS's segments is `template_check`'s question.

A flow version published in the console keeps its own templates (`stored`,
name -> text): they are read before the files, so a later edit, in a draft or
on disk, never changes what a running version sends.

A template is typed in the console, so it is hostile until rendered. It
renders in `_BoundedEnvironment`: Jinja's immutable sandbox (unsafe attributes
refused, no list or dict mutated, ranges bounded), no `lipsum`, no constant
folded by the compiler, and every render within one budget (`_Budget`, opened
by the outermost render function, `_guarded`, however the template is
rendered): `MAX_LOOP_STEPS` steps, every loop's step, macro or caller call,
include and block counting (nested ones multiply); `MAX_RENDER_SECONDS`,
checked at each step; `MAX_OUTPUT` characters output. No value made may print
longer than `MAX_REPEAT` characters: what is printed, each operand of `~`,
`+`, `*` and `%`, every filter's input, the widths and counts filters, `%`
and `str.format` take, and the strings `replace`, `center`, `join`,
`translate`... would make are checked before they are made; a recursive loop
is refused. Every error raised while rendering is a `TemplateError` (a
problem shown, never a crash): "template sms/en/x.j2 line 3: too expensive: ...".

Compiling a template costs far more than rendering it, and the console makes
a `TemplateSet` per request (a draft's edits over a version's templates): the
compiled code is kept per process by environment (class and options,
escaping among them), name and source (`_CompiledCode`), bounded by entries
and by characters of source, sources over `MAX_CACHED_SOURCE` never kept; so
a set compiles only the templates whose text it has never seen. A command
line process may keep that code on disk as well (`keep_compiled_in`,
`template_cache.DiskCode`), for the next process: the key is then the same in
every process (`_code_identity` names callables; `_code_version` adds Jinja's
and Python's versions and the text of this module and of Jinja's compiler).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import marshal
import re
import secrets
import string
import sys
import threading
import time
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.bccache import Bucket
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment
from jinja2.utils import _PassArg

from .errors import TemplateError
from .event import Channel
from .sms import normalise
from .template_cache import DiskCode, TemplateCacheError

__all__ = [
    "EMAIL_BLOCKS",
    "MAX_LOOP_STEPS",
    "Rendered",
    "TemplateSet",
    "TooExpensive",
    "keep_compiled_in",
]

EMAIL_BLOCKS = ("subject", "text", "html")
# The longest string or sequence one operation may make, the largest width or
# count a filter may take, and the largest exponent `**` may take: far above
# what a message needs, far below what stalls a process.
MAX_REPEAT = 100_000
MAX_EXPONENT = 64
# The largest number `*` and `**` may make (a message counts, it does not do cryptography).
MAX_INT_BITS = 4096
# The steps one render may take, all loops, macro calls and includes together:
# a message loops over a handful of items, and 10,000 steps take milliseconds.
MAX_LOOP_STEPS = 10_000
# The characters one render may output: an SMS or an email body is never that long.
MAX_OUTPUT = 100_000
# The time one render may take, checked at each step.
MAX_RENDER_SECONDS = 2.0
# The filters every `for` iterates through and every `~` operand goes through
# (no template can name them: they have a dot).
_COUNTED = "orchestrator.counted"
_SIZED = "orchestrator.sized"
# The str methods whose result can be far longer than their arguments.
_GROWING = frozenset(
    {"replace", "center", "ljust", "rjust", "zfill", "expandtabs", "join", "translate"}
)
# The clock a render's deadline is read from (tests replace it).
_clock = time.monotonic


class TooExpensive(SecurityError):
    """A render went past one of its bounds: `reason`, at template line `line` if known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line if line is not None else _line_here()


def _line_here() -> int | None:
    """The template line the render under way is at (from the compiled code's frame)."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            line: int = template.get_corresponding_lineno(frame.f_lineno)
            return line
        frame = frame.f_back
    return None


class _Budget:
    """What the render under way has spent: steps, characters output, and its deadline."""

    __slots__ = ("deadline", "depth", "output", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.output = 0
        self.depth = 0
        self.deadline = _clock() + MAX_RENDER_SECONDS


# The budget of the render under way: one per render, per thread.
_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _step(line: int | None = None) -> None:
    """Count one step (a loop's, a macro call, an include) against the render's budget."""
    budget = _budget.get()
    if budget is None:  # every render opens one (`_guarded`): fail closed
        raise TooExpensive("rendered outside a budget", line)
    budget.steps += 1
    if budget.steps > MAX_LOOP_STEPS:
        raise TooExpensive(
            f"more than {MAX_LOOP_STEPS:,} steps (loops, macro calls and includes "
            "together: nested ones multiply)",
            line,
        )
    if _clock() > budget.deadline:
        raise TooExpensive(f"longer than {MAX_RENDER_SECONDS:g} seconds", line)


def _counted(iterable: Iterable[Any], line: int) -> Iterator[Any]:
    """`iterable`, each item counted against the render's budget."""
    for item in iterable:
        _step(line)
        yield item


def _guarded(render: Callable[[Any], Iterator[str]]) -> Callable[[Any], Iterator[str]]:
    """A compiled render function (a template's root or a block) that renders within a budget.

    The outermost one opens the render's budget if none is open and counts the
    characters output; one entered inside another (an include, a block, a
    parent template) is a step.
    """

    def guarded(context: Any) -> Iterator[str]:
        budget = _budget.get()
        opened = None
        if budget is None:
            budget = _Budget()
            opened = _budget.set(budget)
        level = budget.depth
        if level:
            _step()
        budget.depth += 1
        try:
            for chunk in render(context):
                if not level:
                    budget.output += len(chunk)
                    if budget.output > MAX_OUTPUT:
                        raise TooExpensive(f"more than {MAX_OUTPUT:,} characters of output")
                yield chunk
        finally:
            budget.depth -= 1
            if opened is not None:
                # A generator dropped unfinished may be closed from another context.
                with contextlib.suppress(ValueError):
                    _budget.reset(opened)

    return guarded


def _size(value: Any, limit: int = MAX_REPEAT) -> int:
    """At least how many characters `value` prints as; walked no further than past `limit`."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += 2 + len(item)
            if total <= limit:
                stack.extend(item)
                if isinstance(item, dict):
                    stack.extend(item.values())
        elif isinstance(item, int):
            total += 1 + item.bit_length() // 4
        else:
            total += 1
    return total


def _sized(value: Any) -> Any:
    """`value`, refused if it prints longer than `MAX_REPEAT` characters."""
    if _size(value) > MAX_REPEAT:
        raise TooExpensive(f"a value longer than {MAX_REPEAT:,} characters")
    return value


def _too_wide(number: Any) -> bool:
    return isinstance(number, int) and not isinstance(number, bool) and number > MAX_REPEAT


def _check_printf(text: Any, args: Any) -> None:
    """Refuse `text % args` when a width or precision would make it too long."""
    if not isinstance(text, str):
        return
    star = False
    for found in _PRINTF.findall(text):
        for number in found:
            if number == "*":
                star = True
            elif number and (len(number) > 6 or int(number) > MAX_REPEAT):
                raise TooExpensive(f"a width above {MAX_REPEAT:,}")
    values = args if isinstance(args, tuple | list) else (args,)
    if isinstance(args, Mapping):
        values = tuple(args.values())
    if star and any(_too_wide(v) for v in values):
        raise TooExpensive(f"a width above {MAX_REPEAT:,}")


def _check_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse `text.format(...)` when a width or precision would make it too long."""
    nested = False
    for _, _, spec, _ in string.Formatter().parse(text):
        if not spec:
            continue
        nested = nested or "{" in spec
        for number in re.findall(r"\d+", spec):
            if len(number) > 6 or int(number) > MAX_REPEAT:
                raise TooExpensive(f"a width above {MAX_REPEAT:,}")
    if nested and any(_too_wide(v) for v in (*args, *kwargs.values())):
        raise TooExpensive(f"a width above {MAX_REPEAT:,}")


# A printf conversion's width and precision (`%-10.3f`, `%*d`, `%(name)5s`).
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _grown(text: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """At most how long `text.<method>(*args)` is (a bound worked out before calling it)."""
    given = [*args, *kwargs.values()]
    if method == "replace":
        old, new = [*given, "", ""][:2]
        if not isinstance(old, str) or not isinstance(new, str):
            return 0  # str.replace refuses it
        count = given[2] if len(given) > 2 and isinstance(given[2], int) else -1
        found = text.count(old) if old else len(text) + 1
        if count >= 0:
            found = min(found, count)
        return len(text) + found * max(0, len(new) - len(old))
    if method == "expandtabs":
        size = given[0] if given and isinstance(given[0], int) else 8
        return len(text) + text.count("\t") * max(0, size)
    if method == "join":
        items = given[0] if given else ()
        count = len(items) if isinstance(items, Sized) else 0
        return _size(items) + len(text) * max(0, count - 1)
    if method == "translate":
        table = given[0] if given else None
        longest = 1
        if isinstance(table, Mapping):
            longest = max((_size(v) for v in table.values()), default=1)
        return len(text) * longest
    width = given[0] if given and isinstance(given[0], int) else 0
    return max(len(text), width)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Jinja's filter `name`, refusing what would make a value past `MAX_REPEAT`.

    Every value given must print within `MAX_REPEAT` characters and every
    number within `MAX_REPEAT` (a width, a count: `center`, `indent`, `batch`,
    `slice`, `truncate`...), except `format`'s, whose widths are checked as `%`'s
    are; `replace`, `indent`, `wordwrap` and `join` are bounded by what they make.
    """
    passing = _PassArg.from_obj(function)
    passed = 1 if passing is not None else 0
    signature = inspect.signature(function)

    # Given the context, so that the compiler never calls it on constants (and
    # gives `function` what it asks for).
    @jinja2.pass_context
    def bounded(context: jinja2.runtime.Context, *args: Any, **kwargs: Any) -> Any:
        if passing is _PassArg.context:
            args = (context, *args)
        elif passing is _PassArg.eval_context:
            args = (context.eval_ctx, *args)
        elif passing is _PassArg.environment:
            args = (context.environment, *args)
        given = [*args[passed:], *kwargs.values()]
        for value in given:
            _sized(value)
        if name == "format":
            _check_printf(args[passed], kwargs or tuple(args[passed + 1 :]))
        elif any(_too_wide(v) for v in given[1:]):
            raise TooExpensive(f"a width or count above {MAX_REPEAT:,}")
        if name in ("replace", "indent", "wordwrap", "join"):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            _check_filter(name, bound.arguments)
        return function(*args, **kwargs)

    return bounded


def _check_filter(name: str, given: Mapping[str, Any]) -> None:
    if name == "replace":
        text = str(given["s"])
        made = _grown(text, "replace", (str(given["old"]), str(given["new"]), given["count"]), {})
    elif name == "indent":
        width = given["width"]
        made = len(str(given["s"])) + (str(given["s"]).count("\n") + 1) * (
            width if isinstance(width, int) else len(str(width))
        )
    elif name == "wordwrap":
        text, width = str(given["s"]), max(1, int(given["width"]))
        wrap = given["wrapstring"]
        made = len(text) + (len(text) // width + 1) * len(str(wrap or "\n"))
    else:  # join
        value = given["value"]
        count = len(value) if isinstance(value, Sized) else MAX_REPEAT
        made = _size(value) + len(str(given["d"])) * max(0, count - 1)
    if made > MAX_REPEAT:
        raise TooExpensive(f"a string longer than {MAX_REPEAT:,} characters")


class _BoundedTemplate(jinja2.Template):
    """A template whose render functions render within a budget (`_guarded`)."""

    @classmethod
    def _from_namespace(
        cls,
        environment: jinja2.Environment,
        namespace: MutableMapping[str, Any],
        globals: MutableMapping[str, Any],
    ) -> jinja2.Template:
        template = super()._from_namespace(environment, namespace, globals)
        template.root_render_func = _guarded(template.root_render_func)
        template.blocks = {name: _guarded(block) for name, block in template.blocks.items()}
        return template


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with every render bounded: steps, time, output, the values it makes.

    No template mutates a list or a dict (the immutable sandbox), none folds
    constants when compiled (`optimized=False`: `'x'|center(n)` is not made by
    the compiler), and there is no `lipsum`.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    template_class = _BoundedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_sized, **options)
        self.globals.pop("lipsum", None)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters[_COUNTED] = _counted
        self.filters[_SIZED] = _sized

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            if loop.recursive:
                raise jinja2.TemplateSyntaxError(
                    "a recursive loop is not allowed", loop.lineno, name, filename
                )
            loop.iter = nodes.Filter(
                loop.iter, _COUNTED, [nodes.Const(loop.lineno)], [], None, None, lineno=loop.lineno
            )
        for joined in list(tree.find_all(nodes.Concat)):  # `~`: each operand bounded
            joined.nodes = [
                nodes.Filter(item, _SIZED, [], [], None, None, lineno=item.lineno)
                for item in joined.nodes
            ]
        return tree

    def call(
        __self,  # Jinja's signature: no name a keyword argument could clash with
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if isinstance(__obj, Macro):  # a macro's or a caller's call is a step
            _step()
        text = getattr(__obj, "__self__", None)
        if isinstance(text, str):
            method = getattr(__obj, "__name__", "")
            if method in _GROWING:
                if method == "join" and args and not isinstance(args[0], Sized):
                    args = (list(args[0]), *args[1:])
                if _grown(text, method, args, kwargs) > MAX_REPEAT:
                    raise TooExpensive(f"a string longer than {MAX_REPEAT:,} characters")
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map` (sandboxed by Jinja), their widths bounded."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        text: str = value.__self__
        mapping = value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if mapping and args and isinstance(args[0], Mapping):
                _check_format(text, (), args[0])
            else:
                _check_format(text, args, kwargs)
            return wrapper(*args, **kwargs)

        return bounded

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        _sized(left)
        _sized(right)
        if operator == "**" and isinstance(right, int):
            bits = left.bit_length() if isinstance(left, int) else 1
            if abs(right) > MAX_EXPONENT or bits * abs(right) > MAX_INT_BITS:
                raise TooExpensive(
                    f"an exponent above {MAX_EXPONENT} or a number past {MAX_INT_BITS} bits"
                )
        elif operator == "*":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                raise TooExpensive(f"a number past {MAX_INT_BITS:,} bits")
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | bytes | list | tuple)
                    and isinstance(times, int)
                    and _size(sequence) * times > MAX_REPEAT
                ):
                    raise TooExpensive(f"a value longer than {MAX_REPEAT:,} characters")
        elif operator == "%":
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)


class _Sourced(Bucket):
    """A bucket that knows how long its source is (what the cache weighs it by)."""

    def __init__(self, environment: jinja2.Environment, key: str, size: int) -> None:
        super().__init__(environment, key, "")
        self.size = size


def _named(value: Any, depth: int = 0) -> Any:
    """`value`, or a callable's qualified name (its repr holds an address, another each run)
    with what its closure holds (two `select_autoescape` closures share a name)."""
    if not callable(value):
        return value
    name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
    cells = getattr(value, "__closure__", None) or ()
    if not cells or depth > 2:
        return name
    held = []
    for cell in cells:
        try:
            held.append(_named(cell.cell_contents, depth + 1))
        except ValueError:  # an empty cell
            held.append(None)
    return (name, tuple(held))


def _passes(functions: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Filters' or tests' names with what they are passed: the compiler writes both in."""
    return sorted(
        (name, getattr(_PassArg.from_obj(function), "name", None))
        for name, function in functions.items()
    )


def _code_identity(environment: jinja2.Environment) -> str:
    """What the code compiled in `environment` depends on besides the name and source.

    Stable from one process to the next (the key of code kept on disk):
    callables by name, not by repr.
    """
    return repr(
        (
            type(environment).__module__,
            type(environment).__qualname__,
            _named(environment.autoescape),
            environment.optimized,
            _named(environment.finalize),
            environment.trim_blocks,
            environment.lstrip_blocks,
            environment.keep_trailing_newline,
            environment.newline_sequence,
            environment.block_start_string,
            environment.block_end_string,
            environment.variable_start_string,
            environment.variable_end_string,
            environment.comment_start_string,
            environment.comment_end_string,
            environment.line_statement_prefix,
            environment.line_comment_prefix,
            environment.is_async,
            sorted(getattr(environment, "intercepted_binops", ())),
            sorted(getattr(environment, "intercepted_unops", ())),
            sorted(environment.extensions),
            _passes(environment.filters),
            _passes(environment.tests),
        )
    )


class _CompiledCode(jinja2.BytecodeCache):
    """Compiled template code by environment, name and source, shared by every set of a process.

    Jinja's own cache is per environment, and an environment per set; this one
    outlives them. The key holds what the code depends on (`_code_identity`:
    the environment's class and options, escaping among them), and a code
    object is immutable, so it is shared as it is. A draft is a new source at
    each keystroke, so what is kept is bounded twice: `entries` codes, and
    `chars` characters of source in all (code weighs a few times its
    source); a source longer than `MAX_CACHED_SOURCE` is compiled each time.
    """

    def __init__(self, entries: int, chars: int) -> None:
        self.entries = entries
        self.chars = chars
        # A second tier, on disk, that outlives the process (`keep_compiled_in`); off by default.
        self.disk: DiskCode | None = None
        self._code: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        # `_code_identity` by environment, worked out at its first template (it reads every
        # filter and test: 0.1 ms). Jinja's own contract: an environment is not changed
        # once a template was loaded.
        self._identities: weakref.WeakKeyDictionary[jinja2.Environment, str] = (
            weakref.WeakKeyDictionary()
        )

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        # The file name too: the code carries it (tracebacks name it).
        key = hashlib.sha256(
            f"{_code_version()[0]}\0{self._identity(environment)}\0{name}\0{filename}\0{source}".encode()
        ).hexdigest()
        bucket = _Sourced(environment, key, len(source))
        self.load_bytecode(bucket)
        return bucket

    def _identity(self, environment: jinja2.Environment) -> str:
        with self._lock:
            found = self._identities.get(environment)
        if found is None:
            found = _code_identity(environment)
            with self._lock:
                self._identities[environment] = found
        return found

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            found = self._code.get(bucket.key)
            if found is not None:
                self._code.move_to_end(bucket.key)
        bucket.code = found[0] if found is not None else None
        disk = self.disk
        if bucket.code is None and disk is not None and isinstance(bucket, _Sourced):
            code = disk.load(bucket.key)
            if code is not None:
                bucket.code = code
                self._keep(bucket.key, code, bucket.size)

    def dump_bytecode(self, bucket: Bucket) -> None:
        size = bucket.size if isinstance(bucket, _Sourced) else MAX_CACHED_SOURCE + 1
        if size > MAX_CACHED_SOURCE:
            return
        disk = self.disk
        if disk is not None and bucket.code is not None:
            disk.store(bucket.key, bucket.code)
        self._keep(bucket.key, bucket.code, size)

    def _keep(self, key: str, code: Any, size: int) -> None:
        with self._lock:
            previous = self._code.pop(key, None)
            if previous is not None:
                self._weight -= previous[1]
            self._code[key] = (code, size)
            self._weight += size
            while len(self._code) > self.entries or self._weight > self.chars:
                _, (_, dropped) = self._code.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        with self._lock:
            self._code.clear()
            self._weight = 0

    def __len__(self) -> int:
        return len(self._code)


# Jinja's modules that turn a source into code: a patched Jinja2 of the same version
# compiles differently.
_JINJA_COMPILING = ("compiler", "environment", "idtracking", "lexer", "nodes", "optimizer",
                    "parser", "sandbox")  # fmt: skip


def _module_text(module: types.ModuleType) -> bytes | None:
    """`module`'s source, or its code marshalled when only that was installed; None: neither."""
    with contextlib.suppress(OSError, TypeError):
        return Path(module.__file__ or "").read_bytes()
    loader = getattr(module, "__loader__", None)
    with contextlib.suppress(Exception):  # a loader may raise anything
        source = loader.get_source(module.__name__)  # type: ignore[union-attr]
        if isinstance(source, str):
            return source.encode()
    with contextlib.suppress(Exception):
        code = loader.get_code(module.__name__)  # type: ignore[union-attr]
        if isinstance(code, types.CodeType):
            return marshal.dumps(code)
    return None


@functools.cache
def _code_version() -> tuple[str, bool]:
    """What every compiled code depends on: Jinja's and Python's versions (marshal's format
    among them), Jinja's compiling modules and this one (its `_parse` rewrites every
    template); and whether that is the same in the next process.

    A module whose text cannot be read (an unusual install) is stood for by a token
    of this process's: code is still shared within it, never kept on disk.
    """
    parts = [jinja2.__version__, sys.version, importlib.util.MAGIC_NUMBER.hex()]
    stable = True
    modules: list[types.ModuleType | None] = [sys.modules[__name__]]
    for name in _JINJA_COMPILING:
        try:
            modules.append(importlib.import_module(f"jinja2.{name}"))
        except ImportError:  # a later Jinja2 without it: the key is this process's alone
            modules.append(None)
    for module in modules:
        text = _module_text(module) if module is not None else None
        if text is None:
            stable = False
            parts.append(secrets.token_hex(16))
        else:
            parts.append(hashlib.sha256(text).hexdigest())
    return ":".join(parts), stable


def keep_compiled_in(directory: Path | None) -> None:
    """Keep compiled template code in `directory` too, for later processes (None: in memory only).

    Raises:
        UnsafeCacheDirError: `directory` could be written by someone else (nothing is kept there).
        TemplateCacheError: the code's key would not be the same in the next process.
    """
    _COMPILED.disk = None
    if directory is None:
        return
    if not _code_version()[1]:
        raise TemplateCacheError("the template code's own source cannot be read")
    _COMPILED.disk = DiskCode(directory)


# The longest source whose code is kept: every shipped template is under 4 KiB.
MAX_CACHED_SOURCE = 16 * 1024
# Enough for every template of every flow in a few languages, and the drafts'
# edits: about 4 MB of source, some 30 MB of code.
_COMPILED = _CompiledCode(entries=4096, chars=4 * 1024 * 1024)
# The sets `TemplateSet.over` made, kept per process (drafts being edited at once).
_OVERS_KEPT = 8
_OVERS: OrderedDict[str, TemplateSet] = OrderedDict()
_OVERS_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None


class TemplateSet:
    """The templates under one directory (under `stored` texts), through a sandboxed Jinja2."""

    def __init__(self, root: Path, stored: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.stored: Mapping[str, str] = dict(stored or {})
        # Two environments over the same files: the HTML part of an email is
        # escaped, its text part and subject and every SMS are not.
        self._plain = self._environment(autoescape=False)
        self._html = self._environment(autoescape=True)

    def _environment(self, *, autoescape: bool) -> SandboxedEnvironment:
        return _BoundedEnvironment(
            loader=jinja2.ChoiceLoader(
                [jinja2.DictLoader(dict(self.stored)), jinja2.FileSystemLoader(str(self.root))]
            ),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            bytecode_cache=_COMPILED,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def over(self, stored: Mapping[str, str]) -> TemplateSet:
        """These templates with `stored` read first (and this set's own stored ones under them).

        The same templates over the same directory give the same set back: the
        last `_OVERS_KEPT` of the process are kept (each holds its compiled
        templates, so the memo is one for all sets, not one per set).
        """
        merged = {**self.stored, **stored}
        key = hashlib.sha256(
            json.dumps([str(self.root), merged], sort_keys=True).encode()
        ).hexdigest()
        with _OVERS_LOCK:
            found = _OVERS.get(key)
            if found is not None:
                _OVERS.move_to_end(key)
                return found
        found = TemplateSet(self.root, merged)
        with _OVERS_LOCK:
            _OVERS[key] = found
            while len(_OVERS) > _OVERS_KEPT:
                _OVERS.popitem(last=False)
        return found

    def name_of(self, channel: Channel, language: str, template: str) -> str:
        return f"{channel.value}/{language}/{template}.j2"

    def exists(self, channel: Channel, language: str, template: str) -> bool:
        return self.text_of(self.name_of(channel, language, template)) is not None

    def text_of(self, name: str) -> str | None:
        """The source of the template `name` (stored first, then the file); None if none."""
        if name in self.stored:
            return self.stored[name]
        path = self.root / name
        # Only names under the root: a name is typed in the console.
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def render(
        self, channel: Channel, language: str, template: str, context: Mapping[str, Any]
    ) -> Rendered:
        """Render one template.

        Raises:
            TemplateError: naming the template and what failed; no context values.
        """
        name = self.name_of(channel, language, template)
        budget = _budget.set(_Budget())
        try:
            plain = self._plain.get_template(name)
            if channel is Channel.SMS:
                # The one place an SMS body is made: what is checked, previewed and sent.
                return Rendered(body=normalise(plain.render(context).strip()))
            missing = [b for b in EMAIL_BLOCKS if b not in plain.blocks]
            if missing:
                raise TemplateError(f"template {name}: missing block(s) {', '.join(missing)}")
            html = self._html.get_template(name)
            return Rendered(
                body=_block(plain, "text", context),
                subject=_block(plain, "subject", context),
                html=_block(html, "html", context),
            )
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {name} does not exist") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template {name} line {exc.lineno}: {exc.message}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {name}: {exc.message}") from exc
        except RecursionError as exc:
            raise TemplateError(
                f"template {name}: too expensive: nested too deeply "
                "(a macro or an include calling itself)"
            ) from exc
        except TooExpensive as exc:
            where = f" line {exc.line}" if exc.line is not None else ""
            raise TemplateError(f"template {name}{where}: too expensive: {exc.reason}") from exc
        except SecurityError as exc:
            raise TemplateError(f"template {name}: not allowed: {exc}") from exc
        except TemplateError:
            raise
        except Exception as exc:
            # The class only: the message of an arbitrary error may quote a context value.
            raise TemplateError(
                f"template {name}: {exc.__class__.__name__} while rendering"
            ) from exc
        finally:
            _budget.reset(budget)


def _block(template: jinja2.Template, block: str, context: Mapping[str, Any]) -> str:
    return "".join(template.blocks[block](template.new_context(dict(context)))).strip()


# Read now, beside the code this process runs: read at its first template instead, an
# upgrade installed meanwhile would put this code's output under the new code's key.
_code_version()
