"""FHIR R4 Appointment and Encounter resources into canonical events.

Resources are validated with `fhir.resources` (its R4B models, which read R4
data for these resources); what they refuse, and what we cannot map, is a
`FhirError` carrying the FHIRPath of the element, ready for an
OperationOutcome.

| resource, status | event |
|---|---|
| Appointment booked | appointment.booked |
| Appointment arrived, checked-in | appointment.checked_in |
| Appointment fulfilled | appointment.completed |
| Appointment cancelled, entered-in-error | appointment.cancelled |
| Appointment noshow | appointment.no_show |
| Encounter in-progress | patient.admitted |
| Encounter finished | patient.discharged (disposition from hospitalization.dischargeDisposition) |

The event id is `fhir:<type>/<id>:<status>:<meta.versionId, else a digest of
the resource>`: the same resource posted twice is a duplicate. Over 200
characters it ends in a SHA-256 digest of the whole (`event.bound_id`), as
every source's ids do.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from orchestrator.errors import InputError
from orchestrator.event import Event, EventType
from orchestrator.event_schema import parse_event

__all__ = [
    "BUNDLE_TYPES",
    "EntryResult",
    "FhirConfig",
    "FhirError",
    "Issue",
    "bundle_events",
    "operation_outcome",
    "resource_event",
]

APPOINTMENT_STATUS: Final = {
    "booked": EventType.APPOINTMENT_BOOKED,
    "arrived": EventType.APPOINTMENT_CHECKED_IN,
    "checked-in": EventType.APPOINTMENT_CHECKED_IN,
    "fulfilled": EventType.APPOINTMENT_COMPLETED,
    "cancelled": EventType.APPOINTMENT_CANCELLED,
    "entered-in-error": EventType.APPOINTMENT_CANCELLED,
    "noshow": EventType.APPOINTMENT_NO_SHOW,
}
ENCOUNTER_STATUS: Final = {
    "in-progress": EventType.PATIENT_ADMITTED,
    "finished": EventType.PATIENT_DISCHARGED,
}
BUNDLE_TYPES: Final = ("transaction", "batch", "history", "subscription-notification", "collection")
# Entries a notification bundle carries about itself, not about care.
_NOTIFICATION_TYPES: Final = ("SubscriptionStatus", "Parameters")
# A literal Patient reference, absolute or relative, perhaps versioned (FHIR R4 id syntax).
_LITERAL_PATIENT: Final = re.compile(
    r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome issue: FHIRPath, issue type code, diagnostics."""

    expression: str
    code: str
    diagnostics: str


class FhirError(InputError):
    """Raised when a FHIR resource cannot be read or mapped; `issues` name each element."""

    def __init__(self, issues: Sequence[Issue], *, status: int = 400) -> None:
        self.issues = tuple(issues)
        self.status = status
        super().__init__(
            "FHIR",
            [
                f"{i.expression}: {i.diagnostics}" if i.expression else i.diagnostics
                for i in self.issues
            ],
        )


@dataclass(frozen=True, slots=True)
class FhirConfig:
    services: Mapping[str, str] = field(default_factory=dict)
    default_region: str = "US"
    source: str = "fhir"


@dataclass(frozen=True, slots=True)
class EntryResult:
    """One Bundle entry: its event, its error, or neither (nothing to map)."""

    index: int
    event: Event | None = None
    error: FhirError | None = None


def operation_outcome(
    error: FhirError | Sequence[Issue], severity: str = "error"
) -> dict[str, Any]:
    issues = error.issues if isinstance(error, FhirError) else error
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": i.code,
                "diagnostics": i.diagnostics,
                **({"expression": [i.expression]} if i.expression else {}),
            }
            for i in issues
        ],
    }


def resource_event(
    data: Any, config: FhirConfig, now: datetime, *, expected: str | None = None, path: str = ""
) -> Event:
    """The event an Appointment or Encounter stands for.

    `path` prefixes FHIRPaths (a Bundle entry's); `contacts` are Patient
    resources to read telecom and language from.

    Raises:
        FhirError: naming the element (400 invalid, 422 not supported).
    """
    return _map(data, config, now, expected=expected, path=path, patients={})


