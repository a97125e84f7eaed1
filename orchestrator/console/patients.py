"""The console's patient pages (operations and admin): search by id, and one patient's timeline.

The timeline (`console.timeline`) lists the patient's events with where each
came from, their episodes and the stages entered, and each message with its
status history; then what is pending, by due time. Bodies are shown: a sent
message's from the sandbox outbox, a pending one rendered as the dispatcher
would render it now (`runtime.rendering.render_context`). These pages name
a patient, so the marketing role is refused them (403).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..api.deps import Clock, Registry, Store, runtime_of
from ..api.params import StorableText
from ..api.roles import PATIENT_ROLES, require_role
from ..errors import TemplateError
from ..event import Channel, bound_id
from ..journey import ScheduledMessage
from ..recipients import choose_language, contact_for
from ..runtime.registry import FlowRegistry
from ..runtime.rendering import render_context
from ..store import SqlStore
from ..store.queries import PATIENT_EVENTS_LIMIT
from .pages import render
from .timeline import timeline

__all__ = ["Body", "patient_page", "router", "search_page"]

router = APIRouter(
    prefix="/console/patients",
    include_in_schema=False,
    dependencies=[Depends(require_role(*PATIENT_ROLES))],
)

# Longer ids are bounded as the store bounds them (`event.bound_id`).
_MAX_ASKED = 10_000
PatientId = Annotated[StorableText, Path(min_length=1, max_length=_MAX_ASKED)]


@dataclass(frozen=True, slots=True)
class Body:
    """A message's text as it went out (sent) or would go out now (pending)."""

    channel: str
    language: str | None
    subject: str | None
    text: str
    note: str = ""


@router.get("", response_class=HTMLResponse)
def search_page(
    request: Request,
    patient_id: Annotated[
        StorableText | None, Query(alias="patient_id", max_length=_MAX_ASKED)
    ] = None,
) -> Response:
    if patient_id is not None and patient_id.strip():
        target = f"/console/patients/{quote(patient_id.strip(), safe='')}"
        return RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    return render(request, "patients.html", asked=None)


@router.get("/{patient_id}", response_class=HTMLResponse)
def patient_page(
    request: Request, patient_id: PatientId, store: Store, registry: Registry, clock: Clock
) -> HTMLResponse:
    patient_id = bound_id(patient_id)
    journeys = store.patient_journeys(patient_id)
    events = store.patient_events(patient_id)
    if not journeys and not events:
        return render(request, "patients.html", asked=patient_id, status_code=404)
    found = timeline(
        patient_id,
        events,
        journeys,
        store.messages(patient_id=patient_id),
        store.audit(patient_id=patient_id),
        events_cut=len(events) >= PATIENT_EVENTS_LIMIT,
    )
    sent_keys = [e.message.view.key for e in found.entries if e.message and e.message.view.sent_at]
    bodies: dict[str, Body] = {
        key: Body(e.channel, None, e.subject, e.body)
        for key, e in store.outbox_for(sent_keys).items()
    }
    scheduled = [
        message
        for _, journey in journeys
        for key, message in journey.messages.items()
        if key in {line.view.key for line in found.pending}
    ]
    bodies |= _rendered(request, store, registry, scheduled, clock.now())
    return render(request, "patient.html", timeline=found, bodies=bodies)


def _rendered(
    request: Request,
    store: SqlStore,
    registry: FlowRegistry,
    messages: Sequence[ScheduledMessage],
    now: datetime,
) -> dict[str, Body]:
    """Pending messages rendered as the dispatcher would render them now, by key."""
    if not messages:
        return {}
    dispatcher = runtime_of(request).dispatcher
    facts = store.sending_facts(messages, now)
    found: dict[str, Body] = {}
    for message in messages:
        flow = registry.versions.get((message.flow_id, message.flow_version))
        patient = facts.patients.get(message.recipient.patient_id)
        contact = contact_for(patient, message.recipient) if patient else None
        if flow is None or patient is None or contact is None:
            continue
        language, _ = choose_language(contact.language, flow)
        preferred = contact.preferred_channel
        channel = preferred if preferred in message.channels else message.channels[0]
        relationship = next(
            (c.relationship for c in patient.caregivers if c.id == message.recipient.caregiver_id),
            None,
        )
        journey = facts.journeys.get(
            (message.recipient.patient_id, message.flow_id, message.flow_version)
        )
        context = render_context(
            message,
            journey,
            channel=channel,
            language=language,
            timezone=message.timezone,
            caregiver_relationship=relationship,
            org=dispatcher.org,
        )
        try:
            rendered = dispatcher.templates.render(channel, language, message.template, context)
        except TemplateError as exc:
            found[message.key] = Body(channel.value, language, None, "", f"does not render: {exc}")
            continue
        found[message.key] = Body(
            channel.value,
            language,
            rendered.subject,
            rendered.body,
            "as it would be sent now" + ("" if channel is Channel.SMS else f" by {channel.value}"),
        )
    return found
