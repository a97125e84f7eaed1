"""Flow validation's question to the templates: does every message render, and every SMS fit?

`TemplateCheck` is the `TemplateCatalog` that `load_flows` asks, at `flows
validate` and at service start. It renders each message of a flow through
`preview.render_all`, which is the dispatcher's own `render_context` and
`TemplateSet.render`, so what is checked is what is sent: every language,
channel and persona's variant, for the patient and for a caregiver. An SMS
may take at most `MAX_SMS_SEGMENTS`, rendered at worst-case values:

- dates (`worst_case_days`): of the 12 months and 7 weekdays, those whose
  names Babel writes longest in the language, and the longest whose names
  force UCS-2 (Spanish "sáb"); a two-digit day and hour;
- the organisation as configured: its name, phone and portal URL, which
  gives the links their shape (`<portal>/<letter>/<12-character token>`);
- `SAMPLE_LOCATION`, 40 characters: scheduling may send a longer location,
  which the dispatcher still sends, maybe in a third segment.

What it leaves to others: the rendering (`preview`, `runtime.rendering`,
`templates`) and the segment arithmetic (`sms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

from .event import Channel
from .flows.checks import Problem
from .flows.model import Flow
from .preview import MessagePreview, Sample, render_all
from .runtime.rendering import Organisation
from .sms import encoding, normalise
from .templates import TemplateSet

__all__ = [
    "MAX_SMS_SEGMENTS",
    "SAMPLE_LOCATION",
    "TemplateCheck",
    "worst_case_days",
    "worst_case_samples",
]

MAX_SMS_SEGMENTS = 2
# As long as the longest location in samples/events, and a little more.
SAMPLE_LOCATION = "Riverside Health, 1200 Elm St, Suite 500"
# The caregiver wording may branch on it: render as the patient and as a caregiver.
_RECIPIENTS = (None, "daughter")
_YEAR = 2026


@dataclass(frozen=True, slots=True)
class TemplateCheck:
    """The templates of `templates`, checked as sent by the organisation `org`."""

    templates: TemplateSet
    org: Organisation
    location: str = SAMPLE_LOCATION

    def problems(self, flow: Flow) -> list[Problem]:
        """Every template of `flow` that is missing, fails to render or is too long an SMS.

        One problem per message (or persona's variant), channel and language:
        the failure, else the most segments any sample took.
        """
        worst: dict[_Key, tuple[MessagePreview, Sample]] = {}
        unknown: list[Problem] = []
        for n, language in enumerate(flow.languages):
            try:
                samples = worst_case_samples(language, self.location)
            except (UnknownLocaleError, ValueError):
                # The dispatcher could not write a date in it either.
                unknown.append((f"languages[{n}]", f"unknown language '{language}' (no locale)"))
                continue
            for i, sample in enumerate(samples):
                # An email's length does not matter: render emails once.
                rendered = render_all(
                    flow,
                    self.templates,
                    self.org,
                    language=language,
                    channel=None if i == 0 else Channel.SMS,
                    sample=sample,
                )
                for m in rendered.messages:
                    key = (m.stage_id, m.message_id, m.persona, m.language, m.channel)
                    if key not in worst or _weight(m) > _weight(worst[key][0]):
                        worst[key] = (m, sample)
        paths = _paths(flow)
        found: list[tuple[tuple[int, int], Problem]] = []
        reported: set[tuple[str, str, str, str, Channel]] = set()
        for (stage_id, message_id, persona, language, channel), (m, sample) in worst.items():
            text = self._problem(m, sample)
            # A variant that keeps the message's template says nothing new.
            said = (stage_id, message_id, m.template, language, channel)
            if text is None or said in reported:
                continue
            reported.add(said)
            order, path = paths.get((stage_id, message_id, persona), (-1, ""))
            found.append(((order, flow.languages.index(language)), (path, text)))
        # In the flow's order, as the other checks report.
        return unknown + [problem for _, problem in sorted(found, key=lambda item: item[0])]

    def _problem(self, m: MessagePreview, sample: Sample) -> str | None:
        if m.error is not None:
            if not self.templates.exists(m.channel, m.language, m.template):
                return (
                    f"no template '{m.template}' for language '{m.language}' "
                    f"on channel '{m.channel.value}'"
                )
            return m.error
        if m.sms is None or m.sms.segments <= MAX_SMS_SEGMENTS:
            return None
        who = "a caregiver" if sample.caregiver else "the patient"
        # Which characters forced UCS-2 (70 a segment, not 160) is the usual
        # fix: say them, and what the GSM-7 form would take.
        why = f"; {m.sms.describe()}" if m.sms.forcing else ""
        return (
            f"template {self.templates.name_of(m.channel, m.language, m.template)} renders to "
            f"{m.sms.segments} SMS segments for {who} (sample date "
            f"{sample.appointment_on:%a %d %b %Y}); at most {MAX_SMS_SEGMENTS} allowed{why}"
        )


_Key = tuple[str, str, str | None, str, Channel]


def _weight(m: MessagePreview) -> int:
    """How bad a rendering is: a failure beats any length."""
    if m.error is not None:
        return 1 << 30
    return m.sms.segments if m.sms is not None else 0


def _paths(flow: Flow) -> dict[tuple[str, str, str | None], tuple[int, str]]:
    """The flow-file path of each message's (and persona variant's) template, in file order."""
    paths: dict[tuple[str, str, str | None], tuple[int, str]] = {}
    for i, stage in enumerate(flow.stages):
        for j, spec in enumerate(stage.messages):
            at = f"stages[{i}].messages[{j}]"
            paths.setdefault((stage.id, spec.id, None), (len(paths), f"{at}.template"))
            for k, variant in enumerate(spec.variants):
                where = f"{at}.variants[{k}].template"
                paths.setdefault((stage.id, spec.id, variant.persona), (len(paths), where))
    return paths


def worst_case_samples(language: str, location: str = SAMPLE_LOCATION) -> tuple[Sample, ...]:
    """The samples an SMS in `language` is checked with: each worst-case day, patient and caregiver."""
    return tuple(
        Sample(
            appointment_on=day,
            admitted_on=day - timedelta(days=1),
            discharged_on=day,
            location=location,
            caregiver=caregiver,
        )
        for day in worst_case_days(language)
        for caregiver in _RECIPIENTS
    )


@lru_cache(maxsize=32)
def worst_case_days(language: str) -> tuple[date, ...]:
    """Days whose month and weekday Babel names longest in `language`, and longest in UCS-2.

    All 12 months and 7 weekdays are compared, in the short and the long
    forms a message shows ("sept"/"septiembre", "sáb"/"sábado"); each pair
    of the chosen month and weekday gives one day, in the 20s (two digits).
    """
    locale = Locale.parse(language.replace("-", "_"))
    months = _longest([date(_YEAR, m, 1) for m in range(1, 13)], ("MMM", "MMMM"), locale)
    # 2026-01-05 is a Monday: seven days, seven weekdays.
    weekdays = _longest([date(_YEAR, 1, 5 + d) for d in range(7)], ("EEE", "EEEE"), locale)
    return tuple(
        dict.fromkeys(
            next(
                day
                for d in range(22, 29)
                if (day := date(_YEAR, month.month, d)).weekday() == weekday.weekday()
            )
            for month in months
            for weekday in weekdays
        )
    )


def _longest(days: list[date], patterns: tuple[str, ...], locale: Locale) -> list[date]:
    """The day whose names are longest, and the longest whose names force UCS-2 (if any)."""
    names = {
        d: normalise(" ".join(format_date(d, p, locale=locale) for p in patterns)) for d in days
    }

    def units(day: date) -> int:
        return len(names[day].encode("utf-16-le")) // 2

    picked = [max(days, key=units)]
    ucs2 = [d for d in days if encoding(names[d]) == "ucs2"]
    if ucs2:
        picked.append(max(ucs2, key=units))
    return list(dict.fromkeys(picked))
