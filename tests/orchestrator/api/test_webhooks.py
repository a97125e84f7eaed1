"""The provider webhooks in process: signatures, forward-only delivery states, STOP/START/HELP, replies.

The service runs with Twilio and SendGrid configured against the stand-ins,
so the messages the callbacks talk about were really sent through them.
Signatures are checked with the published vectors (tests/data/twilio,
tests/data/sendgrid) and with keys the tests generate.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from orchestrator.api import create_app
from orchestrator.clock import VirtualClock
from orchestrator.errors import StoreError
from orchestrator.event import Channel
from orchestrator.ports import MessageView
from orchestrator.service import EmbeddedService
from orchestrator.settings import Settings
from orchestrator.store.delivery import DeliveryLedger
from orchestrator.store.tables import ProcessedEventRow
from tests import store_reads
from tests.live import TestClient
from tests.samples import ROOT, sample_events
from tests.standins import ACCOUNT_SID, StandIn, sendgrid_standin, twilio_standin

DATA = Path(__file__).resolve().parents[2] / "data"
START = datetime(2026, 3, 1, tzinfo=UTC)
PUBLIC = "https://orchestrator.example.org"
TOKEN = "twilio-webhook-token"
PHONE = "+15555550101"  # the first cardiology sample patient
SG_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SG_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


class _Form(dict[str, list[str]]):
    def getlist(self, name: str) -> list[str]:
        return self[name]


def _public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@dataclass
class Hooks:
    service: EmbeddedService
    clock: VirtualClock
    client: TestClient
    twilio: StandIn
    sendgrid: StandIn
    signing_key: ec.EllipticCurvePrivateKey

    def dispatch_until(self, until: datetime) -> None:
        while self.clock.now() < until:
            self.clock.advance(timedelta(hours=1))
            while self.service.dispatcher.tick():
                pass

    def send_first(self, data: dict[str, Any]) -> MessageView:
        """Ingest one event and dispatch until its first message went; that message."""
        assert self.client.post("/events", json=data).status_code == 202
        self.dispatch_until(datetime(2026, 3, 2, 17, tzinfo=UTC))
        sent = [m for m in self.service.store.messages() if m.status == "sent"]
        assert sent, self.service.store.messages()
        return sent[0]

    def twilio_post(
        self, path: str, params: dict[str, str], *, signature: str | None = None
    ) -> Any:
        validator = RequestValidator(TOKEN)
        url = PUBLIC + path
        headers = {"content-type": "application/x-www-form-urlencoded"}
        headers["x-twilio-signature"] = signature or validator.compute_signature(url, params)
        return self.client.post(path, content=urlencode(params), headers=headers)

    def status(self, key: str, sid: str, state: str, **extra: str) -> Any:
        params = {"MessageSid": sid, "MessageStatus": state, "AccountSid": ACCOUNT_SID} | extra
        return self.twilio_post(f"/webhooks/twilio/status?key={key}", params)

    def inbound(self, body: str, sender: str = PHONE, sid: str = "SMin0001") -> Any:
        params = {"MessageSid": sid, "From": sender, "To": "+15555550100", "Body": body}
        return self.twilio_post("/webhooks/twilio/inbound", params)

    def sendgrid_post(self, payload: bytes, *, timestamp: str | None = None) -> Any:
        stamp = timestamp or str(int(self.clock.now().timestamp()))
        signature = self.signing_key.sign(stamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
        headers = {
            SG_SIGNATURE: base64.b64encode(signature).decode(),
            SG_TIMESTAMP: stamp,
            "content-type": "application/json",
        }
        return self.client.post("/webhooks/sendgrid/events", content=payload, headers=headers)

    def message(self, key: str) -> MessageView:
        (found,) = [m for m in self.service.store.messages() if m.key == key]
        return found

    def audit_statuses(self, key: str) -> list[tuple[str, str | None]]:
        return [(a.status, a.reason) for a in self.service.store.audit() if a.key == key]


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the cardiology flow (the samples used here): loading every flow is slow."""
    folder = tmp_path_factory.mktemp("flows")
    shutil.copy(ROOT / "flows" / "cardiology-consult.yaml", folder)
    return folder


