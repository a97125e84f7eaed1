"""The flow file's shape: pydantic models of the YAML, its JSON Schema, and
the conversion into core `Flow` values.

Structure is checked here (types, required fields, known names, timing
syntax); what needs the whole flow (stage references, reachability, anchors,
templates) is checked in `checks`.
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from ..event import Channel, EventType
from .model import (
    Condition,
    Exit,
    Flow,
    FrequencyCap,
    Idea,
    MessageSpec,
    MessageVariant,
    Persona,
    QuietHours,
    Stage,
    StageCategory,
    StageNotes,
    SuccessMetric,
    Trigger,
)
from .timing import parse_duration, parse_local_time, parse_timing

__all__ = [
    "EnterTriggerField",
    "EnterTriggerModel",
    "ExitModel",
    "FlowFile",
    "FrequencyCapModel",
    "IdeaModel",
    "MessageModel",
    "NotesModel",
    "PersonaModel",
    "QuietHoursModel",
    "StageModel",
    "SuccessMetricModel",
    "TriggerField",
    "TriggerModel",
    "VariantModel",
    "WindowModel",
    "flow_json_schema",
]

# At most 64 characters: ids are stored in columns of 100, with room for a prefix.
_SLUG = r"^[a-z][a-z0-9_-]{0,63}$"
_CONDITION_PATH = re.compile(
    r"^(service|source|patient\.(language|timezone|preferred_channel|caregivers)"
    r"|appointment\.(service|location|provider)|encounter\.(service|disposition)"
    r"|attributes\.[A-Za-z0-9_.-]+)$"
)

Touchpoint = Literal[
    "website",
    "search",
    "social",
    "referral",
    "call_center",
    "portal",
    "sms",
    "email",
    "mail",
    "phone",
    "video",
    "clinic",
    "hospital",
    "imaging_center",
    "pharmacy",
    "home",
    "kiosk",
]
Scalar = str | int | float | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shorthand_trigger(value: Any) -> Any:
    return {"event": value} if isinstance(value, str) else value


class TriggerModel(_Model):
    """An event, optionally narrowed by its service glob and field conditions."""

    event: EventType
    service: str | None = Field(
        None, description='glob on the event\'s service, e.g. "cardiology.*"'
    )
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description="field path -> value or list of values; strings are globs",
    )

    @field_validator("when")
    @classmethod
    def _known_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path in value:
            if not _CONDITION_PATH.match(path):
                raise ValueError(
                    f"unknown field path '{path}'; expected service, source, patient.language, "
                    "patient.timezone, patient.preferred_channel, patient.caregivers, "
                    "appointment.service|location|provider, encounter.service|disposition "
                    "or attributes.<name>"
                )
        return value

    def conditions(self) -> tuple[Condition, ...]:
        found = [Condition("service", (self.service,))] if self.service else []
        found += _conditions(self.when)
        return tuple(found)

    def to_core(self, sources: tuple[str, ...] = ()) -> Trigger:
        return Trigger(event=self.event, conditions=self.conditions(), sources=sources)


class EnterTriggerModel(TriggerModel):
    from_: list[str] | None = Field(
        None,
        alias="from",
        description='stages this entry may come from; default any earlier stage; "*" for any',
    )


TriggerField = Annotated[
    TriggerModel,
    BeforeValidator(_shorthand_trigger, json_schema_input_type=EventType | TriggerModel),
]
EnterTriggerField = Annotated[
    EnterTriggerModel,
    BeforeValidator(_shorthand_trigger, json_schema_input_type=EventType | EnterTriggerModel),
]


def _conditions(when: dict[str, Scalar | list[Scalar]]) -> list[Condition]:
    return [
        Condition(path, tuple(value) if isinstance(value, list) else (value,))
        for path, value in when.items()
    ]


def _timing(value: str) -> str:
    parse_timing(value)
    return value


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _local_time(value: str) -> str:
    parse_local_time(value)
    return value


TimingText = Annotated[str, BeforeValidator(_timing), Field(examples=["appointment.start - 72h"])]
DurationText = Annotated[str, BeforeValidator(_duration), Field(examples=["24h", "7d"])]
LocalTimeText = Annotated[str, BeforeValidator(_local_time), Field(examples=["08:00"])]


class WindowModel(_Model):
    """Local hours in which a message may be sent."""

    start: LocalTimeText
    end: LocalTimeText

    def to_core(self) -> tuple[time, time]:
        return parse_local_time(self.start), parse_local_time(self.end)


class VariantModel(_Model):
    """A persona's version of a message: another template, channels or timing."""

    persona: str = Field(pattern=_SLUG, description="a persona id of this flow")
    template: str | None = Field(None, pattern=_SLUG)
    channels: list[Channel] | None = Field(None, min_length=1)
    at: TimingText | None = None

    def to_core(self) -> MessageVariant:
        return MessageVariant(
            self.persona,
            self.template,
            tuple(self.channels) if self.channels else None,
            parse_timing(self.at) if self.at else None,
        )