def bundle_events(data: Any, config: FhirConfig, now: datetime) -> tuple[str, list[EntryResult]]:
    """The bundle type and a result per entry.

    Raises:
        FhirError: the body is not a Bundle of a type taken here.
    """
    if not isinstance(data, Mapping) or data.get("resourceType") != "Bundle":
        raise FhirError([Issue("", "structure", "expected a Bundle resource")])
    kind = data.get("type")
    if kind not in BUNDLE_TYPES:
        raise FhirError(
            [Issue("Bundle.type", "not-supported", f"expected one of {', '.join(BUNDLE_TYPES)}")],
            status=422,
        )
    entries = data.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError([Issue("Bundle.entry", "structure", "expected a list of entries")])
    patients: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, Mapping) and resource.get("resourceType") == "Patient":
            keys = [entry.get("fullUrl")]
            if isinstance(resource.get("id"), str):
                keys.append(f"Patient/{resource['id']}")
            for key in keys:
                if isinstance(key, str):
                    patients[key] = resource
    results: list[EntryResult] = []
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}].resource"
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        kind_of = resource.get("resourceType") if isinstance(resource, Mapping) else None
        if kind_of not in ("Appointment", "Encounter"):
            results.append(EntryResult(i))  # Patients, notification status, deletes: no event
            continue
        try:
            event = _map(resource, config, now, expected=None, path=where, patients=patients)
        except FhirError as exc:
            results.append(EntryResult(i, error=exc))
        else:
            results.append(EntryResult(i, event=event))
    return str(kind), results


def _map(
    data: Any,
    config: FhirConfig,
    now: datetime,
    *,
    expected: str | None,
    path: str,
    patients: Mapping[str, Mapping[str, Any]],
) -> Event:
    if not isinstance(data, Mapping):
        raise FhirError([Issue(path, "structure", "expected a JSON object (a FHIR resource)")])
    kind = data.get("resourceType")
    root = path or str(kind or expected or "Resource")
    if expected is not None and kind != expected:
        raise FhirError(
            [Issue(f"{root}.resourceType", "structure", f"expected resourceType '{expected}'")]
        )
    if kind not in ("Appointment", "Encounter"):
        raise FhirError(
            [Issue(root, "not-supported", "only Appointment and Encounter resources are taken")],
            status=422,
        )
    try:
        # The R4B model class of `kind`: its fields are read by name below.
        model: Any = get_fhir_model_class(kind).model_validate(data)
    except ValidationError as exc:
        raise FhirError(_issues(exc, root)) from None
    status = str(model.status)
    table = APPOINTMENT_STATUS if kind == "Appointment" else ENCOUNTER_STATUS
    event_type = table.get(status)
    if event_type is None:
        raise FhirError(
            [
                Issue(
                    f"{root}.status",
                    "not-supported",
                    f"status '{status}' is not mapped; expected one of {', '.join(table)}",
                )
            ],
            status=422,
        )
    resource_id = model.id or _identifier(model)
    if not resource_id:
        raise FhirError([Issue(f"{root}.id", "required", "the resource needs an id or identifier")])
    contained = {f"#{c.id}": c.model_dump(mode="json") for c in (model.contained or []) if c.id}
    meta = model.meta
    version = meta.versionId if meta is not None and meta.versionId else _digest(data)
    event: dict[str, Any] = {
        # Bounded by the canonical schema (`bound_id`): a cut here made two long
        # identifiers that share a prefix one event, and dropped the second.
        "id": f"fhir:{kind}/{resource_id}:{status}:{version}",
        "type": event_type.value,
        "source": config.source,
        "attributes": {"fhir": {"resource": f"{kind}/{resource_id}", "status": status}},
    }
    updated = meta.lastUpdated if meta is not None else None
    if kind == "Appointment":
        patient, found = _appointment_patient(model, root, patients, contained)
        event["appointment"] = _appointment(model, resource_id, config)
        created = model.created
        # `created` may be a bare date: then it says nothing about the instant.
        aware = isinstance(created, datetime) and created.tzinfo is not None
        occurred = updated or (created if aware else None) or now
    else:
        reference = model.subject.reference if model.subject is not None else None
        resolved = _resolve_patient(reference, patients, contained, f"{root}.subject")
        if resolved is None:
            raise FhirError([Issue(f"{root}.subject", "required", "needs a Patient reference")])
        patient, found = resolved
        event["encounter"] = _encounter(model, resource_id, config)
        period = model.period
        moment = None
        if period is not None:
            moment = period.start if status == "in-progress" else period.end
        occurred = moment or updated or now
    event["occurred_at"] = _iso(occurred)
    event["patient"] = {"id": patient, **(_contacts(found) if found else {})}
    try:
        return parse_event(event, default_region=config.default_region)
    except InputError as exc:
        raise FhirError([Issue(root, "invalid", p) for p in exc.problems]) from None


def _appointment_patient(
    model: Any,
    root: str,
    patients: Mapping[str, Mapping[str, Any]],
    contained: Mapping[str, Mapping[str, Any]],
) -> tuple[str, Mapping[str, Any] | None]:
    for i, participant in enumerate(model.participant or []):
        actor = participant.actor
        reference = actor.reference if actor is not None else None
        where = f"{root}.participant[{i}].actor.reference"
        resolved = _resolve_patient(reference, patients, contained, where)
        if resolved is not None:
            return resolved
    raise FhirError([Issue(f"{root}.participant", "required", "no participant is a Patient")])