@pytest.fixture
def open_hooks(tmp_path: Path, flows: Path) -> Iterator[Any]:
    with ExitStack() as stack:
        twilio = stack.enter_context(twilio_standin())
        sendgrid = stack.enter_context(sendgrid_standin())
        signing_key = ec.generate_private_key(ec.SECP256R1())

        def open_(*, start: datetime = START, **overrides: Any) -> Hooks:
            clock = VirtualClock(start)
            options: dict[str, Any] = {
                "db": f"sqlite:///{tmp_path / 'store.db'}",
                "flows": flows,
                "templates": ROOT / "templates",
                "public_url": PUBLIC,
                "twilio_account_sid": ACCOUNT_SID,
                "twilio_auth_token": TOKEN,
                "twilio_messaging_service_sid": "MG" + "1" * 32,
                "twilio_api_base": twilio.url,
                "twilio_timeout_seconds": 0.5,
                "sendgrid_api_key": "SG.test-key",
                "sendgrid_sender": "care@example.org",
                "sendgrid_api_base": sendgrid.url,
                "sendgrid_webhook_public_key": _public_key_b64(signing_key),
            }
            service = EmbeddedService.build(Settings(**(options | overrides)), clock=clock)
            stack.callback(service.store.engine.dispose)
            sms = service.dispatcher.connectors[Channel.SMS]
            stack.callback(sms.close)  # type: ignore[attr-defined]
            client = stack.enter_context(TestClient(create_app(service, run_dispatcher=False)))
            return Hooks(service, clock, client, twilio, sendgrid, signing_key)

        yield open_


@pytest.fixture
def hooks(open_hooks: Any) -> Hooks:
    hooks: Hooks = open_hooks()
    return hooks


def first_event() -> dict[str, Any]:
    return sample_events("cardiology-consult")[0]


def email_only_event() -> dict[str, Any]:
    data = first_event()
    data["patient"] = data["patient"] | {"phone": None, "preferred_channel": "email"}
    data["patient"]["caregivers"] = []
    return data


# -- Twilio signatures ------------------------------------------------------------------


def test_the_validator_accepts_the_published_twilio_vectors_and_rejects_changes() -> None:
    vectors = json.loads((DATA / "twilio" / "request_signature_vectors.json").read_text())
    validator = RequestValidator(vectors["auth_token"])
    params = vectors["params"]

    assert validator.validate(vectors["url"], params, vectors["expected_signature"])
    for extra in vectors["additional_vectors"]:
        if extra.get("params") == "same as top-level params":
            assert validator.validate(extra["url"], params, extra["signature"]), extra["name"]
        elif "params_form_encoded" in extra:
            # A repeated key: every value counts, as the webhook parses forms.
            form = _Form(parse_qs(extra["params_form_encoded"]))
            assert validator.compute_signature(extra["url"], form) == extra["expected_signature"]
    assert not validator.validate(
        vectors["url"], params | {"Digits": "9999"}, vectors["expected_signature"]
    )


def test_a_forged_twilio_signature_gets_403_and_changes_nothing(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    message = hooks.send_first(first_event())
    audit_before = hooks.service.store.audit()

    with caplog.at_level(logging.WARNING, logger="orchestrator.api.webhooks"):
        forged = hooks.twilio_post(
            f"/webhooks/twilio/status?key={message.key}",
            {"MessageSid": "SMx", "MessageStatus": "failed"},
            signature="bm90IGEgc2lnbmF0dXJl",
        )
        unsigned = hooks.client.post(
            "/webhooks/twilio/inbound", content=urlencode({"From": PHONE, "Body": "STOP"})
        )

    assert (forged.status_code, unsigned.status_code) == (403, 403)
    assert hooks.message(message.key).status == "sent"
    assert hooks.service.store.audit() == audit_before
    assert store_reads.consent(hooks.service.store, "p-cc-001", "patient") == {}
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.msg == "webhook.forbidden"]
    assert reasons == ["signature_invalid", "signature_missing"]


def test_a_signed_but_malformed_status_callback_gets_400_and_is_kept(hooks: Hooks) -> None:
    response = hooks.twilio_post("/webhooks/twilio/status", {"MessageSid": "SM1"})

    assert response.status_code == 400
    assert "MessageStatus" in response.json()["error"]
    (kept,) = store_reads.rejected(hooks.service.store)
    assert kept.source == "webhook:twilio.status"
    assert b"MessageSid=SM1" in kept.body


def test_an_unsigned_body_that_is_not_text_gets_403_and_is_not_kept(hooks: Hooks) -> None:
    response = hooks.client.post(
        "/webhooks/twilio/inbound",
        content=b"\xff" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": "x"},
    )

    assert response.status_code == 403
    assert store_reads.rejected(hooks.service.store) == []


