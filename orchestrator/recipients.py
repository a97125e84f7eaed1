"""Who receives a scheduled message: their contact point and their language."""

from __future__ import annotations

from dataclasses import dataclass

from .event import Channel, Patient
from .flows.model import Flow
from .journey import Recipient

__all__ = ["Contact", "choose_language", "contact_for"]


@dataclass(frozen=True, slots=True)
class Contact:
    """Where and how to reach one recipient."""

    phone: str | None
    email: str | None
    language: str | None
    timezone: str | None
    preferred_channel: Channel | None = None

    def address(self, channel: Channel) -> str | None:
        return self.phone if channel is Channel.SMS else self.email


def contact_for(patient: Patient, recipient: Recipient) -> Contact | None:
    """The patient's own contact, or a caregiver's (in the patient's time zone).

    Returns `None` when the recipient is a caregiver the patient no longer lists.
    """
    if recipient.caregiver_id is None:
        return Contact(
            patient.phone,
            patient.email,
            patient.language,
            patient.timezone,
            patient.preferred_channel,
        )
    for caregiver in patient.caregivers:
        if caregiver.id == recipient.caregiver_id:
            return Contact(
                caregiver.phone,
                caregiver.email,
                caregiver.language or patient.language,
                patient.timezone,
            )
    return None


def choose_language(language: str | None, flow: Flow) -> tuple[str, bool]:
    """The flow language to write in, and whether it is a fallback.

    `es-MX` is served by `es`; a language the flow lacks falls back to the
    flow's default, which the audit notes.
    """
    if language:
        if language in flow.languages:
            return language, False
        primary = language.partition("-")[0]
        if primary in flow.languages:
            return primary, False
    return flow.default_language, language is not None
