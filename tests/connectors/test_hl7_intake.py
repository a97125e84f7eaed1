"""HL7 v2 intake on both stores: what one message carries harms only that message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from connectors.hl7_intake import Hl7Intake
from orchestrator.clock import VirtualClock
from orchestrator.event import bound_id
from orchestrator.service import EmbeddedService
from orchestrator.service.inbound import build_hl7_intake
from orchestrator.settings import Settings
from tests import store_reads
from tests.connectors.hl7_samples import sample, with_field
from tests.inbound_service import build_service
from tests.samples import ROOT

SIU = sample("SIU-S12-01.hl7")


@pytest.fixture
def service(store_url: str) -> Iterator[EmbeddedService]:
    settings = Settings(
        db=store_url,
        flows=ROOT / "flows",
        templates=ROOT / "templates",
        inbound_services={"76164006": "cardiology.consult"},
    )
    built = build_service(settings, VirtualClock(datetime(2021, 9, 14, 9, 0, tzinfo=UTC)))
    yield built
    built.store.engine.dispose()


@pytest.fixture
def intake(service: EmbeddedService) -> Hl7Intake:
    return build_hl7_intake(service)


def test_a_pid3_longer_than_the_store_holds_is_digested_and_its_neighbour_is_acked_aa(
    intake: Hl7Intake, service: EmbeddedService
) -> None:
    long_id = "L" * 300
    long = with_field(with_field(SIU, "PID", 3, f"{long_id}^^^^MR"), "MSH", 10, "MSGLONG")

    replies = intake.handle([long, SIU])

    assert [(r.code, r.status) for r in replies] == [("AA", "accepted"), ("AA", "accepted")]
    assert service.store.episodes(bound_id(long_id))
    assert service.store.episodes("PATID1234")
    assert store_reads.rejected(service.store) == []


def test_a_nul_in_a_field_is_answered_ae_naming_it_and_its_neighbour_acked_aa(
    intake: Hl7Intake, service: EmbeddedService
) -> None:
    bad = with_field(with_field(SIU, "PID", 3, "P\x00X^^^^MR"), "MSH", 10, "MSGNUL")

    replies = intake.handle([bad, SIU])

    assert [r.code for r in replies] == ["AE", "AA"]
    assert replies[0].error is not None
    assert str(replies[0].error.location) == "PID"
    assert "patient.id: contains a NUL character" in replies[0].error.problem
    [kept] = store_reads.rejected(service.store)
    assert kept.body == bad


def test_a_message_the_processor_rejects_is_kept_once_as_mllp(
    intake: Hl7Intake, service: EmbeddedService
) -> None:
    # The patient's journey no longer reads back: the processor rejects their next event.
    assert [r.code for r in intake.handle([SIU])] == ["AA"]
    with service.store.engine.begin() as connection:
        connection.execute(text("UPDATE journeys SET state = 'not JSON'"))
    again = with_field(SIU, "MSH", 10, "MSGAGAIN")

    [reply] = intake.handle([again])

    assert (reply.code, reply.status) == ("AE", "rejected")
    [kept] = store_reads.rejected(service.store)
    assert kept.source == "mllp"
    assert kept.body == again
    assert kept.reason.startswith(f"event {reply.event_id}: quarantined")