@pytest.mark.parametrize(
    "path", ["/webhooks/twilio/status", "/webhooks/twilio/inbound", "/webhooks/sendgrid/events"]
)
def test_a_webhook_body_over_the_limit_gets_413_before_any_signature_check(
    open_hooks: Any, path: str
) -> None:
    hooks: Hooks = open_hooks(max_body_bytes=1024)

    response = hooks.client.post(
        path, content=b"a=" + b"b" * 2048, headers={"x-twilio-signature": "x"}
    )

    assert response.status_code == 413
    assert store_reads.rejected(hooks.service.store) == []


# -- Twilio status callbacks -------------------------------------------------------------


def test_status_callbacks_only_move_forward(hooks: Hooks) -> None:
    message = hooks.send_first(first_event())
    key = message.key
    sid = hooks.twilio.created[0]["sid"]

    for state in ("queued", "sent", "delivered", "sent", "failed", "delivered"):
        assert hooks.status(key, sid, state).status_code == 204

    assert hooks.message(key).status == "delivered"
    assert [s for s, _ in hooks.audit_statuses(key)].count("delivered") == 1
    assert "failed" not in [s for s, _ in hooks.audit_statuses(key)]


def test_an_undelivered_callback_fails_the_message_with_the_error_code(hooks: Hooks) -> None:
    message = hooks.send_first(first_event())
    sid = hooks.twilio.created[0]["sid"]

    hooks.status(message.key, sid, "undelivered", ErrorCode="30003")

    assert hooks.message(message.key).status == "failed"
    assert hooks.audit_statuses(message.key)[-1] == ("failed", "provider:undelivered:30003")


def test_a_callback_settles_a_send_whose_outcome_was_unknown(hooks: Hooks) -> None:
    hooks.twilio.held.add(PHONE)
    hooks.client.post("/events", json=first_event())
    hooks.clock.move_to(datetime(2026, 3, 2, 15, 30, tzinfo=UTC))  # the first message is due
    hooks.service.dispatcher.tick()
    (unsure,) = [m for m in hooks.service.store.messages() if m.status == "sending"]
    hooks.twilio.release.set()

    hooks.status(unsure.key, hooks.twilio.created[0]["sid"], "delivered")

    assert hooks.message(unsure.key).status == "delivered"
    assert [s for s, _ in hooks.audit_statuses(unsure.key)][-2:] == ["sent", "delivered"]
    assert len(hooks.twilio.sends()) == 1


# -- inbound SMS ----------------------------------------------------------------------------


OPT_OUT_WORDS = ["STOP", "stopall", "Unsubscribe", "CANCEL", "end", "QUIT", "REVOKE", "OPTOUT"]


def test_every_carrier_opt_out_word_opts_out_and_every_opt_in_word_opts_back_in(
    hooks: Hooks,
) -> None:
    hooks.client.post("/events", json=first_event())
    opt_in_words = ["START", "yes", "UNSTOP"]

    for n, word in enumerate([*OPT_OUT_WORDS, " stop. "]):
        hooks.clock.advance(timedelta(minutes=1))
        response = hooks.inbound(word, sid=f"SMout{n}")
        consent = store_reads.consent(hooks.service.store, "p-cc-001", "patient")
        assert consent[Channel.SMS].granted is False, word
        assert response.status_code == 200
        assert response.text.strip().endswith("<Response />")
        assert Channel.EMAIL not in consent

        hooks.clock.advance(timedelta(minutes=1))
        hooks.inbound(opt_in_words[n % 3], sid=f"SMin{n}")
        consent = store_reads.consent(hooks.service.store, "p-cc-001", "patient")
        assert consent[Channel.SMS].granted is True, opt_in_words[n % 3]


def test_stop_from_a_caregiver_phone_opts_out_that_caregiver_only(hooks: Hooks) -> None:
    hooks.client.post("/events", json=first_event())

    hooks.inbound("STOP", sender="+15555550102")

    assert (
        store_reads.consent(hooks.service.store, "p-cc-001", "caregiver:c-cc-001-1")[
            Channel.SMS
        ].granted
        is False
    )
    assert store_reads.consent(hooks.service.store, "p-cc-001", "patient") == {}


def test_help_answers_with_the_help_text(hooks: Hooks) -> None:
    response = hooks.inbound("HELP")

    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>Riverside Health reminders." in response.text


def test_other_replies_become_message_replied_events(hooks: Hooks) -> None:
    hooks.client.post("/events", json=first_event())

    for n, body in enumerate(["C", "r", "maybe"]):
        assert hooks.inbound(body, sid=f"SMreply{n}").status_code == 200

    with hooks.service.store.engine.connect() as c:
        types = c.execute(
            select(ProcessedEventRow.type, ProcessedEventRow.patient_id).where(
                ProcessedEventRow.source == "twilio"
            )
        ).all()
    assert types == [("message.replied", "p-cc-001")] * 3


