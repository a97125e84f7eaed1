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

A template is typed in the console, so it is hostile until rendered: the
sandbox refuses unsafe attributes, ranges are bounded by Jinja's sandbox, and
`_BoundedEnvironment` bounds the rest of what could stall a process: `*` and
`**`, the strings `replace`, `center`, `ljust`, `rjust`, `zfill` and
`expandtabs` make (`MAX_REPEAT` characters), and the loops. A range's bound
does not bound loops nested in each other, so every `for` counts its steps
against one budget per render (`MAX_LOOP_STEPS`), and a recursive loop is
refused. Every error raised while rendering is a `TemplateError` (a problem
shown, never a crash): "template sms/en/x.j2 line 3: too expensive: ...".

Compiling a template costs far more than rendering it, and the console makes
a `TemplateSet` per request (a draft's edits over a version's templates): the
compiled code is kept per process by name, source and escaping
(`_CompiledCode`), so a set compiles only the templates whose text it has
never seen.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.bccache import Bucket
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .event import Channel
from .sms import normalise

__all__ = ["EMAIL_BLOCKS", "MAX_LOOP_STEPS", "Rendered", "TemplateSet", "TooExpensive"]

EMAIL_BLOCKS = ("subject", "text", "html")
# The longest sequence `*` may make and the largest exponent `**` may take:
# far above what a message needs, far below what stalls a process.
MAX_REPEAT = 100_000
MAX_EXPONENT = 64
# The loop steps one render may take, all loops together: a message loops over
# a handful of items, and 10,000 steps take a few milliseconds.
MAX_LOOP_STEPS = 10_000
# The filter every `for` iterates through (no template can name it: it has a dot).
_COUNTED = "orchestrator.counted"
# The str methods whose result can be far longer than their arguments.
_GROWING = frozenset({"replace", "center", "ljust", "rjust", "zfill", "expandtabs"})


class TooExpensive(SecurityError):
    """A render took more loop steps than `MAX_LOOP_STEPS` (the message names the line)."""


# The steps the render under way has taken: one count per render, per thread.
_steps: ContextVar[list[int]] = ContextVar("template_loop_steps")


def _counted(iterable: Iterable[Any], line: int) -> Iterator[Any]:
    """`iterable`, each item counted against the render's loop budget."""
    steps = _steps.get(None)
    if steps is None:
        steps = [0]
    for item in iterable:
        steps[0] += 1
        if steps[0] > MAX_LOOP_STEPS:
            raise TooExpensive(
                f"line {line}: too expensive: more than {MAX_LOOP_STEPS:,} loop steps "
                "(loops nested in each other multiply)"
            )
        yield item


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with `*`, `**`, growing string methods and loops bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters[_COUNTED] = _counted

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
        return tree

    def call(
        __self,  # Jinja's signature: no name a keyword argument could clash with
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        text = getattr(__obj, "__self__", None)
        if (
            isinstance(text, str)
            and getattr(__obj, "__name__", "") in _GROWING
            and _grown(text, __obj.__name__, args, kwargs) > MAX_REPEAT
        ):
            raise SecurityError(f"a string longer than {MAX_REPEAT}")
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"an exponent above {MAX_EXPONENT}")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | bytes | list | tuple)
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEAT
                ):
                    raise SecurityError(f"a sequence longer than {MAX_REPEAT}")
        return super().call_binop(context, operator, left, right)


class _CompiledCode(jinja2.BytecodeCache):
    """Compiled template code by name, source and escaping, shared by every set of a process.

    Jinja's own cache is per environment, and an environment per set; this one
    outlives them. The code of a name and source is the same in any set (the
    environments differ only in what they load and in escaping, which is in
    the key), and a code object is immutable, so it is shared as it is.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._code: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> Bucket:
        escaping = "html" if environment.autoescape else "plain"
        key = hashlib.sha256(f"{escaping}\0{name}\0{source}".encode()).hexdigest()
        bucket = Bucket(environment, key, "")
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
            if code is not None:
                self._code.move_to_end(bucket.key)
        bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            self._code[bucket.key] = bucket.code
            while len(self._code) > self.size:
                self._code.popitem(last=False)


# Drafts being edited at once, per set they are edited over.
_OVERS_KEPT = 8
# Enough for every template of every flow in a few languages, and the drafts' edits.
_COMPILED = _CompiledCode(4096)


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
    width = given[0] if given and isinstance(given[0], int) else 0
    return max(len(text), width)


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
        # The sets `over` made, by what they put over this one: a draft's edits are
        # asked for again at each request, and a set reused keeps its templates loaded.
        self._overs: OrderedDict[str, TemplateSet] = OrderedDict()
        self._overs_lock = threading.Lock()
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

        The same `stored` over the same set gives the same set back (the last few kept).
        """
        key = hashlib.sha256(json.dumps(dict(stored), sort_keys=True).encode()).hexdigest()
        with self._overs_lock:
            found = self._overs.get(key)
            if found is not None:
                self._overs.move_to_end(key)
                return found
        found = TemplateSet(self.root, {**self.stored, **stored})
        with self._overs_lock:
            self._overs[key] = found
            while len(self._overs) > _OVERS_KEPT:
                self._overs.popitem(last=False)
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
        budget = _steps.set([0])
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
        except TooExpensive as exc:
            raise TemplateError(f"template {name} {exc}") from exc
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
            _steps.reset(budget)


def _block(template: jinja2.Template, block: str, context: Mapping[str, Any]) -> str:
    return "".join(template.blocks[block](template.new_context(dict(context)))).strip()
