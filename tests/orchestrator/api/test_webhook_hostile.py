"""Hostile input to the provider webhooks: never a 5xx, the rejected kept, the service going on.

Signatures are computed here, so the hostile bodies get past the signature
check and reach the parsing and the store, on SQLite and on PostgreSQL (where
a NUL or an over-long value is refused by the database itself).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import store_reads
from tests.orchestrator.api.test_webhooks import (  # noqa: F401 - fixtures
    PHONE,
    SG_SIGNATURE,
    SG_TIMESTAMP,
    Hooks,
    flows,
    open_hooks,
)

# Every example runs against one service: the examples share its store.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as hostile senders write it: NULs, lone surrogates' neighbours, control
# characters, scripts, and now and then something long.
_hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\x00", "SM\x00x", "²", "\u202e", "\ufeff", "\ud7ff", "STOP\x00"]),
    # Past the columns' 40, 100 and 200 characters; the 5,000s have tests of their own.
    st.builds(lambda c, n: c * n, st.sampled_from(["9", "a", "\x00", "é"]), st.integers(1, 300)),
)
# What a form value can be on the wire: text the validator can sign (no lone surrogates).
_form_text = _hostile_text.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
_TWILIO_FIELDS = ["MessageSid", "MessageStatus", "SmsStatus", "ErrorCode", "From", "To", "Body"]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.fixture
def hostile(open_hooks: Any, store_url: str) -> Hooks:  # noqa: F811 - the imported fixture
    hooks: Hooks = open_hooks(db=store_url)
    return hooks


def _sendgrid_post_raw_stamp(hooks: Hooks, payload: bytes, stamp: str) -> Any:
    """A signed SendGrid post whose timestamp header is sent as UTF-8 bytes, whatever it holds."""
    signature = hooks.signing_key.sign(stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    headers = {
        SG_SIGNATURE.encode(): base64.b64encode(signature),
        SG_TIMESTAMP.encode(): stamp.encode(),
        b"content-type": b"application/json",
    }
    return hooks.client.post("/webhooks/sendgrid/events", content=payload, headers=headers)


def _rejected_count(hooks: Hooks) -> int:
    return len(store_reads.rejected(hooks.service.store, limit=100_000))


# -- SendGrid --------------------------------------------------------------------------


@pytest.mark.parametrize("stamp", ["²", "9" * 5000, "١٢٣", "12 ", "-1", "+1"])
def test_a_sendgrid_timestamp_that_is_no_unix_time_gets_403_and_is_not_kept(
    hostile: Hooks, stamp: str
) -> None:
    response = _sendgrid_post_raw_stamp(hostile, b"[]", stamp)

    assert response.status_code == 403
    assert response.json() == {"error": "signature check failed"}
    assert store_reads.rejected(hostile.service.store) == []


def test_a_signed_sendgrid_body_nested_5000_deep_gets_400_and_is_kept(hostile: Hooks) -> None:
    body = _nested(5000)

    response = hostile.sendgrid_post(body)

    assert response.status_code == 400
    assert "nested" in response.json()["error"]
    assert store_reads.rejected(hostile.service.store)[0].body == body


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"sg_event_id": "e\x00"}, "item 0: sg_event_id"),
        ({"sg_event_id": "e" * 201}, "item 0: sg_event_id"),
        ({"sg_event_id": "e", "message_key": "k\x00"}, "item 0: message_key"),
        ({"sg_event_id": "e", "sg_message_id": "m\x00.filter"}, "item 0: sg_message_id"),
        ({"sg_event_id": "\ud800"}, "item 0: sg_event_id"),
        ("timestamp_digits", "not JSON"),
    ],
)
def test_a_signed_sendgrid_event_the_store_cannot_hold_gets_400_and_is_kept(
    hostile: Hooks, event: dict[str, Any] | str, reason: str
) -> None:
    if event == "timestamp_digits":  # a number past what `int()` takes from text
        body = b'[{"event": "delivered", "sg_event_id": "e", "timestamp": ' + b"9" * 5000 + b"}]"
    else:
        body = json.dumps([{"event": "delivered"} | event]).encode()

    response = hostile.sendgrid_post(body)

    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
    assert store_reads.rejected(hostile.service.store)[0].body == body


_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    _hostile_text,
)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_hostile_text, inner, max_size=3),
    max_leaves=8,
)
_sendgrid_event = st.fixed_dictionaries(
    {
        "event": st.sampled_from(
            ["delivered", "open", "click", "bounce", "dropped", "unsubscribe", "deferred", "x"]
        )
        | _hostile_text,
        "sg_event_id": _hostile_text,
    },
    optional={
        "message_key": _hostile_text | _json,
        "sg_message_id": _hostile_text | _json,
        "timestamp": _json_leaf | st.integers(),
        "type": _hostile_text,
    },
)
_sendgrid_body = st.one_of(
    st.lists(_sendgrid_event, max_size=4).map(lambda b: json.dumps(b).encode()),
    _json.map(lambda b: json.dumps(b).encode()),
    st.sampled_from([2, 199, 200, 1000, 5000]).map(_nested),
    st.binary(max_size=200),
)


@FUZZ
@given(body=_sendgrid_body)
def test_signed_hostile_sendgrid_bodies_never_get_a_5xx_and_every_refusal_is_kept(
    hostile: Hooks, body: bytes
) -> None:
    before = _rejected_count(hostile)

    response = hostile.sendgrid_post(body)

    # 403: a body that is not text cannot carry SendGrid's signature (not kept).
    assert response.status_code in (200, 400, 403), response.text
    assert _rejected_count(hostile) == before + (response.status_code == 400)
    good = json.dumps([{"event": "open", "sg_event_id": f"good-{before}-{len(body)}"}])
    assert hostile.sendgrid_post(good.encode()).status_code == 200


# -- Twilio ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/webhooks/twilio/status", {"MessageSid": "SM\x00", "MessageStatus": "delivered"}),
        ("/webhooks/twilio/status", {"MessageSid": "S" * 5000, "MessageStatus": "sent"}),
        (
            "/webhooks/twilio/status?key=k%00",
            {"MessageSid": "SM1", "MessageStatus": "delivered"},
        ),
        ("/webhooks/twilio/inbound", {"MessageSid": "SM\x00", "From": PHONE, "Body": "STOP"}),
        ("/webhooks/twilio/inbound", {"MessageSid": "SM1", "From": "+1\x00555", "Body": "C"}),
        ("/webhooks/twilio/inbound", {"MessageSid": "SM1", "From": "9" * 5000, "Body": "C"}),
    ],
)
def test_a_signed_twilio_value_the_store_cannot_hold_gets_400_and_is_kept(
    hostile: Hooks, path: str, params: dict[str, str]
) -> None:
    response = hostile.twilio_post(path, params)

    assert response.status_code == 400, response.text
    assert store_reads.rejected(hostile.service.store)[0].source.startswith("webhook:twilio.")


_twilio_form = st.dictionaries(
    st.sampled_from(_TWILIO_FIELDS) | _form_text, _form_text, max_size=6
) | st.fixed_dictionaries(
    {"MessageSid": _form_text, "From": st.just(PHONE) | _form_text, "Body": _form_text}
)


@FUZZ
@given(
    path=st.sampled_from(["/webhooks/twilio/status", "/webhooks/twilio/inbound"]),
    key=st.none() | _form_text,
    params=_twilio_form,
)
def test_signed_hostile_twilio_forms_never_get_a_5xx_and_every_refusal_is_kept(
    hostile: Hooks, path: str, key: str | None, params: dict[str, str]
) -> None:
    before = _rejected_count(hostile)
    if key is not None:
        path = f"{path}?key={quote(key)}"

    response = hostile.twilio_post(path, params)

    assert response.status_code in (200, 204, 400), response.text
    assert _rejected_count(hostile) == before + (response.status_code == 400)
    good = {"MessageSid": f"SMgood{before}", "From": PHONE, "Body": "HELP"}
    assert hostile.twilio_post("/webhooks/twilio/inbound", good).status_code == 200