def test_the_same_inbound_sms_twice_records_once(hooks: Hooks) -> None:
    hooks.client.post("/events", json=first_event())

    hooks.inbound("C", sid="SMdup")
    hooks.inbound("C", sid="SMdup")

    with hooks.service.store.engine.connect() as c:
        count = len(
            c.execute(
                select(ProcessedEventRow.event_id).where(ProcessedEventRow.source == "twilio")
            ).all()
        )
    assert count == 1


# -- SendGrid event webhook --------------------------------------------------------------------


def test_the_published_sendgrid_vector_verifies_and_its_negatives_do_not(open_hooks: Any) -> None:
    vector = json.loads((DATA / "sendgrid" / "event_webhook_signature_vector.json").read_text())
    stamp = int(vector["timestamp"])
    hooks: Hooks = open_hooks(
        start=datetime.fromtimestamp(stamp, UTC), sendgrid_webhook_public_key=vector["public_key"]
    )

    def post(payload: str, signature: str, timestamp: str) -> int:
        headers = {SG_SIGNATURE: signature, SG_TIMESTAMP: timestamp}
        response = hooks.client.post(
            "/webhooks/sendgrid/events", content=payload.encode(), headers=headers
        )
        return response.status_code

    assert post(vector["payload"], vector["signature"], vector["timestamp"]) == 200
    for negative in vector["negative_vectors"]:
        payload = (
            vector["payload"] if negative["payload"] == "same as top-level" else negative["payload"]
        )
        signature = (
            vector["signature"]
            if negative["signature"] == "same as top-level"
            else negative["signature"]
        )
        timestamp = (
            vector["timestamp"]
            if negative["timestamp"] == "same as top-level"
            else negative["timestamp"]
        )
        if negative["public_key"] != "same as top-level":
            continue  # a different key is a different service: below
        assert post(payload, signature, timestamp) == 403, negative["test"]
    bad_key: Hooks = open_hooks(
        start=datetime.fromtimestamp(stamp, UTC),
        sendgrid_webhook_public_key=vector["negative_vectors"][0]["public_key"],
    )
    headers = {SG_SIGNATURE: vector["signature"], SG_TIMESTAMP: vector["timestamp"]}
    response = bad_key.client.post(
        "/webhooks/sendgrid/events", content=vector["payload"].encode(), headers=headers
    )
    assert response.status_code == 403


def test_a_sendgrid_timestamp_outside_the_tolerance_gets_403(hooks: Hooks) -> None:
    stale = str(int(hooks.clock.now().timestamp()) - 3600)

    response = hooks.sendgrid_post(b"[]", timestamp=stale)

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"event": "delivered"}', "expected a JSON array"),
        (b'[{"event": "delivered"}]', "item 0: sg_event_id"),
    ],
)
def test_a_signed_but_malformed_sendgrid_batch_gets_400_and_is_kept(
    hooks: Hooks, body: bytes, reason: str
) -> None:
    response = hooks.sendgrid_post(body)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert store_reads.rejected(hooks.service.store)[0].body == body


def test_the_documented_event_examples_go_through_and_duplicates_are_dropped(hooks: Hooks) -> None:
    every_type = (DATA / "sendgrid" / "event_webhook_all_events_example.json").read_bytes()
    per_event = (DATA / "sendgrid" / "event_webhook_per_event_examples.json").read_bytes()

    first = hooks.sendgrid_post(every_type).json()
    second = hooks.sendgrid_post(per_event).json()
    again = hooks.sendgrid_post(per_event).json()

    # The all-types example uses the placeholder "sg_event_id" for every event: one applies.
    assert first == {"received": 11, "applied": 1}
    # The bounce and blocked examples share one sg_event_id.
    assert second == {"received": 12, "applied": 11}
    assert again == {"received": 12, "applied": 0}


def sendgrid_event(kind: str, key: str, message_id: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "email": "ana.morales@example.org",
        "timestamp": 1772470000,
        "event": kind,
        "sg_event_id": f"evt-{kind}-{n}",
        "sg_message_id": f"{message_id}.filterdrecv-1",
        "message_key": key,
        **extra,
    }


