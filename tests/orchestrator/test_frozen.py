"""`frozen.builder` makes the same values as the constructor, still frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import pytest

from orchestrator.actions import Decision, EnterStage, ScheduleMessage
from orchestrator.fold import _retimed
from orchestrator.frozen import builder
from orchestrator.journey import (
    AppointmentState,
    EncounterState,
    Episode,
    Journey,
    Recipient,
    ScheduledMessage,
    StageVisit,
)

BUILT = [
    Recipient,
    AppointmentState,
    EncounterState,
    Episode,
    Journey,
    ScheduledMessage,
    StageVisit,
    Decision,
    EnterStage,
    ScheduleMessage,
]


@pytest.mark.parametrize("cls", BUILT, ids=[c.__name__ for c in BUILT])
def test_a_built_value_is_the_constructors_value(cls: type) -> None:
    # A distinct value per field, so that two fields swapped would show.
    values = [f"{f.name}-{i}" for i, f in enumerate(fields(cls))]
    made = cls(*values)
    built = builder(cls)(*values)
    assert type(built) is cls
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    name = fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, "changed")
    assert builder(cls)(**{f.name: v for f, v in zip(fields(cls), values, strict=True)}) == made


def test_a_builder_takes_every_field() -> None:
    with pytest.raises(TypeError):
        builder(StageVisit)("s", datetime(2026, 1, 1, tzinfo=UTC))


def test_a_class_a_builder_would_get_wrong_is_refused() -> None:
    @dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            raise ValueError

    for cls in (NoSlots, Checked):
        with pytest.raises(TypeError):
            builder(cls)


def test_a_builder_has_the_constructors_defaults() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    made = builder(Episode)("e1", at, "s", at)
    assert made == Episode("e1", at, "s", at)
    # A default factory runs per value, as in the constructor.
    assert made.appointments == {}
    assert made.appointments is not builder(Episode)("e2", at, "s", at).appointments


def test_a_class_with_its_own_init_or_new_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class OwnInit:
        a: int

        def __init__(self, a: int) -> None:
            object.__setattr__(self, "a", abs(a))

    @dataclass(frozen=True, slots=True)
    class OwnNew:
        a: int

        def __new__(cls, a: int) -> OwnNew:
            return super().__new__(cls)

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = dataclasses.field(kw_only=True)

    for cls in (OwnInit, OwnNew, KeywordOnly):
        with pytest.raises(TypeError):
            builder(cls)


# fold.py and engine.py call these builders by position, for speed: a field
# moved (say `appointment_id` and `encounter_id`, both `str | None`) would pass
# mypy and swap values. Reorder a class, then fix those calls and this list.
CALLED_BY_POSITION = {
    ScheduledMessage: (
        "key flow_id flow_version episode_id stage_id message_id template channels recipient"
        " due_at expires_at anchor created_by timezone appointment_id encounter_id topic"
        " essential window"
    ),
    Journey: (
        "patient_id flow_id events episodes messages dropped patient checkpoint"
        " next_checkpoint no_start no_adopt"
    ),
    Episode: (
        "id started_at stage_id stage_entered_at status outcome appointments encounters"
        " appointment_id encounter_id history events ended_at"
    ),
    StageVisit: "stage_id entered_at event_id",
    AppointmentState: "id start status service location provider",
    EncounterState: "id admitted_at discharged_at service",
    EnterStage: "flow_id episode_id stage_id event_id at",
    Decision: "journey actions",
    Recipient: "patient_id caregiver_id",
}


@pytest.mark.parametrize("cls", list(CALLED_BY_POSITION), ids=lambda c: c.__name__)
def test_the_fields_are_in_the_order_the_positional_calls_follow(cls: type) -> None:
    assert [f.name for f in fields(cls)] == CALLED_BY_POSITION[cls].split()


def test_a_retimed_message_is_the_message_replaced() -> None:
    # `fold._retimed` copies every other field by name into the positional builder.
    values = [f"{f.name}-{i}" for i, f in enumerate(fields(ScheduledMessage))]
    message = ScheduledMessage(*values)  # type: ignore[arg-type]
    due, expires = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    got = _retimed(message, "k2", due, expires, "evt-2")
    made = dataclasses.replace(
        message, key="k2", due_at=due, expires_at=expires, created_by="evt-2"
    )
    assert type(got) is ScheduledMessage
    assert repr(got) == repr(made)