class MessageModel(_Model):
    id: str = Field(pattern=_SLUG)
    template: str = Field(
        pattern=_SLUG, description="template name under templates/<channel>/<language>/"
    )
    channels: list[Channel] = Field(min_length=1, description="in order of preference")
    at: TimingText = Field(description="when it is due, relative to an anchor")
    send_on: list[TriggerField] = Field(
        default_factory=list,
        description="send on these events while in the stage, instead of on entering it",
    )
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="only if the event that schedules it matches"
    )
    cancel_on: list[TriggerField] = Field(
        default_factory=list, description="events that cancel it while it is pending"
    )
    unless: list[TriggerField] = Field(
        default_factory=list,
        description="facts that make it pointless: not scheduled if already seen in the episode, "
        "cancelled if seen while pending (e.g. intake.completed)",
    )
    expires: TimingText | None = Field(None, description="never sent at or after this instant")
    window: WindowModel | None = None
    topic: str | None = Field(None, description="caregivers who receive this topic get a copy")
    essential: bool = Field(False, description="exempt from frequency caps")
    holdout: float | None = Field(
        None,
        gt=0,
        lt=100,
        description="percent of patients held out (recorded as suppressed: holdout), "
        "to compare their outcomes with the messaged ones",
    )
    variants: list[VariantModel] = Field(
        default_factory=list, description="per persona: another template, channels or timing"
    )

    @field_validator("channels", mode="before")
    @classmethod
    def _one_channel(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("when")
    @classmethod
    def _known_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        return TriggerModel._known_paths(value)

    def to_core(self) -> MessageSpec:
        timing = parse_timing(self.at)
        return MessageSpec(
            id=self.id,
            template=self.template,
            channels=tuple(self.channels),
            timing=timing,
            send_on=tuple(t.to_core() for t in self.send_on),
            conditions=tuple(_conditions(self.when)),
            cancel_on=tuple(t.to_core() for t in self.cancel_on),
            unless=tuple(t.to_core() for t in self.unless),
            expiry=parse_timing(self.expires)
            if self.expires
            else MessageSpec.default_expiry(timing),
            window=self.window.to_core() if self.window else None,
            topic=self.topic,
            essential=self.essential,
            holdout=self.holdout,
            variants=tuple(v.to_core() for v in self.variants),
        )


class SuccessMetricModel(_Model):
    name: str = Field(pattern=_SLUG, examples=["intake_completion_rate", "no_show_rate"])
    description: str = ""
    target: str | None = None


class IdeaModel(_Model):
    """A to-be improvement idea with its owner."""

    idea: str
    owner: Literal["marketing", "operations"]
    who: str = Field(description="the person or team that carries it")
    target: date | None = Field(None, description="target date, YYYY-MM-DD")


class NotesModel(_Model):
    """The journey-map worksheet's notes on a stage."""

    as_is: list[str] = Field(default_factory=list, description="current-experience notes")
    to_be: list[IdeaModel] = Field(default_factory=list, description="improvement ideas")

    def to_core(self) -> StageNotes:
        return StageNotes(
            tuple(self.as_is),
            tuple(
                Idea(i.idea, i.owner, i.who, i.target.isoformat() if i.target else None)
                for i in self.to_be
            ),
        )


class PersonaModel(_Model):
    """A patient segment of the journey map, matched on the event that opens an episode."""

    id: str = Field(pattern=_SLUG)
    name: str
    description: str = ""
    when: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict,
        description="conditions on the opening event (attributes.urgency, patient.language, "
        "attributes.distance, patient.preferred_channel, patient.caregivers); all must hold",
    )
    focus: list[str] = Field(default_factory=list, description="the stages to focus on")

    @field_validator("when")
    @classmethod
    def _known_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        return TriggerModel._known_paths(value)

    def to_core(self) -> Persona:
        return Persona(
            self.id, self.name, tuple(_conditions(self.when)), self.description, tuple(self.focus)
        )