def test_sendgrid_events_update_the_message_and_the_audit(hooks: Hooks) -> None:
    message = hooks.send_first(email_only_event())
    key, message_id = message.key, "SGMSG00000001"
    assert message.channel == "email"

    batch = [
        sendgrid_event("processed", key, message_id, 1),
        sendgrid_event("delivered", key, message_id, 2),
        sendgrid_event("open", key, message_id, 3),
        sendgrid_event("click", key, message_id, 4, url="https://portal.example.org"),
        sendgrid_event("bounce", key, message_id, 5, type="bounce"),
    ]
    response = hooks.sendgrid_post(json.dumps(batch).encode())

    assert response.json() == {"received": 5, "applied": 5}
    assert hooks.message(key).status == "delivered"
    assert hooks.audit_statuses(key)[-3:] == [
        ("delivered", None),
        ("delivered", "engagement:open"),
        ("delivered", "engagement:click"),
    ]


def test_sendgrid_events_a_failed_request_did_not_apply_are_applied_by_the_retry(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = hooks.send_first(email_only_event())
    key, message_id = message.key, "SGMSG00000001"
    batch = json.dumps(
        [
            sendgrid_event("processed", key, message_id, 1),
            sendgrid_event("delivered", key, message_id, 2),
            sendgrid_event("unsubscribe", key, message_id, 3),
        ]
    ).encode()
    ledger = DeliveryLedger
    advance = ledger.advance
    failures = [StoreError("store write failed: OperationalError")]

    def failing_once(self: DeliveryLedger, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return advance(self, *args, **kwargs)

    monkeypatch.setattr(ledger, "advance", failing_once)
    with pytest.raises(StoreError):
        hooks.sendgrid_post(batch)  # the service answers 500: SendGrid retries the batch

    retried = hooks.sendgrid_post(batch).json()

    # "processed" went through the first time; the retry applies the other two.
    assert retried == {"received": 3, "applied": 2}
    assert hooks.message(key).status == "delivered"
    consent = store_reads.consent(hooks.service.store, "p-cc-001", "patient")[Channel.EMAIL]
    assert (consent.granted, consent.source) == (False, "sendgrid:unsubscribe")


def test_sendgrid_opt_outs_and_suppressions_stop_email(hooks: Hooks) -> None:
    message = hooks.send_first(email_only_event())
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("unsubscribe", {}),
        ("group_unsubscribe", {"asm_group_id": 1}),
        ("spamreport", {}),
        ("group_resubscribe", {"asm_group_id": 1}),
        ("bounce", {"type": "bounce"}),
        ("dropped", {"reason": "Bounced Address"}),
    ]

    for n, (kind, extra) in enumerate(kinds):
        hooks.clock.advance(timedelta(minutes=1))
        event = sendgrid_event(kind, message.key, "SGMSG00000001", n, **extra)
        assert hooks.sendgrid_post(json.dumps([event]).encode()).status_code == 200

        consent = store_reads.consent(hooks.service.store, "p-cc-001", "patient")[Channel.EMAIL]
        assert consent.granted is (kind == "group_resubscribe"), kind
        assert consent.source == f"sendgrid:{kind}"
    assert hooks.message(message.key).status == "failed"


def test_a_late_unsubscribe_does_not_override_a_later_resubscribe(hooks: Hooks) -> None:
    message = hooks.send_first(email_only_event())
    decided = int(hooks.clock.now().timestamp())
    unsubscribe = sendgrid_event("unsubscribe", message.key, "SGMSG00000001", 1)
    resubscribe = sendgrid_event("group_resubscribe", message.key, "SGMSG00000001", 2)
    unsubscribe["timestamp"], resubscribe["timestamp"] = decided, decided + 300

    # SendGrid retries the unsubscribe's batch after the resubscribe arrived.
    hooks.sendgrid_post(json.dumps([resubscribe]).encode())
    hooks.clock.advance(timedelta(hours=1))
    hooks.sendgrid_post(json.dumps([unsubscribe]).encode())

    consent = store_reads.consent(hooks.service.store, "p-cc-001", "patient")[Channel.EMAIL]
    assert (consent.granted, consent.source) == (True, "sendgrid:group_resubscribe")


def test_a_blocked_bounce_fails_the_message_but_keeps_the_address(hooks: Hooks) -> None:
    message = hooks.send_first(email_only_event())

    event = sendgrid_event("bounce", message.key, "SGMSG00000001", 1, type="blocked")
    hooks.sendgrid_post(json.dumps([event]).encode())

    assert hooks.message(message.key).status == "failed"
    assert store_reads.consent(hooks.service.store, "p-cc-001", "patient") == {}
