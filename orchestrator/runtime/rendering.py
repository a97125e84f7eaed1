"""What a template sees: the render context for one message to one recipient.

Dates are written in the recipient's language and time zone (Babel). The SMS
context leaves out the service and the provider, so an SMS cannot name them.
Links carry an opaque token made from the message key, never a patient id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time

from ..event import Channel
from ..journey import Journey, ScheduledMessage

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["Organisation", "render_context"]


@dataclass(frozen=True, slots=True)
class Organisation:
    """Who the messages come from (settings)."""

    name: str
    phone: str
    portal_url: str

    @classmethod
    def of(cls, settings: Settings) -> Organisation:
        return cls(settings.org_name, settings.org_phone, settings.portal_url)


_LINKS = ("intake", "directions", "reschedule", "survey", "guide")


def render_context(
    message: ScheduledMessage,
    journey: Journey | None,
    *,
    channel: Channel,
    language: str,
    timezone: str,
    caregiver_relationship: str | None,
    org: Organisation,
) -> dict[str, Any]:
    zone = ZoneInfo(timezone)
    locale = _locale(language)
    appointment: dict[str, Any] = {"when": "", "date": "", "time": "", "location": ""}
    encounter: dict[str, Any] = {"discharged_on": ""}
    episode = journey.episode(message.episode_id) if journey else None
    if (
        episode is not None
        and message.appointment_id is not None
        and message.appointment_id in episode.appointments
    ):
        state = episode.appointments[message.appointment_id]
        if state.start is not None:
            local = state.start.astimezone(zone)
            appointment |= {
                "when": _when(local, locale),
                "date": format_date(local, "full", locale=locale),
                "time": format_time(local, "short", locale=locale),
            }
        appointment["location"] = state.location or ""
        if channel is Channel.EMAIL:
            appointment |= {"provider": state.provider or "", "service": state.service or ""}
    elif channel is Channel.EMAIL:
        appointment |= {"provider": "", "service": ""}
    if (
        episode is not None
        and message.encounter_id is not None
        and message.encounter_id in episode.encounters
    ):
        discharged = episode.encounters[message.encounter_id].discharged_at
        if discharged is not None:
            encounter["discharged_on"] = format_date(
                discharged.astimezone(zone), "full", locale=locale
            )
    token = message.key[:12]
    base = org.portal_url.rstrip("/")
    return {
        "org": {"name": org.name, "phone": org.phone, "portal_url": org.portal_url},
        "appointment": appointment,
        "encounter": encounter,
        "recipient": {
            "is_caregiver": message.recipient.caregiver_id is not None,
            "relationship": caregiver_relationship,
        },
        "links": {name: f"{base}/{name[0]}/{token}" for name in _LINKS},
    }


def _when(local: datetime, locale: Locale) -> str:
    """A short date and time, as an SMS wants it: "Sat Sep 30, 10:30 AM"."""
    pattern = "EEE MMM d, h:mm a" if locale.language == "en" else "EEE d MMM, HH:mm"
    return format_datetime(local, pattern, locale=locale)


@lru_cache(maxsize=64)
def _locale(language: str) -> Locale:
    # Parsing a locale reads Babel's data files: once per language is enough.
    return Locale.parse(language.replace("-", "_"))