def _resolve_patient(
    reference: str | None,
    patients: Mapping[str, Mapping[str, Any]],
    contained: Mapping[str, Mapping[str, Any]],
    where: str,
) -> tuple[str, Mapping[str, Any] | None] | None:
    """The patient id and, when at hand, the Patient resource a reference points to.

    Resolved as FHIR resolves it: a Bundle entry's fullUrl (`urn:uuid:` in
    transactions), then a contained resource (`#p1`), then a literal
    `[base/]Patient/<id>[/_history/<version>]`. None when it is no Patient.
    """
    if not reference:
        return None
    literal = _LITERAL_PATIENT.search(reference)
    if "Patient/" in reference and literal is None:
        raise FhirError([Issue(where, "invalid", "not a valid Patient reference")])
    resource = patients.get(reference) or contained.get(reference)
    if resource is None and literal is not None:
        resource = patients.get(f"Patient/{literal[1]}")
    if resource is not None and resource.get("resourceType") != "Patient":
        resource = None
    if resource is None:
        return (literal[1], None) if literal is not None else None
    found = _patient_id(resource) or (literal[1] if literal is not None else None)
    if not found:
        raise FhirError(
            [Issue(where, "invalid", "the Patient referred to has no id or identifier")]
        )
    return found, resource


def _patient_id(resource: Mapping[str, Any]) -> str | None:
    """A Patient resource's id, else its first identifier value."""
    if isinstance(resource.get("id"), str) and resource["id"]:
        return str(resource["id"])
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        value = identifier.get("value") if isinstance(identifier, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def _appointment(model: Any, resource_id: str, config: FhirConfig) -> dict[str, Any]:
    appointment: dict[str, Any] = {"id": resource_id}
    if model.start is not None:
        appointment["start"] = _iso(model.start)
    code = _code(model.serviceType) or _code(
        [model.appointmentType] if model.appointmentType else []
    )
    code = code or _code(model.specialty)
    if code:
        appointment["service"] = config.services.get(code, code)
    for participant in model.participant or []:
        actor = participant.actor
        reference = (actor.reference or "") if actor is not None else ""
        if actor is None or not actor.display:
            continue
        if reference.startswith("Location/") and "location" not in appointment:
            appointment["location"] = actor.display
        elif reference.startswith("Practitioner") and "provider" not in appointment:
            appointment["provider"] = actor.display
    return appointment


def _encounter(model: Any, resource_id: str, config: FhirConfig) -> dict[str, Any]:
    encounter: dict[str, Any] = {"id": resource_id}
    period = model.period
    if period is not None and period.start is not None:
        encounter["admitted_at"] = _iso(period.start)
    if period is not None and period.end is not None:
        encounter["discharged_at"] = _iso(period.end)
    hospitalization = model.hospitalization
    disposition = hospitalization.dischargeDisposition if hospitalization is not None else None
    if disposition is not None:
        text = _code([disposition]) or disposition.text
        if text:
            encounter["disposition"] = text
    klass = getattr(model, "class_fhir", None)
    code = _code(model.serviceType and [model.serviceType]) or (klass.code if klass else None)
    if code:
        encounter["service"] = config.services.get(code, code)
    return encounter


def _contacts(patient: Mapping[str, Any]) -> dict[str, Any]:
    """Telecom and language of a Patient resource (a mobile phone first).

    The Patient is not validated (only the Appointment or Encounter is):
    parts of the wrong shape are skipped, as if absent.
    """
    found: dict[str, Any] = {}
    phones = []
    for telecom in _list(patient.get("telecom")):
        if not isinstance(telecom, Mapping) or not isinstance(telecom.get("value"), str):
            continue
        system, use = telecom.get("system"), telecom.get("use")
        if system in ("phone", "sms"):
            phones.append((0 if use == "mobile" or system == "sms" else 1, telecom["value"]))
        elif system == "email" and "email" not in found:
            found["email"] = telecom["value"]
    if phones:
        found["phone"] = min(phones)[1]
    for communication in _list(patient.get("communication")):
        if not isinstance(communication, Mapping):
            continue
        language = communication.get("language")
        codings = _list(language.get("coding")) if isinstance(language, Mapping) else []
        codes = [c["code"] for c in codings if isinstance(c, Mapping) and _text(c.get("code"))]
        if codes and ("language" not in found or communication.get("preferred") is True):
            found["language"] = codes[0]
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _code(concepts: Any) -> str | None:
    for concept in concepts or []:
        for coding in concept.coding or []:
            if coding.code:
                return str(coding.code)
    return None


def _identifier(model: Any) -> str | None:
    for identifier in getattr(model, "identifier", None) or []:
        if identifier.value:
            return str(identifier.value)
    return None


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _issues(error: ValidationError, root: str) -> list[Issue]:
    issues = []
    for item in error.errors(include_input=False, include_url=False):
        path = root
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not str(part).startswith(("function-", "__")):
                path += "." + str(part).removesuffix("__ext")
        code = "required" if item["type"] == "missing" else "invalid"
        issues.append(Issue(path, code, item["msg"].removeprefix("Value error, ")))
    return issues
