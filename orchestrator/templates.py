"""Message templates on disk: where they live, what they may use, whether they render.

Layout: `templates/<channel>/<language>/<name>.j2`. An SMS template is the
body; an email template defines the blocks `subject`, `text` and `html`.
Templates render with `StrictUndefined`, so a misspelt variable is an error,
not an empty string. The SMS context has no service, provider or diagnosis in
it at all, so an SMS cannot name one. An SMS body leaves through
`sms.normalise`, so typography (Babel's narrow no-break space, curly quotes)
never forces UCS-2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .event import Channel
from .sms import analyse, normalise

__all__ = ["EMAIL_BLOCKS", "MAX_SMS_SEGMENTS", "Rendered", "TemplateSet", "sample_context"]

EMAIL_BLOCKS = ("subject", "text", "html")
MAX_SMS_SEGMENTS = 2


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str | None = None
    html: str | None = None


_SAMPLE_DATES = {
    # Spanish dates carry letters outside GSM-7 (sáb), which halves an SMS segment.
    "es": ("sáb 30 sep, 10:30", "sábado 30 de septiembre", "10:30"),
    "en": ("Sat Sep 30, 10:30 AM", "Saturday, September 30", "10:30 AM"),
}


def sample_context(channel: Channel, language: str = "en") -> dict[str, Any]:
    """A context shaped like the dispatcher's, with typical values, for checks."""
    when, day, hour = _SAMPLE_DATES.get(language.partition("-")[0], _SAMPLE_DATES["en"])
    context: dict[str, Any] = {
        "org": {
            "name": "Riverside Health",
            "phone": "+1 555 0100",
            "portal_url": "https://example.org",
        },
        "appointment": {"when": when, "date": day, "time": hour, "location": "Main Campus, Bldg B"},
        "encounter": {"discharged_on": day},
        "recipient": {"is_caregiver": False, "relationship": None},
        "links": {
            name: f"https://example.org/{name[0]}/Ab3dE"
            for name in ("intake", "directions", "reschedule", "survey", "guide")
        },
    }
    if channel is Channel.EMAIL:
        context["appointment"] |= {
            "provider": "Dr. Maria Fernanda Rivera",
            "service": "consultation",
        }
    return context


class TemplateSet:
    """The templates under one directory, loaded through a sandboxed Jinja2."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Two environments over the same files: the HTML part of an email is
        # escaped, its text part and subject and every SMS are not.
        self._plain = self._environment(autoescape=False)
        self._html = self._environment(autoescape=True)

    def _environment(self, *, autoescape: bool) -> SandboxedEnvironment:
        return SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.root)),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def name_of(self, channel: Channel, language: str, template: str) -> str:
        return f"{channel.value}/{language}/{template}.j2"

    def exists(self, channel: Channel, language: str, template: str) -> bool:
        return (self.root / self.name_of(channel, language, template)).is_file()

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

    def problems(self, channel: Channel, language: str, name: str) -> Sequence[str]:
        """What is wrong with a template; the `TemplateCatalog` of flow checks."""
        if not self.exists(channel, language, name):
            return [f"no template '{name}' for language '{language}' on channel '{channel.value}'"]
        # Render as the patient and as a caregiver: the wording may branch on it.
        for relationship in (None, "daughter"):
            context = sample_context(channel, language)
            context["recipient"] = {
                "is_caregiver": relationship is not None,
                "relationship": relationship,
            }
            try:
                rendered = self.render(channel, language, name, context)
            except TemplateError as exc:
                return [str(exc)]
            if channel is not Channel.SMS:
                continue
            sms = analyse(rendered.body)
            if sms.segments > MAX_SMS_SEGMENTS:
                who = "a caregiver" if relationship else "the patient"
                # Which characters forced UCS-2 (70 a segment, not 160) is the
                # usual fix: say them, and what the GSM-7 form would take.
                why = f"; {sms.describe()}" if sms.forcing else ""
                return [
                    f"template {self.name_of(channel, language, name)} renders to "
                    f"{sms.segments} SMS segments for {who}; at most {MAX_SMS_SEGMENTS} "
                    f"allowed{why}"
                ]
        return []


def _block(template: jinja2.Template, block: str, context: Mapping[str, Any]) -> str:
    return "".join(template.blocks[block](template.new_context(dict(context)))).strip()
