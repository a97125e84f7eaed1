"""What a template sees: the render context for one message to one recipient.

Dates are written in the recipient's language and time zone (Babel). The SMS
context leaves out the service and the provider, so an SMS cannot name them.
Links carry an opaque token made from the message key, never a patient id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
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
            when, day, at = _written(state.start.astimezone(zone), language)
            appointment |= {"when": when, "date": day, "time": at}
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
            encounter["discharged_on"] = _written(discharged.astimezone(zone), language)[1]
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


def _written(local: datetime, language: str) -> tuple[str, str, str]:
    """`local` as the messages write it in `language`: short date and time, full date, time."""
    # Keyed by the wall-clock time and the zone: aware datetimes of one instant
    # are equal (and hash alike) whatever their zones.
    return _written_at(local.replace(tzinfo=None), local.tzinfo, language)


@lru_cache(maxsize=4096)
def _written_at(wall: datetime, zone: tzinfo | None, language: str) -> tuple[str, str, str]:
    # Babel takes a fraction of a millisecond per date, and a draft's check
    # writes the same few dates for every message it renders.
    local = wall.replace(tzinfo=zone)
    locale = _locale(language)
    return (
        _when(local, locale),
        format_date(local, "full", locale=locale),
        format_time(local, "short", locale=locale),
    )


def _when(local: datetime, locale: Locale) -> str:
    """A short date and time, as an SMS wants it: "Sat Sep 30, 10:30 AM"."""
    pattern = "EEE MMM d, h:mm a" if locale.language == "en" else "EEE d MMM, HH:mm"
    return format_datetime(local, pattern, locale=locale)


@lru_cache(maxsize=64)
def _locale(language: str) -> Locale:
    # Parsing a locale reads Babel's data files: once per language is enough.
    return Locale.parse(language.replace("-", "_"))
