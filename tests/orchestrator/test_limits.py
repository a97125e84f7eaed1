"""The input limits: JSON read within them, every field of an event checked, long ids bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import InputError, JsonError
from orchestrator.event import MAX_ID_LENGTH, bound_id
from orchestrator.event_schema import dump_event, parse_event, parse_event_json
from orchestrator.limits import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTES_SIZE,
    MAX_DOCUMENT_DEPTH,
    MAX_INTEGER,
    MAX_TEXT_LENGTH,
    read_json,
)
from tests.builders import make_event_data


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(InputError) as caught:
        parse_event(data)
    return list(caught.value.problems)


# -- reading JSON -------------------------------------------------------------------------


def test_json_nested_as_deep_as_the_limit_is_read() -> None:
    assert read_json(json.dumps(nested(MAX_DOCUMENT_DEPTH))) == nested(MAX_DOCUMENT_DEPTH)


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH + 1, 200, 990, 5000, 200_000])
def test_json_nested_deeper_than_the_limit_is_a_depth_error_not_a_recursion_error(
    depth: int,
) -> None:
    with pytest.raises(JsonError) as caught:
        read_json("[" * depth + "]" * depth)
    assert caught.value.kind == "depth"
    assert str(caught.value) == f"body: nested deeper than {MAX_DOCUMENT_DEPTH} levels"


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 1' + "0" * 5000 + "}",  # past Python's own limit of 4,300 digits
        '{"n": ' + str(MAX_INTEGER + 1) + "}",
        '{"n": -' + str(MAX_INTEGER + 2) + "}",
        '{"n": 1e400}',
        '{"n": NaN}',
        '{"n": -Infinity}',
    ],
)
def test_a_number_out_of_range_is_a_number_error(text: str) -> None:
    with pytest.raises(JsonError) as caught:
        read_json(text, where="line 3")
    assert caught.value.kind == "number"
    assert caught.value.where == "line 3"


def test_the_largest_integers_and_ordinary_floats_are_read() -> None:
    assert read_json(f"[{MAX_INTEGER}, -{MAX_INTEGER + 1}, 1.5e300]") == [
        MAX_INTEGER,
        -MAX_INTEGER - 1,
        1.5e300,
    ]


@pytest.mark.parametrize("text", [b"\xff{}", "{not json", ""])
def test_text_that_is_not_json_is_a_syntax_error(text: str | bytes) -> None:
    with pytest.raises(JsonError) as caught:
        read_json(text)
    assert caught.value.kind == "syntax"


def test_an_event_record_out_of_the_limits_is_an_input_error_naming_the_event() -> None:
    with pytest.raises(InputError, match=r"^event: nested deeper"):
        parse_event_json("[" * 2000 + "]" * 2000)


# -- identifiers --------------------------------------------------------------------------


def test_an_id_within_the_limit_is_kept_as_it_is() -> None:
    assert bound_id("x" * MAX_ID_LENGTH) == "x" * MAX_ID_LENGTH


def test_a_long_id_is_a_readable_prefix_and_a_digest_that_fits_the_column() -> None:
    bounded = bound_id("p" * 300)
    assert len(bounded) == MAX_ID_LENGTH
    assert bounded.startswith("p" * 135 + "~")


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.text(min_size=190, max_size=190),
    a=st.text(min_size=1, max_size=40),
    b=st.text(min_size=1, max_size=40),
)
def test_two_long_ids_never_collide_and_one_always_maps_the_same(
    prefix: str, a: str, b: str
) -> None:
    first, second = prefix + a, prefix + b
    assert bound_id(first) == bound_id(first)
    assert (bound_id(first) == bound_id(second)) == (first == second)
    assert bound_id(bound_id(first)) == bound_id(first)


# -- one event ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("id",), "id"),
        (("patient", "id"), "patient.id"),
        (("appointment", "location"), "appointment.location"),
        (("appointment", "provider"), "appointment.provider"),
        (("attributes", "note"), "attributes.note"),
    ],
)
@pytest.mark.parametrize(
    ("bad", "why"), [("\x00", "NUL"), ("\ud800", "surrogate"), ("\udfff", "surrogate")]
)
def test_a_nul_or_a_lone_surrogate_in_any_text_is_refused_naming_the_field(
    path: tuple[str, ...], field: str, bad: str, why: str
) -> None:
    data = make_event_data(attributes={"note": "ok"})
    holder = data
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = f"A{bad}B"

    problems = problems_of(data)

    assert any(p.startswith(f"{field}:") and why in p for p in problems), problems
    assert all(bad not in p for p in problems)


def test_a_valid_surrogate_pair_is_text_like_any_other() -> None:
    data = make_event_data()
    data["appointment"]["location"] = json.loads('"Sala \\ud83c\\udfe5"')
    assert parse_event(data).appointment is not None


def test_a_nul_in_a_field_name_is_refused_without_echoing_the_name() -> None:
    data = make_event_data(attributes={"a\x00b": 1})
    assert problems_of(data) == ["attributes.(a field): the name contains a NUL character"]


def test_free_text_longer_than_the_limit_is_refused() -> None:
    data = make_event_data()
    data["appointment"]["location"] = "L" * (MAX_TEXT_LENGTH + 1)
    assert problems_of(data) == [f"appointment.location: longer than {MAX_TEXT_LENGTH} characters"]


def test_an_email_longer_than_the_store_holds_is_refused() -> None:
    data = make_event_data()
    data["patient"]["email"] = "a" * 250 + "@example.org"
    assert problems_of(data) == ["patient.email: longer than 254 characters"]


@pytest.mark.parametrize("where", ["attributes", "unknown field"])
def test_an_attribute_nested_deeper_than_the_limit_is_refused_naming_it(where: str) -> None:
    data = make_event_data()
    if where == "attributes":
        data["attributes"] = {"deep": nested(MAX_ATTRIBUTE_DEPTH + 1)}
        field = "attributes.deep"
    else:
        data["patient"]["deep"] = nested(MAX_ATTRIBUTE_DEPTH + 1)
        field = "patient.deep"

    assert problems_of(data) == [f"{field}: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels"]

    holder = data["attributes"] if where == "attributes" else data["patient"]
    holder["deep"] = nested(MAX_ATTRIBUTE_DEPTH)
    key = field.removeprefix("attributes.")
    assert parse_event(data).attributes[key] == nested(MAX_ATTRIBUTE_DEPTH)


def test_attributes_larger_than_the_limit_together_are_refused() -> None:
    data = make_event_data(attributes={"a": "x" * (MAX_ATTRIBUTES_SIZE // 2)})
    data["b"] = "y" * (MAX_ATTRIBUTES_SIZE // 2)
    [problem] = problems_of(data)
    assert problem.startswith("attributes: unknown fields and attributes take")


# -- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "9999-12-31T23:59:59-01:00"),
        ("occurred_at", "0001-01-01T00:00:00+01:00"),
        ("start", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_a_time_that_overflows_when_converted_to_utc_is_refused_naming_the_field(
    field: str, value: str
) -> None:
    data = make_event_data()
    holder = data["appointment"] if field == "start" else data
    holder[field] = value
    name = "appointment.start" if field == "start" else field
    assert problems_of(data) == [f"{name}: out of range when converted to UTC"]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z"])
def test_a_placeholder_time_that_fits_in_utc_is_refused_too(value: str) -> None:
    data = make_event_data()
    data["appointment"]["start"] = value
    [problem] = problems_of(data)
    assert problem.startswith("appointment.start: outside 1900 to 2199 (UTC)")


@pytest.mark.parametrize("value", [1767225600, 1767225600.5, "1767225600", True, "2026-03-02"])
def test_a_time_as_a_number_or_a_date_alone_is_refused(value: object) -> None:
    data = make_event_data()
    data["occurred_at"] = value
    [problem] = problems_of(data)
    assert problem.startswith("occurred_at: expected an ISO 8601 date and time with an offset")


def test_a_good_event_round_trips_unchanged_through_the_checks() -> None:
    data = make_event_data(attributes={"deep": nested(MAX_ATTRIBUTE_DEPTH), "n": MAX_INTEGER})
    event = parse_event(data)
    assert parse_event(dump_event(event)) == event
