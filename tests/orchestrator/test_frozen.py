"""`frozen.builder` makes the same values as the constructor, still frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import pytest

from orchestrator.actions import Decision, EnterStage, ScheduleMessage
from orchestrator.frozen import builder
from orchestrator.journey import (
    AppointmentState,
    EncounterState,
    Episode,
    Journey,
    ScheduledMessage,
    StageVisit,
)

BUILT = [
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