class StageModel(_Model):
    id: str = Field(pattern=_SLUG)
    name: str
    category: StageCategory
    touchpoints: list[Touchpoint] = Field(default_factory=list)
    questions: list[str] = Field(default_factory=list, description="what patients ask here")
    success_metric: SuccessMetricModel | None = None
    enter_on: list[EnterTriggerField] = Field(default_factory=list)
    final: bool = Field(False, description="entering it completes the episode")
    messages: list[MessageModel] = Field(default_factory=list)
    notes: NotesModel = Field(default_factory=NotesModel)

    def to_core(self) -> Stage:
        metric = self.success_metric
        return Stage(
            id=self.id,
            name=self.name,
            category=self.category,
            enter_on=tuple(t.to_core(tuple(t.from_ or ())) for t in self.enter_on),
            messages=tuple(m.to_core() for m in self.messages),
            touchpoints=tuple(self.touchpoints),
            questions=tuple(self.questions),
            success_metric=SuccessMetric(metric.name, metric.description, metric.target)
            if metric
            else None,
            final=self.final,
            notes=self.notes.to_core(),
        )


class ExitModel(TriggerModel):
    outcome: str = Field(pattern=_SLUG, examples=["cancelled", "opted_out"])


class QuietHoursModel(_Model):
    start: LocalTimeText = "21:00"
    end: LocalTimeText = "08:00"


class FrequencyCapModel(_Model):
    limit: int = Field(ge=1)
    per: DurationText


class FlowFile(_Model):
    """One care path: the root of a flow file."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Flow")

    id: str = Field(pattern=_SLUG)
    version: int = Field(ge=1)
    title: str
    description: str = ""
    timezone: str = Field(description="IANA zone used when a patient has none")
    default_language: str = "en"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    quiet_hours: QuietHoursModel = Field(default_factory=QuietHoursModel)
    frequency_caps: dict[Channel, FrequencyCapModel] = Field(default_factory=dict)
    starts_on: list[TriggerField] = Field(min_length=1)
    stages: list[StageModel] = Field(min_length=1)
    exits: list[ExitModel] = Field(default_factory=list)
    personas: list[PersonaModel] = Field(
        default_factory=list, description="patient segments; the first that matches wins"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone '{value}'") from None
        return value

    def to_core(self) -> Flow:
        return Flow(
            id=self.id,
            version=self.version,
            title=self.title,
            description=self.description,
            timezone=self.timezone,
            default_language=self.default_language,
            languages=tuple(self.languages),
            starts_on=tuple(t.to_core() for t in self.starts_on),
            stages=tuple(s.to_core() for s in self.stages),
            exits=tuple(Exit(e.to_core(), e.outcome) for e in self.exits),
            quiet_hours=QuietHours(
                parse_local_time(self.quiet_hours.start), parse_local_time(self.quiet_hours.end)
            ),
            frequency_caps={
                channel: FrequencyCap(cap.limit, parse_duration(cap.per))
                for channel, cap in self.frequency_caps.items()
            },
            personas=tuple(p.to_core() for p in self.personas),
        )


def flow_json_schema() -> dict[str, Any]:
    """The JSON Schema of a flow file, for editors and `flows schema`."""
    schema = FlowFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
