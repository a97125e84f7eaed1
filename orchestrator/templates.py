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
sandbox refuses unsafe attributes, ranges are bounded by Jinja's sandbox and
repetition and powers by `_BoundedEnvironment`, and every error raised while
rendering is a `TemplateError` (a problem shown, never a crash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .event import Channel
from .sms import normalise

__all__ = ["EMAIL_BLOCKS", "Rendered", "TemplateSet"]

EMAIL_BLOCKS = ("subject", "text", "html")
# The longest sequence `*` may make and the largest exponent `**` may take:
# far above what a message needs, far below what stalls a process.
MAX_REPEAT = 100_000
MAX_EXPONENT = 64


class _BoundedEnvironment(SandboxedEnvironment):
    """The sandbox with `*` and `**` bounded (its `range` already is)."""

    intercepted_binops = frozenset({"*", "**"})

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
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def over(self, stored: Mapping[str, str]) -> TemplateSet:
        """These templates with `stored` read first (and this set's own stored ones under them)."""
        return TemplateSet(self.root, {**self.stored, **stored})

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
        except SecurityError as exc:
            raise TemplateError(f"template {name}: not allowed: {exc}") from exc
        except TemplateError:
            raise
        except Exception as exc:
            # The class only: the message of an arbitrary error may quote a context value.
            raise TemplateError(
                f"template {name}: {exc.__class__.__name__} while rendering"
            ) from exc


def _block(template: jinja2.Template, block: str, context: Mapping[str, Any]) -> str:
    return "".join(template.blocks[block](template.new_context(dict(context)))).strip()
